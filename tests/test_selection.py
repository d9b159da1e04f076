"""References as the first trials, and the selection stage (ASHA over standalone trainings) on the tiny space."""
import json
import subprocess
import sys

import optuna
import pandas as pd
import pytest

from conftest import ROOT, kill_at_line, run_module, toy_npz
from nas.runs import SearchSettings
from nas.searching.driver import enqueue_references
from nas.searching.evaluators import SupernetEvaluator
from search_spaces import get_reference, get_space

SPACE_FILE = str(ROOT / "tests" / "tiny_space.py")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_npz(tmp_path_factory.mktemp("data") / "toy.npz")


def test_references_within_the_limits_are_the_first_trials(tmp_path):
    import tiny_space  # noqa: F401  (tiny_ext and its references tiny_small, 1.10 G MACs, and tiny_large, 5.81 G)

    settings = SearchSettings(space="tiny_ext", flops=2.3e9, run_dir=str(tmp_path))
    lines = []
    assert enqueue_references(settings, tmp_path, SupernetEvaluator(settings), log=lines.append) == 1
    assert lines[0].startswith("reference tiny_large is not proposed: its macs 5.813e+09 is over the limit 2.3e+09")
    assert enqueue_references(settings, tmp_path, SupernetEvaluator(settings), log=lines.append) == 0  # waiting already: not twice
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from nas import runs

    study = optuna.load_study(study_name="search", storage=runs.journal(tmp_path))
    trial = study.ask()
    assert get_space("tiny_ext").suggest(trial) == get_reference("tiny_ext", "tiny_small")
    assert trial.user_attrs["reference"] == "tiny_small"
    (tmp_path / "wide").mkdir()
    wide = SearchSettings(space="tiny_ext", flops=10e9, run_dir=str(tmp_path / "wide"))
    assert enqueue_references(wide, tmp_path / "wide", SupernetEvaluator(wide), log=lines.append) == 2


def _select_args(toy, run, *extra):
    return ["--space-file", SPACE_FILE, "--space", "tiny_ext", "--flops", "2.3G", "--trials", "6", "--epochs", "1", "--data", toy,
            "--out", str(run), "--select", "2", "--select-epochs", "4", *extra]


@pytest.mark.slow
def test_selection_trains_the_best_and_the_references_under_asha_and_resumes_after_a_kill(tmp_path, toy):
    run = tmp_path / "run"
    # killed at the selection's first reported epoch: the search is finished, the selection under way
    kill_at_line(["nas.search", *_select_args(toy, run)], "selection: trial-", cwd=tmp_path)
    trials = pd.read_csv(run / "trials.csv")
    assert trials.loc[0, "proposed_by"] == "reference:tiny_small"
    assert (trials.loc[1:, "proposed_by"] == "sampler:tpe").all()
    assert not (run / "selection.csv").exists()
    before = {p.parent.parent.name for p in (run / "select").glob("*/seed*/checkpoint.pt")}
    assert before  # some candidate had trained an epoch

    resumed = run_module("nas.search", "--resume", str(run), "--space-file", SPACE_FILE, "--select", "2", "--select-epochs", "4",
                         cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "selection: resuming" in resumed.stdout
    table = pd.read_csv(run / "selection.csv")
    feasible = trials[trials["feasible"] & (trials["status"] == "ok")].sort_values("acc", ascending=False).drop_duplicates("arch")
    best_two = {f"trial-{t}" if p.startswith("sampler") else "reference-tiny_small"
                for t, p in zip(feasible["trial"].head(2), feasible["proposed_by"].head(2))}
    assert best_two | {"reference-tiny_small"} == set(table["label"])  # the two best, and the reference within the limit
    assert set(table["epochs"]) <= {1, 2, 4} and table["epochs"].max() == 4  # ASHA's rungs: 1, 2, 4 epochs
    assert (table["epochs"] >= 1).all()
    for label, epochs in zip(table["label"], table["epochs"]):
        history = json.loads((run / "select" / label / "history.json").read_text())["val_acc"]
        assert len(history) == epochs and all(len(accs) == 2 for accs in history)  # two seeds at every rung
        for seed in (0, 1):
            log = pd.read_csv(run / "select" / label / f"seed{seed}" / "train_log.csv")
            assert list(log["epoch"]) == list(range(1, epochs + 1))  # resumed, never trained twice
    selected = json.loads((run / "selected.json").read_text())
    winner = table[table["epochs"] == 4].sort_values("val_acc", ascending=False).iloc[0]
    comparison = selected["comparison"]
    if comparison["verdict"] != "lost":
        assert selected["label"] == winner["label"] and selected["accuracy"] == pytest.approx(winner["val_acc"])
    assert comparison["reference"] == "tiny_small" and comparison["verdict"] in ("beat", "tied", "lost", "reference")
    report = (run / "report.md").read_text()
    assert "## Selection" in report and resumed.stdout.strip().splitlines()[-1] in report
    assert resumed.stdout.strip().splitlines()[-1].startswith("The search ")
    retrain = subprocess.run([sys.executable, "-m", "nas.retrain", str(run / "selected.json"), "--space-file", SPACE_FILE, "--epochs", "1",
                              "--no-latency", "--out", str(tmp_path / "retrain")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert retrain.returncode == 0, retrain.stderr[-2000:]  # selected.json is a best.json nas.retrain reads
    assert json.loads((tmp_path / "retrain" / "metrics.json").read_text())["arch"] == selected["arch"]
