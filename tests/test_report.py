"""Reports of search runs (nas.report) on hand-made trials tables whose fronts and hypervolumes are worked out by hand."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import assert_user_error, run_module
from nas.errors import UserError
from nas.reporting.pareto import hypervolume_2d, pareto_mask
from nas.reporting.plots import ACC_LABEL, hypervolume_figure, pareto_figure
from nas.report import main
from nas.reporting.analysis import (MACS, best_per_bin, evaluated_feasible, hypervolume_curve, pareto_front, reference_cost,
                                    stored_pareto_mismatch)
from nas.reporting.choices import choice_statistics
from nas.reporting.document import report_runs
from nas.reporting.load import load_runs, load_trials

ARCH_A = json.dumps({"space": "psvit_ext", "version": 2, "merges": ["pool"],
                     "stages": [[{"block": "strip", "strip_width": 3}], [{"block": "mhsa", "mlp_ratio": 2}, {"block": "shared", "mlp_ratio": 2}]]})
ARCH_B = json.dumps({"space": "psvit_ext", "version": 2, "merges": ["spm"],
                     "stages": [[{"block": "stoken", "grid": 7}], [{"block": "mhsa", "mlp_ratio": 4}]]})
FRONT = [0, 2, 6, 7, 8]


def hand_table(acc_shift: float = 0.0) -> pd.DataFrame:
    """Ten trials: MAC limit 4 G; architecture A on the front, B elsewhere."""
    rows = [  # trial, status, feasible, evaluated, acc, G MACs, arch
        (0, "ok", True, True, 0.5, 2.0, ARCH_A),
        (1, "ok", True, True, 0.4, 3.0, ARCH_B),  # dominated by 0
        (2, "ok", True, True, 0.7, 3.0, ARCH_A),
        (3, "ok", False, True, 0.9, 1.0, ARCH_B),  # infeasible (over a params limit): ignored although marked evaluated, with an accuracy
        (4, "failed", True, True, 0.95, 1.2, ARCH_B),  # failed: ignored likewise
        (5, "ok", True, True, 0.7, 3.5, ARCH_B),  # dominated by 2: same accuracy, more MACs
        (6, "ok", True, True, 0.3, 1.5, ARCH_A),
        (7, "ok", True, True, 0.5, 2.0, ARCH_A),  # the same point as 0: kept, neither dominates
        (8, "ok", True, True, 0.8, 3.8, ARCH_A),
        (9, "ok", False, False, np.nan, 5.0, ARCH_B),  # over the MAC limit
    ]
    df = pd.DataFrame(rows, columns=["trial", "status", "feasible", "evaluated", "acc", "macs", "arch"])
    df["acc"] = (df["acc"] + acc_shift).round(6)
    df["macs"] = (df["macs"] * 1e9).round().astype("int64")
    df["params"] = 10_000_000 + df["trial"]
    df["latency_ms"] = np.nan
    df["is_pareto"] = df["trial"].isin(FRONT)
    return df


def write_run(folder, trials: pd.DataFrame, sampler="tpe", flops=4e9, latency_ms=None):
    folder.mkdir(parents=True)
    trials.to_csv(folder / "trials.csv", index=False)
    settings = {"space": "psvit_ext", "flops": flops, "params": None, "latency_ms": latency_ms, "sampler": sampler,
                "objectives": ["acc", "flops"], "trials": len(trials)}
    (folder / "config.json").write_text(json.dumps({"kind": "psvit-nas search", "settings": settings}))
    return folder


def with_latency(df: pd.DataFrame) -> pd.DataFrame:
    """Predicted latency 2 ms per G MACs (the same order as MACs), measured 10% higher on the front."""
    df = df.copy()
    df["latency_ms"] = df["macs"] / 1e9 * 2
    df["latency_measured_ms"] = np.where(df["trial"].isin(FRONT), df["latency_ms"] * 1.1, np.nan)
    return df


# ------------------------------------------------------------------ Pareto logic
def test_pareto_mask_drops_dominated_rows_and_keeps_ties():
    df = pd.DataFrame({"acc": [0.5, 0.4, 0.5, 0.7, 0.7], "macs": [2, 3, 2, 3, 3.5], "params": [5, 5, 5, 9, 1]})
    assert pareto_mask(df, ["acc"], ["macs"]).tolist() == [True, False, True, True, False]
    # with params also minimized, row 4 (fewest params) is no longer dominated
    assert pareto_mask(df, ["acc"], ["macs", "params"]).tolist() == [True, False, True, True, True]
    assert pareto_mask(df.iloc[:0], ["acc"], ["macs"]).tolist() == []


def test_hypervolume_2d_by_hand():
    # (cost 1, acc 0.5) and (cost 3, acc 0.8), reference (acc 0, cost 4): 2 x 0.5 + 1 x 0.8
    assert hypervolume_2d([0.5, 0.8], [1.0, 3.0], 0.0, 4.0) == pytest.approx(1.8, rel=1e-12)
    # a dominated point, a point at the reference cost and one at the reference accuracy add nothing
    assert hypervolume_2d([0.5, 0.8, 0.4, 0.9, 0.0], [1.0, 3.0, 2.0, 4.0, 0.5], 0.0, 4.0) == pytest.approx(1.8, rel=1e-12)
    # a reference accuracy of 0.2: 2 x 0.3 + 1 x 0.6
    assert hypervolume_2d([0.5, 0.8], [1.0, 3.0], 0.2, 4.0) == pytest.approx(1.2, rel=1e-12)
    assert hypervolume_2d([], [], 0.0, 4.0) == 0.0


def test_pareto_front_is_exactly_the_non_dominated_feasible_rows():
    trials = hand_table()
    front = pareto_front(trials)
    assert sorted(front["trial"]) == FRONT
    assert front["is_pareto"].all() and front["macs"].is_monotonic_increasing
    assert set(front["trial"]).isdisjoint({3, 4, 9})  # infeasible and failed rows never count, even with an accuracy
    assert sorted(trials.loc[evaluated_feasible(trials), "trial"]) == [0, 1, 2, 5, 6, 7, 8]


def test_hypervolume_by_hand():
    # Feasible evaluated points (G MACs, acc): (1.5, .3), (2, .5) twice, (3, .4), (3, .7), (3.5, .7), (3.8, .8).
    # Reference (acc 0, 4 G, the limit). Staircase: 1.5-2 at .3 = .15; 2-3 at .5 = .5; 3-3.8 at .7 = .56; 3.8-4 at .8 = .16.
    trials = hand_table()
    curve = hypervolume_curve(trials, "macs", ref_cost=4e9)
    assert curve["trials"].tolist() == list(range(1, 11))
    # after k trials: k=1 (2, .5) -> 2 x .5; k=3 adds (3, .7) -> 1 x .5 + 1 x .7; k=7 adds (1.5, .3) -> +.15; k=9 adds (3.8, .8) -> +.2 x .1
    expected = [1.0, 1.0, 1.2, 1.2, 1.2, 1.2, 1.35, 1.35, 1.37, 1.37]
    assert curve["hypervolume"].to_numpy() / 1e9 == pytest.approx(expected, rel=1e-12)
    # without a limit the reference is the largest cost among all trials (5 G, infeasible trial 9): +1 x .8
    assert hypervolume_curve(trials, "macs")["hypervolume"].iloc[-1] / 1e9 == pytest.approx(2.17, rel=1e-12)


def test_reference_point_is_the_largest_limit_else_the_largest_cost():
    trials = hand_table()
    limits = pd.DataFrame({"flops": [4e9, 4.5e9, None], "latency_ms": [None, None, None]}, index=["a", "b", "c"])
    assert reference_cost(trials, limits, MACS) == 4.5e9
    assert reference_cost(trials, limits.assign(flops=None), MACS) == 5e9


def test_fronts_and_hypervolume_are_per_run():
    a, b = hand_table().assign(run="a"), hand_table(acc_shift=0.1).assign(run="b")
    trials = pd.concat([a, b], ignore_index=True)
    front = pareto_front(trials)
    assert front.groupby("run")["trial"].apply(sorted).to_dict() == {"a": FRONT, "b": FRONT}
    final = hypervolume_curve(trials, "macs", ref_cost=4.5e9).groupby("run")["hypervolume"].last() / 1e9
    # to 4.5 G: a = 1.37 + .5 x .8 = 1.77; b: .5 x .4 + 1 x .6 + .8 x .8 + .7 x .9 = 2.07
    assert final.to_dict() == pytest.approx({"a": 1.77, "b": 2.07}, rel=1e-12)


def test_best_per_bin():
    best = best_per_bin(hand_table(), MACS, edges=[1, 2, 3, 4])
    # (1, 2]: trials 0 and 7 tie at .5 and 2 G -> the earlier; (2, 3]: trial 2; (3, 4]: trial 8 (.8 beats 5's .7)
    assert best["bin"].astype(str).tolist() == ["1–2", "2–3", "3–4"]
    assert best["trial"].tolist() == [0, 2, 8]
    default = best_per_bin(hand_table(), MACS)
    assert default["acc"].max() == 0.8 and default["bin"].is_unique
    for _, row in default.iterrows():
        lo, hi = map(float, str(row["bin"]).split("–"))
        assert lo <= row["macs"] / 1e9 <= hi


def test_choice_statistics_by_hand():
    trials = hand_table()
    groups = {"all": trials.index, "feasible": trials.index[trials["feasible"]], "pareto": pareto_front(trials).index}
    table = choice_statistics(trials, groups).set_index(["choice", "value"])
    # 5 A and 5 B architectures; 8 feasible (5 A, 3 B); the front is the 5 A
    assert table.loc[("merge after stage 0", "pool")].tolist() == pytest.approx([50.0, 62.5, 100.0])
    assert table.loc[("merge after stage 0", "spm")].tolist() == pytest.approx([50.0, 37.5, 0.0])
    # stage 1 layers: A has mhsa + shared, B one mhsa -> all: 10 mhsa, 5 shared of 15
    assert table.loc[("blocks in stage 1", "shared"), "all"] == pytest.approx(100 / 3)
    assert table.loc[("blocks in stage 1", "mhsa"), "pareto"] == pytest.approx(50.0)
    assert table.loc[("shared-attention position", "stage 1, layer 1")].tolist() == pytest.approx([100.0, 100.0, 100.0])
    assert table.loc[("depth of stage 1", "2"), "all"] == pytest.approx(50.0)
    assert np.isnan(table.loc[("super tokens per side", "7"), "pareto"])  # no Pareto member has a super-token layer
    assert table.loc[("MLP ratio", "2"), "all"] == pytest.approx(100 * 10 / 15)


def test_stored_is_pareto_is_checked():
    trials = hand_table().assign(run="a")
    settings = pd.DataFrame({"objectives": ["acc,flops"]}, index=["a"])
    assert stored_pareto_mismatch(trials, settings) == {}
    trials.loc[trials["trial"] == 1, "is_pareto"] = True
    trials.loc[trials["trial"] == 8, "is_pareto"] = False
    assert stored_pareto_mismatch(trials, settings) == {"a": [1, 8]}


# ------------------------------------------------------------------ loading
def test_load_trials_of_several_runs(tmp_path):
    a = write_run(tmp_path / "x" / "run", hand_table())
    b = write_run(tmp_path / "y" / "run", hand_table(0.1), sampler="nsga2")
    trials = load_trials(a, b)
    assert len(trials) == 20 and list(trials.columns[:2]) == ["run", "trial"]
    # folders with the same name are named by their paths
    assert trials["run"].astype(str).unique().tolist() == [str(a), str(b)]
    assert trials["feasible"].dtype == bool and trials["macs"].tolist()[:2] == [2_000_000_000, 3_000_000_000]
    _, settings = load_runs(a, b)
    assert settings["label"].tolist() == [f"{a} (tpe)", f"{b} (nsga2)"]
    with pytest.raises(UserError, match="given twice"):
        load_trials(a, tmp_path / "x" / ".." / "x" / "run")


# ------------------------------------------------------------------ plots
def test_plots_label_axes_and_name_runs(tmp_path):
    a = write_run(tmp_path / "runA", hand_table())
    b = write_run(tmp_path / "runB", hand_table(0.1), sampler="nsga2")
    trials, settings = load_runs(a, b)
    labels = settings["label"].to_dict()
    front = pareto_front(trials)
    fig = pareto_figure(trials[evaluated_feasible(trials)], front, trials[~trials["feasible"]], MACS, labels, [4e9])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "MACs at 224x224 (G)" and ax.get_ylabel() == ACC_LABEL == "validation top-1 accuracy (inherited weights)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"runA (tpe): Pareto front (5)", "runB (nsga2): Pareto front (5)", "runA (tpe): feasible trials (7)", "limit: 4 G MACs"} <= set(legend)
    step = next(line for line in ax.get_lines() if line.get_label() == "runA (tpe): Pareto front (5)")
    assert step.get_xdata().tolist() == [1.5, 2.0, 2.0, 3.0, 3.8] and step.get_drawstyle() == "steps-post"
    curve = hypervolume_curve(trials, "macs", 4e9)
    hv_ax = hypervolume_figure([(MACS, curve, 4e9)], labels).axes[0]
    assert hv_ax.get_xlabel().startswith("trials") and hv_ax.get_ylabel() == "hypervolume (accuracy × G MACs)"
    assert [t.get_text() for t in hv_ax.get_legend().get_texts()] == ["runA (tpe)", "runB (nsga2)"]


# ------------------------------------------------------------------ reports and the CLI
def _images(report_md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report_md)


def test_cli_compares_two_runs(tmp_path):
    a = write_run(tmp_path / "runA", with_latency(hand_table()))
    b = write_run(tmp_path / "runB", hand_table(0.1), sampler="nsga2", flops=4.5e9)
    out = tmp_path / "compare"
    proc = run_module("nas.report", str(a), str(b), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    pngs = sorted(p.name for p in (out / "report").glob("*.png"))
    assert pngs == ["choices.png", "hypervolume.png", "pareto_latency.png", "pareto_macs.png"]
    assert all((out / "report" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert sorted(_images(text)) == sorted(f"report/{p}" for p in pngs)
    for name in ("summary.csv", "pareto_macs.csv", "pareto_latency.csv", "best_per_mac_bin.csv", "hypervolume.csv", "choices.csv"):
        assert (out / "report" / name).is_file(), name
    assert "runA (tpe)" in text and "runB (nsga2)" in text and "No feasible architecture" not in text
    front = pd.read_csv(out / "report" / "pareto_macs.csv")
    assert front.groupby("run")["trial"].apply(sorted).to_dict() == {"runA": FRONT, "runB": FRONT}
    assert pd.read_csv(out / "report" / "pareto_latency.csv")["run"].unique().tolist() == ["runA"]
    summary = pd.read_csv(out / "report" / "summary.csv").set_index("run")
    # both against the larger limit, 4.5 G (see test_fronts_and_hypervolume_are_per_run)
    assert summary["HV MACs (acc × G MACs)"].to_dict() == pytest.approx({"runA (tpe)": 1.77, "runB (nsga2)": 2.07}, rel=1e-9)
    assert summary["on the joint MAC front"].to_dict() == {"runA (tpe)": "0 of 5", "runB (nsga2)": "5 of 5"}
    assert "Largest final MAC hypervolume: **runB (nsga2)**" in text
    assert "accuracy 0 and 4.5 G MACs (the largest limit among the runs)" in text
    assert "latency (ms, measured)" in text
    assert not (a / "report.md").exists() and not (b / "report").exists()


def test_cli_reports_one_run_in_its_folder(tmp_path):
    run = write_run(tmp_path / "run", hand_table())
    proc = run_module("nas.report", str(run) + "/", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.md").is_file() and len(list(run.rglob("*.png"))) == 3
    assert all((run / image).is_file() for image in _images((run / "report.md").read_text()))
    assert "is_pareto" not in (run / "report.md").read_text()  # the stored front agrees with the recomputed one


def test_run_without_feasible_trials_gets_a_report_that_says_so(tmp_path):
    trials = hand_table()
    trials["feasible"] = trials["trial"] == 4  # only the failed one
    trials.loc[trials["trial"] != 4, ["evaluated", "is_pareto"]] = False
    trials.loc[trials["trial"] != 4, "acc"] = np.nan
    run = write_run(tmp_path / "run", trials)
    path = report_runs([run])
    text = path.read_text()
    assert path == run / "report.md"
    assert "**No feasible architecture was evaluated**: of 10 trials, 9 exceeded a limit and 1 failed" in text
    assert "the front is empty" in text
    summary = pd.read_csv(run / "report" / "summary.csv")
    assert summary.loc[0, "evaluated feasible"] == 0 and summary.loc[0, "HV MACs (acc × G MACs)"] == 0.0
    assert (run / "report" / "choices.png").is_file() and (run / "report" / "pareto_macs.png").is_file()


def test_missing_latency_column_and_stale_latency_plot(tmp_path):
    run = write_run(tmp_path / "run", with_latency(hand_table()))
    report_runs([run])
    assert (run / "report" / "pareto_latency.png").is_file()
    hand_table().drop(columns=["latency_ms"]).to_csv(run / "trials.csv", index=False)
    report_runs([run])
    assert not (run / "report" / "pareto_latency.png").exists() and "latency" not in (run / "report" / "pareto_macs.csv").read_text()


def _bad_inputs(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "trials.csv").write_bytes(b"")
    (tmp_path / "header").mkdir()
    (tmp_path / "header" / "trials.csv").write_text(",".join(hand_table().columns) + "\n")
    (tmp_path / "a_file").write_text("x")
    write_run(tmp_path / "no_acc", hand_table().drop(columns=["acc", "macs"]))
    bad_bool = hand_table().astype({"feasible": object})
    bad_bool.loc[0, "feasible"] = "maybe"
    write_run(tmp_path / "bad_bool", bad_bool)
    write_run(tmp_path / "bad_arch", hand_table().assign(arch=lambda d: d["arch"].where(d["trial"] != 2, "{not json")))
    write_run(tmp_path / "good", hand_table())


@pytest.mark.parametrize("args, fragments", [
    (["missing"], ["missing: does not exist"]),
    (["empty_dir"], ["empty_dir: not a search run (no trials.csv or trials.parquet)"]),
    (["a_file"], ["a_file: not a folder"]),
    (["zero"], ["trials.csv: empty file (zero bytes)"]),
    (["header"], ["trials.csv: has a header but no trials"]),
    (["no_acc"], ["trials.csv: columns missing: acc, macs", "needs trial, status, feasible, acc, macs, params, arch"]),
    (["bad_bool"], ["column feasible holds 'maybe'; it must hold True or False"]),
    (["bad_arch"], ["trial 2: arch: not valid JSON"]),
    (["good", "--out", "a_file"], ["--out a_file: is a file"]),
    (["good", "--out", "a_file/sub"], ["--out a_file/sub: a_file is a file"]),
    (["good", "good"], ["good: given twice"]),
    (["good", "missing", "--out", "cmp"], ["missing: does not exist"]),
    ([], ["the following arguments are required: RUN"]),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, args, fragments):
    _bad_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and all(f in lines[0] for f in fragments), lines
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_bad_input_through_the_cli(tmp_path):
    _bad_inputs(tmp_path)
    assert_user_error(run_module("nas.report", "no_acc", cwd=tmp_path), "columns missing: acc, macs")
    assert_user_error(run_module("nas.report", "empty_dir", cwd=tmp_path), "not a search run")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("case", ["one_feasible", "same_macs"])
def test_small_runs_get_their_report(tmp_path, case):
    """One feasible evaluated trial (the rest infeasible), or every trial at the same MACs: bins, fronts and
    hypervolume still have an answer, and report.md is written."""
    df = hand_table()
    if case == "one_feasible":
        df.loc[df["trial"] != 2, "feasible"] = False
    else:
        df["macs"] = 2_000_000_000
    run = write_run(tmp_path / case, df)
    path = report_runs([run])
    text = path.read_text()
    assert path == run / "report.md" and "Pareto" in text
    bins = pd.read_csv(run / "report" / "best_per_mac_bin.csv")
    best = {"one_feasible": 2, "same_macs": 8}[case]  # the only feasible one; the most accurate (0.8)
    assert len(bins) == 1 and bins["trial"].tolist() == [best]


def test_a_report_that_fails_does_not_fail_the_search(tmp_path, monkeypatch, capsys):
    from nas.runs import SearchSettings
    from nas.searching import results

    run = write_run(tmp_path / "run", hand_table())
    monkeypatch.setattr(results, "trials_frame", lambda run_dir, sampler="": hand_table().assign(params=10_000_000))
    monkeypatch.setattr(results.runs, "RESULTS_ROOT", tmp_path / "results")
    (tmp_path / "results").mkdir()

    def broken(run_dir):
        raise ValueError("bins collide")

    monkeypatch.setattr(results, "write_report", broken)
    summary = results.write_results(SearchSettings(flops=4e9, trials=10, run_dir=str(run)), run, 1.0)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: report.md was not written (bins collide); the results are; try python -m nas.report {run}"]
    assert summary["best"]["trial"] == 8 and (run / "best.json").is_file() and (run / "pareto.csv").is_file()
    assert not (run / "report.md").exists()
