"""nas.audit on a finished tiny search: its table, plot and report section; a killed audit resumes
without training again what it finished; bad input is one line."""
import json

import pandas as pd
import pytest

from conftest import ROOT, assert_user_error, kill_at_line, run_main, run_module, toy_npz
from nas import runs
from nas.runs import SearchSettings
import numpy as np
from scipy import stats

from nas.reporting.ranking import correlation, seed_spread, seeds_for_ceiling, tau_ceiling

SPACE_FILE = str(ROOT / "tests" / "tiny_space.py")
SIGNAL = 12


def test_correlation_and_spread_by_hand():
    r = correlation("kendall", [1, 2, 3, 4], [1, 3, 2, 4], resamples=200)
    assert r["value"] == pytest.approx(4 / 6) and r["ci90"][0] <= r["value"] <= r["ci90"][1]
    assert correlation("spearman", [1, 2, 3], [3, 2, 1], resamples=50)["value"] == pytest.approx(-1.0)
    runs_ = pd.DataFrame({"arch_id": ["a", "a", "b", "b", "c"], "seed": [0, 1, 0, 1, 0], "standalone_acc": [0.5, 0.7, 0.2, 0.2, 0.9]})
    s = seed_spread(runs_)
    # within: deviations (-0.1, 0.1, 0, 0) over 4 - 2 dof -> sqrt(0.02 / 2) = 0.1; between: std of means (0.6, 0.2, 0.9)
    assert s["seed_std"] == pytest.approx(0.1) and s["between_arch_std"] == pytest.approx(pd.Series([0.6, 0.2, 0.9]).std())
    assert (s["archs_with_seeds"], s["runs_with_seeds"]) == (2, 4)


def test_tau_ceiling_matches_a_perfect_ranker_on_noisy_truth():
    assert tau_ceiling(0.0) == 1.0 and tau_ceiling(1.0) == 0.0 and tau_ceiling(1.5) == 0.0
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1.0, 4000)
    for noise in (0.3, 0.7, 1.2):
        measured = truth + rng.normal(0, noise, truth.size)
        ratio = noise / measured.std(ddof=1)  # what the audit sees: noise against the spread of the measured values
        assert stats.kendalltau(truth, measured).statistic == pytest.approx(tau_ceiling(ratio), abs=0.02)


def test_seeds_for_ceiling_is_the_fewest_seeds_that_reach_the_target():
    seed_std, between, seeds = 0.0134, 0.0153, 2
    true_var = between ** 2 - seed_std ** 2 / seeds

    def ceiling(n):  # the spread a ground truth of n seeds would measure holds the truth and its noise
        noise = seed_std / np.sqrt(n)
        return tau_ceiling(noise / np.sqrt(true_var + noise ** 2))

    n = seeds_for_ceiling(seed_std, between, seeds, 0.75)
    assert n == 8 and ceiling(n) >= 0.75 > ceiling(n - 1)
    assert ceiling(seeds) == pytest.approx(tau_ceiling(seed_std / np.sqrt(seeds) / between))  # consistent with what was measured
    assert seeds_for_ceiling(0.001, 0.1, 1, 0.5) == 1
    assert seeds_for_ceiling(0.02, 0.01, 1, 0.75) is None  # the spread is all noise
    assert seeds_for_ceiling(float("nan"), 0.01, 1, 0.75) is None


def test_a_ground_truth_with_one_value_is_reported_unranked_and_written_as_strict_json():
    from argparse import Namespace

    from nas.audit import json_safe, summarize

    rows = pd.DataFrame({"arch_id": list("abcd"), "inherited_acc": [0.2, 0.4, 0.3, 0.5], "standalone_acc": [1.0] * 4,
                         "proxy_macs": [1, 2, 3, 4]})
    trainings = rows[["arch_id", "standalone_acc"]].assign(seed=0)
    args = Namespace(bootstrap=50, seed=0, seeds=1, target_tau=0.75)
    result = summarize(rows, trainings, args)
    assert result["unranked"].startswith("Every architecture has the same standalone accuracy (the ground truth), 1.0000")
    text = json.dumps(json_safe(result), allow_nan=False)
    assert json.loads(text)["kendall_tau"]["value"] is None and not result["beats_macs"]
    assert summarize(rows.assign(standalone_acc=[0.1, 0.3, 0.2, 0.4]), trainings, args)["unranked"] is None


def test_bad_input(tmp_path):
    assert_user_error(run_main("nas.audit", str(tmp_path)), "not a search run (no config.json)")
    assert_user_error(run_main("nas.audit", str(tmp_path), "--archs", "1"), "--archs must be at least 3")
    assert_user_error(run_main("nas.audit", str(tmp_path / "nope")), "does not exist")
    assert_user_error(run_main("nas.audit", str(tmp_path), "--target-tau", "1"), "--target-tau must be between 0 and 1")
    run = tmp_path / "run"
    run.mkdir()
    runs.write_config(SearchSettings(space="psvit_ext", flops=4.5e9, trials=5, run_dir=str(run)), run, {"supernet": str(run / "gone.pt")})
    assert_user_error(run_main("nas.audit", str(run)), "the run has no supernet checkpoint")
    assert not (run / "audit").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    t = tmp_path_factory.mktemp("audit")
    # a faint signal: with BatchNorm recalibrated, 1 epoch on the default toy set scores 1.0 for every architecture
    data = toy_npz(t / "toy.npz", n_train=160, n_test=30, signal=SIGNAL)
    run = t / "run"
    proc = run_module("nas.search", "--space-file", SPACE_FILE, "--space", "tiny_ext", "--flops", "10G", "--trials", "12", "--epochs", "1",
                      "--data", data, "--out", str(run), cwd=t)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


@pytest.mark.slow
def test_audit_writes_its_table_plot_and_section_and_resumes_after_a_kill(finished_run):
    run = finished_run
    args = ["nas.audit", str(run), "--archs", "4", "--epochs", "1", "--spread-archs", "2", "--spread-seeds", "2", "--space-file", SPACE_FILE]
    kill_at_line(args, "standalone 2/", run.parent)  # two trainings finished, then SIGKILL
    kept = sorted(p.parent.name for p in (run / "audit" / "standalone").glob("*/metrics.json"))
    assert len(kept) == 2 and not (run / "audit" / "audit.csv").exists()
    proc = run_module(*args, cwd=run.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "standalone: 2 of 6 trainings finished before, kept" in proc.stdout
    assert sum(line.startswith("standalone ") and "seed" in line for line in proc.stdout.splitlines()) == 4  # only the 4 left
    rows = pd.read_csv(run / "audit" / "audit.csv")
    assert len(rows) == 4 and rows["arch_id"].is_unique and rows["is_pareto"].any()
    assert sorted(rows["seeds"]) == [1, 1, 2, 2] and rows["inherited_acc"].between(0, 1).all()
    result = json.loads((run / "audit" / "audit.json").read_text())
    assert rows["standalone_acc"].nunique() > 1, rows["standalone_acc"]  # a ground truth that ranks (see SIGNAL)
    assert result["n"] == 4 and -1 <= result["kendall_tau"]["value"] <= 1 and result["spread"]["runs_with_seeds"] == 4
    spread = result["spread"]
    assert spread["seeds_for_target"] == seeds_for_ceiling(spread["seed_std"], spread["between_arch_std"], 1, 0.75)
    from argparse import Namespace

    from nas.audit import seeds_sentence

    sentence = seeds_sentence(spread, Namespace(target_tau=0.75, seeds=1))
    assert "ceiling of 0.75" in sentence and sentence in (run / "audit" / "section.md").read_text() and sentence in proc.stdout
    assert (run / "audit" / "audit.png").stat().st_size > 1000
    report = (run / "report.md").read_text()
    assert "## Ranking audit" in report and "audit/audit.png" in report and report.count("## Ranking audit") == 1
    assert proc.stdout.strip().splitlines()[-1].startswith("n=4 kendall_tau=")


def test_archs_from_takes_n_evenly_spaced_over_the_earlier_audit(tmp_path):
    from nas.auditing.selection import architectures_from, arch_id
    from nas.errors import UserError
    from search_spaces import get_space

    space = get_space("psvit_ext")
    texts = [space.sample(i).to_json() for i in range(5)]
    csv = tmp_path / "audit.csv"
    pd.DataFrame({"arch": texts, "macs": range(5)}).to_csv(csv, index=False)
    trials = pd.DataFrame({"trial": [7], "arch": [texts[4]], "acc": [0.5], "is_pareto": [True]})
    every = architectures_from(csv, trials)
    assert every["arch"].tolist() == texts and every["trial"].tolist() == [-1, -1, -1, -1, 7]
    three = architectures_from(csv, trials, 3)
    assert three["arch_id"].tolist() == [arch_id(texts[i]) for i in (0, 2, 4)] and three["is_pareto"].tolist() == [False, False, True]
    with pytest.raises(UserError, match=r"--archs 6: --archs-from .* holds 5 architectures; give --archs 5 or fewer"):
        architectures_from(csv, trials, 6)
