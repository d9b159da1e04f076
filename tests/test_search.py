"""End-to-end search runs on a tiny space (tests/tiny_space.py) and a toy data set, through the CLI."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, assert_user_error, run_main, run_module, toy_npz

SPACE_FILE = str(ROOT / "tests" / "tiny_space.py")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_npz(tmp_path_factory.mktemp("data") / "toy.npz")


def _search_args(toy, out, trials, *extra, flops="2.3G"):
    return ["--space-file", SPACE_FILE, "--space", "tiny_ext", "--flops", flops, "--trials", str(trials), "--epochs", "1",
            "--data", toy, "--out", str(out), *extra]


@pytest.mark.slow
def test_search_writes_results_and_skips_infeasible(tmp_path, toy):
    proc = run_module("nas.search", *_search_args(toy, tmp_path / "run", 10), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    for name in ("config.json", "trials.csv", "trials.parquet", "pareto.csv", "best.json", "report.md", "supernet.pt"):
        assert (run / name).is_file(), name
    assert (tmp_path / "results" / "best.json").read_text() == (run / "best.json").read_text()
    assert {"pareto_macs.png", "hypervolume.png", "choices.png"} <= {p.name for p in (run / "report").glob("*.png")}  # nas.report's code path
    df = pd.read_csv(run / "trials.csv")
    assert len(df) == 10 and sorted(df["trial"]) == list(range(10))
    assert (df["feasible"] == (df["macs"] <= 2.3e9)).all()
    infeasible = df[~df["feasible"]]
    assert len(infeasible) > 0, "the limit should cut some proposals"
    assert (~infeasible["evaluated"]).all() and (infeasible["eval_time_s"] == 0).all() and infeasible["acc"].isna().all()
    assert df[df["feasible"]]["evaluated"].all()
    pareto = pd.read_csv(run / "pareto.csv")
    assert set(pareto["trial"]) == set(df[df["is_pareto"]]["trial"]) and (pareto["macs"] <= 2.3e9).all()
    best = json.loads((run / "best.json").read_text())
    assert best["accuracy"] == df[df["feasible"]]["acc"].max() and best["macs"] <= 2.3e9
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["flops"] == 2.3e9 and len(config["supernet_sha256"]) == 64 and config["proxy_scale"]["img_size"] == 16
    assert proc.stdout.splitlines()[0].startswith("devices: supernet training on ")  # the search's first line
    assert config["devices"]["trials_on"] == ("gpu" if torch.cuda.is_available() else "cpu")
    for line in proc.stdout.splitlines():
        if line.startswith("trial "):
            assert "feasible" in line and "trials/min" in line


@pytest.mark.slow
def test_killed_search_resumes_without_losing_or_repeating_trials(tmp_path, toy):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nas.search", *_search_args(toy, run, 14)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = 0
    deadline = time.time() + 240
    for line in proc.stdout:
        if line.startswith("trial "):
            seen += 1
            if seen == 5:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        assert time.time() < deadline
    proc.wait()
    assert seen == 5 and not (run / "trials.csv").exists()
    done_before = [json.loads(l)["trial"] for l in (run / "evaluations.jsonl").read_text().splitlines()]
    assert len(done_before) >= 5

    resumed = run_module("nas.search", "--resume", str(run), "--space-file", SPACE_FILE, cwd=tmp_path)  # a custom space: given again
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    df = pd.read_csv(run / "trials.csv")
    assert len(df) == 14 and df["trial"].is_unique
    ok = df[df["status"] == "ok"]
    assert len(ok) == 14
    # every trial completed before the kill is kept, once, and was not evaluated again
    evaluations = [json.loads(l)["trial"] for l in (run / "evaluations.jsonl").read_text().splitlines()]
    assert len(evaluations) == len(set(evaluations))
    assert set(done_before) <= set(df["trial"])


@pytest.mark.parametrize("args, fragments", [
    (["--flops", "4.5X"], ["--flops: '4.5X' is not a number", "e.g. 4.5G"]),
    (["--flops", "-1G"], ["--flops: '-1G'"]),
    (["--flops", ""], ["--flops: ''"]),
    (["--params", "22Q"], ["--params: '22Q'"]),
    (["--latency", "fast"], ["--latency: 'fast' is not a latency"]),
    (["--space", "nope", "--flops", "4.5G"], ["unknown space 'nope'", "known spaces: nb201, psvit, psvit_ext"]),
    (["--flops", "4.5G", "--sampler", "nope"], ["--sampler 'nope' is not known", "tpe, local, evolution, nsga2, random, gp, qmc"]),
    (["--flops", "4.5G", "--trials", "0"], ["--trials must be at least 1"]),
    (["--flops", "0.001G"], ["no architecture of psvit_ext fits", "the smallest has {smallest_gmacs:.2f}G MACs"]),
    (["--params", "1M"], ["no architecture of psvit_ext fits", "M params"]),
    (["--flops", "4.5G", "--objectives", "flops,acc"], ["--objectives 'flops,acc'"]),
    (["--flops", "4.5G", "--merge-fit-epochs", "-1"], ["--merge-fit-epochs must be between 0 and 100,000, got -1"]),
])
def test_bad_input(tmp_path, args, fragments):
    from nas.measure.costs import arch_costs, extreme_arch
    from search_spaces import get_space

    space = get_space("psvit_ext")
    smallest = arch_costs(extreme_arch(space, space.target, largest=False), space.target).macs / 1e9
    proc = run_main("nas.search", "--space", "psvit_ext", *args, cwd=tmp_path)
    assert_user_error(proc, *(f.format(smallest_gmacs=smallest) for f in fragments))
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["tpe", "local", "nsga2", "gp", "qmc", "random"])
def test_every_sampler_survives_ray_tunes_pickling_and_goes_on_proposing(name):
    """Ray Tune pickles the searcher, sampler included, into its experiment state (Optuna 5.1's NSGA-II holds a lock)."""
    import optuna
    from ray import cloudpickle

    from nas.searching.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(name, 0), directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_int("a", 0, 9), t.suggest_categorical("b", ["x", "y"]) == "x"), n_trials=20)
    copy = cloudpickle.loads(cloudpickle.dumps(study.sampler))
    assert type(copy) is type(study.sampler)
    study.sampler = copy
    study.optimize(lambda t: (t.suggest_int("a", 0, 9), t.suggest_categorical("b", ["x", "y"]) == "x"), n_trials=3)
    assert len(study.trials) == 23 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _four_letter_searcher(told: dict):
    """The searcher of every search, over a space of four architectures."""
    from nas.searching.samplers import DistinctOptunaSearch, make_sampler

    return DistinctOptunaSearch(space=lambda t: {"arch": t.suggest_categorical("x", list("abcd"))}, metric="acc", mode="max",
                                sampler=make_sampler("random", 0), told=told)


def test_a_repeated_proposal_is_told_the_earlier_result_and_costs_no_trial():
    from nas.searching.samplers import MAX_REPEATS

    scores = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    searcher = _four_letter_searcher({})
    proposed = []
    for i in range(4):
        config = searcher.suggest(f"t{i}")
        proposed.append(config["arch"])
        searcher.on_trial_complete(f"t{i}", {"acc": scores[config["arch"]]})
    assert sorted(proposed) == ["a", "b", "c", "d"]  # four trials, four architectures
    trials = {t.number: t for t in searcher._ot_study.trials}
    repeats = [t for t in trials.values() if "repeat_of" in t.user_attrs]
    assert len(repeats) == searcher.repeats > 0  # random over four letters repeats itself (seed 0: it did)
    for t in repeats:
        assert t.params == trials[t.user_attrs["repeat_of"]].params and t.values == [scores[t.params["x"]]]
    config = searcher.suggest("t4")  # every architecture evaluated: after MAX_REPEATS repeats one is let through
    assert config["arch"] in scores and searcher.repeats == len(repeats) + MAX_REPEATS


def test_a_resumed_search_knows_the_architectures_evaluated_before_the_kill():
    searcher = _four_letter_searcher({"a": (0, [0.1]), "c": (1, [0.3])})
    proposed = []
    for i in range(2):
        proposed.append(searcher.suggest(f"t{i}")["arch"])
        searcher.on_trial_complete(f"t{i}", {"acc": 0.5})
    assert sorted(proposed) == ["b", "d"]


@pytest.mark.parametrize("name", ["tpe", "local", "nsga2", "gp", "qmc", "random"])
def test_another_seed_proposes_other_architectures(name):
    import optuna

    from nas.searching.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def proposals(seed):
        study = optuna.create_study(sampler=make_sampler(name, seed), directions=["maximize", "minimize"])
        study.optimize(lambda t: (t.suggest_int("a", 0, 99), t.suggest_int("b", 0, 99)), n_trials=5)
        return [(t.params["a"], t.params["b"]) for t in study.trials[1:]]  # the first is random for every sampler (no space known yet)

    assert proposals(0) == proposals(0) and proposals(0) != proposals(1)


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(run_main("nas.search", "--resume", str(tmp_path / "empty"), cwd=tmp_path), "not a search run (no config.json)")
    assert_user_error(run_main("nas.search", "--resume", str(tmp_path / "missing"), cwd=tmp_path), "does not exist")


def test_supernet_of_another_space_is_refused(tmp_path, toy):
    from nas.training.checkpoint import save_checkpoint
    from search_spaces import get_space

    save_checkpoint({"space": "psvit", "scale": get_space("psvit").proxy.to_dict(), "model": {}}, tmp_path / "s.pt")
    proc = run_main("nas.search", "--space", "psvit_ext", "--flops", "4.5G", "--supernet", str(tmp_path / "s.pt"), "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_user_error(proc, "checkpoint is for space 'psvit', not 'psvit_ext'")


def test_existing_run_folder_is_not_overwritten(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "trials.csv").write_text("keep")
    proc = run_main("nas.search", "--space", "psvit_ext", "--flops", "4.5G", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert_user_error(proc, "already exists and is not empty", "--resume")
    assert (tmp_path / "r" / "trials.csv").read_text() == "keep"


def test_unreachable_address(tmp_path, toy):
    proc = run_main("nas.search", *_search_args(toy, tmp_path / "r", 2, "--address", "127.0.0.1:1"), cwd=tmp_path)
    assert_user_error(proc, "--address 127.0.0.1:1: cannot reach a Ray cluster")


@pytest.mark.slow
def test_latency_limit_and_objective_search_measures_the_pareto_front(tmp_path, toy):
    """--latency and --objectives acc,latency with a predictor cached for this device: infeasible by predicted
    latency are not evaluated, the front is over accuracy and latency, every Pareto member and the best get a
    measured latency, and members over the limit are flagged."""
    from nas.measure.latency import load_predictor
    from search_spaces import get_space
    import tiny_space  # noqa: F401  (registers tiny_ext)

    space = get_space("tiny_ext")
    pred = load_predictor(space, device="cpu", root=tmp_path / "results" / "latency", log=lambda *_: None, calib_archs=3,
                          progress=False, rounds=1, repeats={"warmup": 1, "min_repeats": 3, "min_time_s": 0.0})
    limit = float(np.median([pred.predict(space.sample(s)) for s in range(200)]))
    proc = run_module("nas.search", *_search_args(toy, tmp_path / "run", 8, "--latency", f"{limit:.3f}ms", "--device", "cpu",
                                                  "--objectives", "acc,latency", flops="100G"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "building the latency predictor" not in proc.stdout + proc.stderr
    df = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert df["latency_ms"].notna().all()
    assert (df["feasible"] == (df["latency_ms"] <= round(limit, 3))).all()
    assert (~df[~df["feasible"]]["evaluated"]).all()
    pareto = pd.read_csv(tmp_path / "run" / "pareto.csv")
    assert len(pareto) >= 1 and (pareto["latency_measured_ms"] > 0).all() and (pareto["latency_ms"] <= round(limit, 3)).all()
    assert (pareto["latency_over_limit"] == (pareto["latency_measured_ms"] > round(limit, 3))).all()
    # the latency objective: the front is the non-dominated set in (accuracy up, predicted latency down)
    ok = df[df["evaluated"]]
    front = {r.trial for r in ok.itertuples() if not ((ok["acc"] >= r.acc) & (ok["latency_ms"] <= r.latency_ms)
                                                      & ((ok["acc"] > r.acc) | (ok["latency_ms"] < r.latency_ms))).any()}
    assert set(pareto["trial"]) == front
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    row = df[df["trial"] == best["trial"]].iloc[0]
    assert best["latency_ms"]["predicted"] == row["latency_ms"] and best["latency_ms"]["measured"] == row["latency_measured_ms"] > 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["latency_predictor"]["key"] == pred.key


@pytest.mark.slow
def test_a_trial_that_raises_is_recorded_as_failed_and_the_search_goes_on(tmp_path, toy):
    args = _search_args(toy, tmp_path / "run", 6)
    args[args.index(SPACE_FILE)] = str(ROOT / "tests" / "failing_trial_space.py")
    proc = run_module("nas.search", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert sorted(df["trial"]) == list(range(6))
    assert df.set_index("trial")["status"].to_dict() == {t: "failed" if t == 2 else "ok" for t in range(6)}
    assert not df.set_index("trial").at[2, "is_pareto"] and pd.isna(df.set_index("trial").at[2, "acc"])
    lines = [l for l in proc.stdout.splitlines() if l.startswith("trial ")]
    assert len(lines) == 6 and sum("failed" in l for l in lines) == 1 and lines[-1].startswith("trial 6/6")


@pytest.mark.slow
def test_one_feasible_trial_gets_a_report_and_a_finished_run_is_left_alone_until_extended(tmp_path, toy):
    import hashlib

    run = tmp_path / "run"
    proc = run_module("nas.search", *_search_args(toy, run, 1, flops="10G"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_csv(run / "trials.csv")
    assert len(df) == 1 and df["feasible"].sum() == 1 and (run / "report.md").is_file()

    def listing():
        return {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(tmp_path.rglob("*")) if p.is_file() and not p.is_relative_to(run / "ray")}

    before = listing()
    again = run_module("nas.search", "--resume", str(run), "--space-file", SPACE_FILE, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to add: 1 of 1 trials are finished" in again.stdout, again.stderr[-2000:]
    assert listing() == before  # results, best.json and report untouched
    more = run_module("nas.search", "--resume", str(run), "--space-file", SPACE_FILE, "--trials", "3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-2000:]
    df = pd.read_csv(run / "trials.csv")
    assert sorted(df["trial"]) == [0, 1, 2] and json.loads((run / "config.json").read_text())["settings"]["trials"] == 3


def test_first_line_names_the_devices_and_gpus_per_gpu_arithmetic(tmp_path, toy):
    """On this CPU-only machine a search says its trials run on the CPU; the number of trials sharing a GPU is
    what its free memory holds at a trial's measured peak, between 1 and 8."""
    import torch

    from nas.measure.device import trials_per_gpu
    from nas.runs import SearchSettings
    from nas.searching.devices import devices_line

    line = devices_line(SearchSettings(space="psvit_ext", flops=4.5e9))
    if not torch.cuda.is_available():
        assert line.startswith("devices: supernet training on cpu (") and line.endswith("; trials on cpu, 1 CPU each")
    assert devices_line(SearchSettings(space="psvit_ext", latency_ms=50.0, device="cpu")).endswith("; latency on " + line.split("training on ")[1].split(";")[0])
    gib = 1 << 30
    assert trials_per_gpu(80 * gib, 9 * gib) == 7 and trials_per_gpu(80 * gib, 1 * gib) == 8 and trials_per_gpu(4 * gib, 9 * gib) == 1


@pytest.mark.cuda
def test_search_uses_the_gpu_without_device_flags(tmp_path, toy):
    run = tmp_path / "run"
    proc = run_module("nas.search", *_search_args(toy, run, 4), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith("devices: supernet training on cuda:")
    devices = json.loads((run / "config.json").read_text())["devices"]
    assert devices["trials_on"] == "gpu" and 1 <= devices["trials_per_gpu"] <= 8 and devices["gpus_per_trial"] == 1 / devices["trials_per_gpu"]


def test_a_run_recorded_before_merge_fitting_keeps_its_supernet_as_trained(tmp_path):
    """A run folder written before --merge-fit-epochs existed records no such setting: it reads as 0, so resuming it
    does not go on to fit its supernet's merges between trials already scored and new ones."""
    from nas import runs
    from nas.errors import UserError
    from nas.runs import SearchSettings

    run = tmp_path / "run"
    run.mkdir()
    runs.write_config(SearchSettings(space="psvit_ext", flops=4.5e9, trials=5, run_dir=str(run)), run, {})
    assert runs.read_settings(run).merge_fit_epochs == SearchSettings().merge_fit_epochs == 3
    config = json.loads((run / "config.json").read_text())
    del config["settings"]["merge_fit_epochs"]
    (run / "config.json").write_text(json.dumps(config))
    assert runs.read_settings(run).merge_fit_epochs == 0
    config["settings"]["merge_fit_epochs"] = -1
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"settings.merge_fit_epochs is -1; allowed: an integer from 0 to 100,000"):
        runs.read_settings(run)
