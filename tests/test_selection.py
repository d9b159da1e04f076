"""References as the first trials; the selection stage: its successive halving and statistics on known inputs, and a run on the tiny space."""
import json
import re
import subprocess
import sys

import optuna
import pandas as pd
import pytest

from conftest import ROOT, kill_at_line, run_module, toy_npz
from nas.measure.costs import arch_costs
from nas.runs import SearchSettings
from nas.searching.driver import enqueue_references
from nas.searching import rungs
from nas.searching.evaluators import SupernetEvaluator
from search_spaces import get_reference, get_space

SPACE_FILE = str(ROOT / "tests" / "tiny_space.py")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_npz(tmp_path_factory.mktemp("data") / "toy.npz")


def test_references_within_the_limits_are_the_first_trials(tmp_path):
    import tiny_space  # noqa: F401  (tiny_ext and its references tiny_small, 1.10 G MACs, and tiny_large, 5.8 G)

    settings = SearchSettings(space="tiny_ext", flops=2.3e9, run_dir=str(tmp_path))
    lines = []
    assert enqueue_references(settings, tmp_path, SupernetEvaluator(settings), log=lines.append) == 1
    macs = arch_costs(get_reference("tiny_ext", "tiny_large"), get_space("tiny_ext").target).macs
    assert lines[0].startswith(f"reference tiny_large is not proposed: its macs {macs:.4g} is over the limit 2.3e+09")
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


def test_rungs_are_max_t_over_powers_of_eta_rounded_up():
    assert rungs.milestones(10) == [3, 5, 10] and rungs.milestones(8) == [2, 4, 8] and rungs.milestones(4) == [1, 2, 4]
    assert rungs.milestones(2) == [1, 2] and rungs.milestones(1) == [1] and rungs.milestones(10, 2, 3) == [4, 10]


def _h(*per_epoch):  # a history: per epoch the seeds' accuracies
    return [list(accs) for accs in per_epoch]


def test_a_rung_is_decided_only_when_every_candidate_in_it_has_reported_whatever_the_order():
    marks = rungs.Schedule(4, 2, 2).marks
    assert marks == [1, 2, 4]
    full = {"a": _h((.30, .32), (.40, .42), (.50, .50), (.55, .57)), "b": _h((.20, .22), (.30, .30), (.40, .40), (.45, .45)),
            "c": _h((.35, .33), (.38, .40), (.46, .48), (.50, .52)), "d": _h((.10, .12), (.20, .22), (.30, .30), (.35, .35))}
    for order in (["a", "b", "c", "d"], ["d", "c", "b", "a"], ["b", "d", "a", "c"]):
        seen = {"a": full["a"][:1]}  # the first to report passes nothing: the rung waits for the others
        assert rungs.plan(order, seen, rungs.Schedule(4, 2, 2)) == (0, [x for x in order if x != "a"])
        seen = {x: full[x][:1] for x in order}
        assert rungs.plan(order, seen, rungs.Schedule(4, 2, 2)) == (1, ["c", "a"])  # rung 1 means .34 (c), .31 (a), .21 (b), .11 (d)
        seen.update({x: full[x][:2] for x in ("a", "c")})
        assert rungs.plan(order, seen, rungs.Schedule(4, 2, 2)) == (2, ["a"])  # rung 2: a .41, c .39
        seen["a"] = full["a"]
        assert rungs.plan(order, seen, rungs.Schedule(4, 2, 2)) == (None, ["a"])
        assert rungs.reached(order, seen, rungs.Schedule(4, 2, 2)) == {"a": 4, "b": 1, "c": 2, "d": 1}


def test_rungs_read_histories_at_their_epochs_and_train_only_what_a_new_candidate_lacks():
    # a resumed selection on a run extended with more trials: "old" was trained to 4 epochs by the earlier selection,
    # "new" not at all; the rung at 1 epoch waits for "new" and ranks by epoch 1, not by old's later epochs
    two = rungs.Schedule(4, 2, 2)
    histories = {"old": _h((.20, .20), (.30, .30), (.60, .60), (.70, .70)), "cut": _h((.25, .25)), "new": []}
    assert rungs.plan(["old", "cut", "new"], histories, two) == (0, ["new"])
    histories["new"] = _h((.40, .40))
    assert rungs.plan(["old", "cut", "new"], histories, two) == (1, ["new", "cut"])  # old's .20 at epoch 1 is last
    assert rungs.reached(["old", "cut", "new"], histories, two) == {"old": 1, "cut": 1, "new": 1}


def test_the_last_rung_adds_seeds_and_earlier_rungs_rank_on_their_own_seeds_only():
    plan = rungs.Schedule(4, 2, 4)  # rungs at 1, 2, 4 epochs: 2 seeds, 2 seeds, 4 seeds
    assert plan.marks == [1, 2, 4] and [plan.seeds_at(m) for m in plan.marks] == [2, 2, 4]
    labels = ["a", "b", "c"]
    h = {"a": _h((.30, .30), (.40, .42)), "b": _h((.20, .20), (.35, .37)), "c": _h((.10, .10))}
    assert rungs.plan(labels, h, plan) == (2, ["a"])  # a and b at rung 2, a's .41 goes on, to 4 epochs with 4 seeds
    h["a"] = _h((.30, .30), (.40, .42), (.50, .50), (.60, .62))  # 4 epochs with 2 seeds only: not at the last rung yet
    assert rungs.plan(labels, h, plan) == (2, ["a"]) and rungs.reached(labels, h, plan)["a"] == 2
    # the added seeds fill every row; two of them far ahead at epoch 2 do not reopen that rung (ranked on seeds 0 and 1)
    h["b"] = _h((.20, .20, .90, .90), (.35, .37, .90, .90))
    h["a"] = _h((.30, .30, .31, .29), (.40, .42, .41, .39), (.50, .50, .52, .48), (.60, .62, .64, .66))
    assert rungs.plan(labels, h, plan) == (None, ["a"]) and rungs.reached(labels, h, plan) == {"a": 4, "b": 2, "c": 1}
    chosen, epochs = rungs.choose({"a": "searched", "b": "reference", "c": "reference"}, h, plan)
    assert chosen == "a" and rungs.at(h["a"], 4, plan.seeds_at(4)) == [.60, .62, .64, .66] and rungs.at(h["b"], 2, 2) == [.35, .37]
    c = rungs.comparison({"a": "searched", "b": "reference", "c": "reference"}, h, epochs, plan)
    assert c["epochs"] == 2 and c["references"]["b"]["seeds"] == [2, 2]  # at rung 2: its two seeds, not b's four
    assert c["references"]["b"]["mean"] == pytest.approx(0.05)


def test_the_winner_is_compared_with_every_reference_at_the_last_rung_at_equal_epochs():
    from scipy import stats

    three = rungs.Schedule(4, 3, 3)
    kinds = {"trial-1": "searched", "trial-2": "searched", "trial-3": "searched", "reference-x": "reference", "reference-y": "reference"}
    h = {"trial-1": _h((.50, .52, .51), (.55, .57, .56), (.60, .61, .62), (.60, .62, .61)),
         "trial-2": _h((.10, .10, .10)), "trial-3": _h((.12, .12, .12)),
         "reference-x": _h((.46, .47, .48), (.45, .46, .47), (.50, .52, .51), (.40, .41, .42)),
         "reference-y": _h((.45, .45, .45), (.44, .44, .44), (.50, .50, .50), (.52, .50, .51))}
    chosen, epochs = rungs.choose(kinds, h, three)  # 5 candidates at 1 epoch, 3 at 2, 2 at 4
    assert chosen == "trial-1" and epochs == {"trial-1": 4, "trial-2": 1, "trial-3": 1, "reference-x": 4, "reference-y": 2}
    c = rungs.comparison(kinds, h, epochs, three)
    assert c["winner"] == "trial-1" and c["epochs"] == 4 and list(c["references"]) == ["reference-x"]  # y stopped at 2
    x = c["references"]["reference-x"]
    half = stats.t.ppf(0.95, 4) * 0.01 * (2 / 3) ** 0.5  # one reference: Dunnett is the pooled two-sample t, df 2 x (3 - 1)
    assert x["mean"] == pytest.approx(0.20) and x["ci90"] == pytest.approx([0.20 - half, 0.20 + half], abs=1e-4)  # scipy integrates numerically
    assert c["verdict"] == "beat"


def test_the_verdict_can_fire_with_three_seeds_at_the_measured_noise():
    noise = 0.0135  # the audit's seed-to-seed std; three seeds with exactly that spread
    def seeds(m, n=3):
        return [m - noise, m, m + noise][:n] if n == 3 else [m - noise / 2 ** 0.5, m + noise / 2 ** 0.5]
    behind = rungs.compare(seeds(0.50), {"ref": seeds(0.53)})
    assert rungs.verdict(behind) == "lost" and behind["ref"]["mean"] == pytest.approx(-0.03)
    assert rungs.verdict(rungs.compare(seeds(0.53), {"ref": seeds(0.50)})) == "beat"
    assert rungs.verdict(rungs.compare(seeds(0.50), {"ref": seeds(0.51)})) == "tied"  # a point is within the noise
    # the same 3 points with 2 seeds: the old paired interval had 1 degree of freedom (t = 6.31); pooled, 2 (t = 2.92)
    assert rungs.verdict(rungs.compare(seeds(0.50, 2), {"ref": seeds(0.53, 2)})) == "tied"
    # two references: the intervals widen for the second comparison, and one reference ahead is enough to lose
    two = rungs.compare(seeds(0.50), {"ref": seeds(0.53), "other": seeds(0.40)})
    assert rungs.verdict(two) == "lost" and two["ref"]["ci90"][1] > behind["ref"]["ci90"][1]


def _select_args(toy, run, *extra):
    return ["--space-file", SPACE_FILE, "--space", "tiny_ext", "--flops", "2.3G", "--trials", "6", "--epochs", "1", "--data", toy,
            "--out", str(run), "--select", "2", "--select-epochs", "4", "--select-seeds", "2",
            "--select-final-seeds", "3", *extra]


@pytest.mark.slow
def test_selection_trains_the_best_and_the_references_by_successive_halving_and_resumes_after_a_kill(tmp_path, toy):
    run = tmp_path / "run"
    # killed at the selection's first reported epoch: the search is finished, the selection under way. The run folder is
    # given relative to the working directory, as `results/<run>` is by default (Ray Tune runs trainables elsewhere).
    kill_at_line(["nas.search", *_select_args(toy, "run")], "selection: trial-", cwd=tmp_path)
    trials = pd.read_csv(run / "trials.csv")
    assert trials.loc[0, "proposed_by"] == "reference:tiny_small"
    assert (trials.loc[1:, "proposed_by"] == f"sampler:{SearchSettings.sampler}").all()  # the default sampler
    assert not (run / "selection.csv").exists()
    before = {p.parent.parent.name for p in (run / "select").glob("*/seed*/checkpoint.pt")}
    assert before  # some candidate had trained an epoch

    resumed = run_module("nas.search", "--resume", "run", "--space-file", SPACE_FILE, "--select", "2", "--select-epochs", "4",
                         "--select-seeds", "2", "--select-final-seeds", "3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "selection: resuming" in resumed.stdout
    rung_sizes = [int(n) for n in re.findall(r"selection: rung \d+ of \d+: (\d+) candidates", resumed.stdout)]
    done = [(int(i), int(n)) for i, n in re.findall(r"done \((\d+)/(\d+) candidates\)", resumed.stdout)]
    assert done == [(i, n) for n in rung_sizes for i in range(1, n + 1)]  # each rung counts its finished trainings 1..n
    table = pd.read_csv(run / "selection.csv")
    feasible = trials[trials["feasible"] & (trials["status"] == "ok")].sort_values("acc", ascending=False).drop_duplicates("arch")
    best_two = {f"trial-{t}" if p.startswith("sampler") else "reference-tiny_small"
                for t, p in zip(feasible["trial"].head(2), feasible["proposed_by"].head(2))}
    assert best_two | {"reference-tiny_small"} == set(table["label"])  # the two best, and the reference within the limit
    # rungs at 1, 2 and 4 epochs, the better half (rounded up) goes on: 3 candidates reach 1, 2, 4 epochs; 2 reach 1, 4
    assert sorted(table["epochs"]) == {3: [1, 2, 4], 2: [1, 4]}[len(table)]
    assert (table["epochs"] >= 1).all()
    for label, epochs in zip(table["label"], table["epochs"]):
        history = json.loads((run / "select" / label / "history.json").read_text())["val_acc"]
        seeds = 3 if epochs == 4 else 2  # two seeds at every rung, three at the last (the added seed caught up)
        assert len(history) == epochs and all(len(accs) == seeds for accs in history)
        assert json.loads(table.set_index("label").loc[label, "seed_val_acc"]) == history[-1]
        for seed in range(seeds):
            log = pd.read_csv(run / "select" / label / f"seed{seed}" / "train_log.csv")
            assert list(log["epoch"]) == list(range(1, epochs + 1))  # resumed, never trained twice
    selected = json.loads((run / "selected.json").read_text())
    winner = table[table["epochs"] == 4].iloc[0]
    assert selected["label"] == winner["label"] and selected["accuracy"] == pytest.approx(winner["val_acc"])
    comparison = selected["comparison"]
    if set(table["kind"]) == {"reference"}:  # the reference was among the two best: nothing searched to compare
        assert comparison is None
        return
    ref_epochs = int(table.loc[table["kind"] == "reference", "epochs"].max())
    searched_epochs = int(table.loc[table["kind"] == "searched", "epochs"].max())
    assert comparison["epochs"] == min(ref_epochs, searched_epochs)  # at equal epochs, the deepest rung both reached
    assert list(comparison["references"]) == ["tiny_small"]
    assert comparison["verdict"] == rungs.verdict(comparison["references"])
    report = (run / "report.md").read_text()
    assert "## Selection" in report and resumed.stdout.strip().splitlines()[-1] in report
    assert resumed.stdout.strip().splitlines()[-1].startswith("The search ")
    retrain = subprocess.run([sys.executable, "-m", "nas.retrain", str(run / "selected.json"), "--space-file", SPACE_FILE, "--epochs", "1",
                              "--no-latency", "--out", str(tmp_path / "retrain")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert retrain.returncode == 0, retrain.stderr[-2000:]  # selected.json is a best.json nas.retrain reads
    assert json.loads((tmp_path / "retrain" / "metrics.json").read_text())["arch"] == selected["arch"]
