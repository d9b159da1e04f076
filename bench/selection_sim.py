"""How often does the selection stage pick the truly best candidate? Simulated trainings with known true accuracies.

    python bench/selection_sim.py [--repeats 1000] [--searched 6] [--references 4] [--epochs 10] [--seeds 3]
        [--gap 0.02] [--noise 0.0135] [--spread 0.0175] [--speed 0.02] [--rho 0.5] [--concurrent 2] [--seed 0]

Every repeat draws the candidates' true accuracies at the last epoch (--searched of the search's, then --references;
the truly best one --gap above the second, at a random place; the rest spread by --spread, the audit's spread between
architectures less its noise) and simulated trainings: seed s of candidate i after e epochs scores
    true_i + speed_i * (1 - e / epochs) + noise,
speed_i ~ N(0, --speed) a candidate's own learning speed (gone at the last epoch: early rungs rank differently), noise
~ N(0, --noise) per seed (the audit's seed-to-seed std, 0.0135 at 2, 6 and 12 epochs), correlated --rho between the
epochs of one training. The selection is then run on them through the same code as `nas.search --select`:
`nas.searching.rungs` (successive halving, the choice, the verdict); today's selection (before issue 34) through
Ray Tune's ASHAScheduler fed the same results in its order (the search's best first, the references last, --concurrent
at a time, epochs of candidate-dependent length), chosen as it chose. Printed: per rung schedule the share of repeats
that picked the truly best candidate, the epochs trained (seed-epochs, against training all of them to the end), and
with the truly best a reference --gap above the search's best, how often the verdict is "lost". Last line: the
default schedule's figure beside today's.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from nas.cli import Parser, run_cli
from nas.errors import UserError
from nas.runs import SearchSettings
from nas.searching import rungs


def build_parser() -> Parser:
    p = Parser(prog="python bench/selection_sim.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=1000)
    p.add_argument("--searched", type=int, default=6, help="the selection's K (--select)")
    p.add_argument("--references", type=int, default=4, help="references within the limits (psvit_ext has 4)")
    p.add_argument("--epochs", type=int, default=10, help="--select-epochs")
    p.add_argument("--seeds", type=int, default=SearchSettings.select_seeds, help="--select-seeds of the new selection (today's used 2)")
    p.add_argument("--final-seeds", type=int, default=SearchSettings.select_final_seeds, help="--select-final-seeds: seeds at the last rung")
    p.add_argument("--gap", type=float, default=0.02, help="the truly best candidate's lead over the second")
    p.add_argument("--noise", type=float, default=0.0135, help="seed-to-seed std of one training's validation accuracy")
    p.add_argument("--spread", type=float, default=0.0175, help="std of the true accuracies between candidates")
    p.add_argument("--speed", type=float, default=0.02, help="std of a candidate's own deviation early in training")
    p.add_argument("--rho", type=float, default=0.5, help="correlation of one training's noise between its epochs")
    p.add_argument("--concurrent", type=int, default=2, help="trainings at once (today's ASHA: one per CPU core)")
    p.add_argument("--seed", type=int, default=0)
    return p


def check(args) -> None:
    if not 1 <= args.repeats <= 1_000_000 or args.searched < 1 or args.references < 1 or not 1 <= args.epochs <= 1000:
        raise UserError("--repeats, --searched, --references and --epochs must be at least 1 (repeats and epochs within reason)")
    if not 2 <= args.seeds <= 100 or not args.seeds <= args.final_seeds <= 100 or args.concurrent < 1:
        raise UserError(f"--seeds must be from 2 to 100, --final-seeds from --seeds to 100 and --concurrent at least 1, "
                        f"got {args.seeds}, {args.final_seeds} and {args.concurrent}")
    for name in ("gap", "noise", "spread", "speed"):
        if not 0 <= getattr(args, name) < 1:
            raise UserError(f"--{name} must be from 0 to 1 (accuracy is a fraction), got {getattr(args, name)}")
    if not 0 <= args.rho <= 1:
        raise UserError(f"--rho must be from 0 to 1, got {args.rho}")


def truths(rng, args, best_is_reference: bool | None) -> np.ndarray:
    """True last-epoch accuracies, searched first: the best one --gap above all others (a reference when
    best_is_reference, a searched one when False, anywhere when None)."""
    n = args.searched + args.references
    others = rng.normal(0, args.spread, n - 1)
    others -= others.max()
    if best_is_reference is None:
        where = int(rng.integers(n))
    else:
        where = int(rng.integers(args.searched, n)) if best_is_reference else int(rng.integers(args.searched))
    return 0.5 + np.insert(others, where, args.gap)


def trainings(rng, truth: np.ndarray, args, seeds: int) -> np.ndarray:
    """[candidate, epoch, seed] validation accuracies."""
    e = np.arange(1, args.epochs + 1)
    curve = -0.15 * (1 - e / args.epochs)  # the common learning curve (it does not change a ranking)
    speed = rng.normal(0, args.speed, (len(truth), 1)) * (1 - e / args.epochs)
    noise = args.noise * (math.sqrt(args.rho) * rng.normal(size=(len(truth), 1, seeds))
                          + math.sqrt(1 - args.rho) * rng.normal(size=(len(truth), args.epochs, seeds)))
    return truth[:, None, None] + (curve + speed)[:, :, None] + noise


def successive_halving(acc: np.ndarray, labels: list[str], schedule: rungs.Schedule) -> tuple[dict, int]:
    """The new selection: histories revealed as nas.searching.rungs.plan asks for them (the order of training is
    irrelevant to it): a candidate sent to a rung gets that rung's epochs and seeds; returns the histories and the
    seed-epochs trained."""
    histories = {label: [] for label in labels}
    while True:
        rung, missing = rungs.plan(labels, histories, schedule)
        if rung is None:
            return histories, sum(len(row) for h in histories.values() for row in h)
        mark = schedule.marks[rung]
        for i, label in enumerate(labels):
            if label in missing:
                seeds = max(schedule.seeds_at(mark), len(histories[label][0]) if histories[label] else 0)
                histories[label] = acc[i, :mark, :seeds].tolist()


class _Trial:
    def __init__(self, label: str):
        self.trial_id = label


def asha(rng, acc: np.ndarray, labels: list[str], order: list[str], args, grace: int) -> tuple[dict, int]:
    """Ray Tune's ASHAScheduler fed each epoch's mean validation accuracy as Tune would: --concurrent trainings at a
    time in the given order, each epoch of a candidate-dependent length; a stopped one frees its slot."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    scheduler = ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max", max_t=args.epochs, grace_period=grace,
                              reduction_factor=2)
    full = {label: acc[i].tolist() for i, label in enumerate(labels)}
    pace = {label: rng.uniform(0.7, 1.3) for label in order}  # architectures differ in cost
    histories, queue, running, now = {label: [] for label in order}, list(order), {}, 0.0
    while queue or running:
        while queue and len(running) < args.concurrent:
            label = queue.pop(0)
            scheduler.on_trial_add(None, _Trial(label))
            running[label] = now + pace[label]
        label = min(running, key=running.get)
        now = running.pop(label)
        epoch = len(histories[label]) + 1
        histories[label] = full[label][:epoch]
        action = scheduler.on_trial_result(None, _Trial(label), {"epoch": epoch, "val_acc": rungs.mean(full[label][epoch - 1])})
        if action == TrialScheduler.CONTINUE and epoch < args.epochs:
            running[label] = now + pace[label]
    return histories, sum(len(h) * acc.shape[2] for h in histories.values())


def todays_choice(kinds: dict[str, str], histories: dict) -> tuple[str, str]:
    """The selection before issue 34: the winner sorted by epochs trained, then accuracy; the 'best reference' the
    first reference in that order; a paired t-interval over the seeds at the epochs both reached; the reference
    selected only when that interval says the winner lost."""
    from scipy import stats

    order = sorted(kinds, key=lambda label: (-len(histories[label]), -rungs.mean(histories[label][-1])))
    winner = order[0]
    ref = next(label for label in order if kinds[label] == "reference")
    if ref == winner:
        return winner, "reference"
    e = min(len(histories[winner]), len(histories[ref]))
    d = np.array(histories[winner][e - 1]) - np.array(histories[ref][e - 1])
    half = stats.t.ppf(0.95, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    v = "beat" if d.mean() - half > 0 else "lost" if d.mean() + half < 0 else "tied"
    return (ref if v == "lost" else winner), v


def asha_latest(kinds: dict[str, str], histories: dict) -> str:
    """ASHA with shuffled order: the most accurate of those trained longest."""
    return max(kinds, key=lambda label: (len(histories[label]), rungs.mean(histories[label][-1])))


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check(args)
    t0 = time.time()
    n = args.searched + args.references
    labels = [f"searched-{i}" for i in range(args.searched)] + [f"reference-{i}" for i in range(args.references)]
    kinds = {label: "searched" if label.startswith("searched") else "reference" for label in labels}
    r, e, s, f = rungs.RUNGS, rungs.ETA, args.seeds, args.final_seeds
    schedules = {"default": (r, e, s, f), "final rung at --seeds": (r, e, s, s), "2 rungs, eta 2": (2, 2, s, f),
                 "2 rungs, eta 3": (2, 3, s, f), "3 rungs, eta 3": (3, 3, s, f), "4 rungs, eta 2": (4, 2, s, f),
                 "no halving, --final-seeds": (1, 2, f, f), "no halving, --seeds": (1, 2, s, s)}
    policies = [(f"successive halving, {name}: rungs {rungs.milestones(args.epochs, r, e)}, seeds {s}/{f}", rungs.Schedule(args.epochs, s, f, r, e))
                for name, (r, e, s, f) in schedules.items()]
    policies += [("ASHA, shuffled order, first rung at epochs/2", "asha-shuffled"), ("today: ASHA, grid order, 2 seeds", "today")]
    picked = {name: 0 for name, _ in policies}
    cost = {name: 0 for name, _ in policies}
    lost = {name: 0 for name, how in policies if how != "asha-shuffled"}
    false_lost = {name: 0 for name in lost}  # the search's best truly --gap ahead of every reference, reported lost
    rng = np.random.default_rng(args.seed)
    for _ in range(args.repeats):
        for scenario in ("best", "lost", "won"):
            truth = truths(rng, args, {"best": None, "lost": True, "won": False}[scenario])
            best = labels[int(np.argmax(truth))]
            acc = trainings(rng, truth, args, max(args.final_seeds, args.seeds))
            for name, how in policies:
                if scenario != "best" and name not in lost:
                    continue
                if how == "today":
                    h, c = asha(rng, acc[:, :, :2], labels, labels, args, max(1, args.epochs // 4))
                    chosen, v = todays_choice(kinds, h)
                elif how == "asha-shuffled":
                    h, c = asha(rng, acc[:, :, :args.seeds], labels, [str(x) for x in rng.permutation(labels)], args, max(1, args.epochs // 2))
                    chosen, v = asha_latest(kinds, h), None
                else:
                    h, c = successive_halving(acc, labels, how)
                    chosen, epochs = rungs.choose(kinds, h, how)
                    v = rungs.comparison(kinds, h, epochs, how)["verdict"] if scenario != "best" else None
                if scenario == "best":
                    picked[name] += chosen == best
                    cost[name] += c
                else:  # today's "reference": its line says the search lost
                    (lost if scenario == "lost" else false_lost)[name] += v in ("lost", "reference")
    full = n * args.epochs
    print(f"{args.repeats} repeats of {args.searched} searched candidates and {args.references} references, {args.epochs} epochs, "
          f"{args.seeds} seeds, {args.final_seeds} at the last rung (today's: 2); best {args.gap * 100:.1f} points ahead; noise {args.noise}, "
          f"spread {args.spread}, speed {args.speed}, rho {args.rho}; {(time.time() - t0):.0f} s\n")
    print(f"| selection | picked the truly best | seed-epochs trained (all to the end with --seeds: 100%) | reference {args.gap * 100:.1f} "
          f"points ahead reported lost | the search's best {args.gap * 100:.1f} points ahead reported lost |")
    print("|---|---|---|---|---|")
    for name, how in policies:
        share = cost[name] / args.repeats / (full * (2 if how == "today" else args.seeds)) * 100
        lost_text = f"{lost[name] / args.repeats * 100:.1f}% | {false_lost[name] / args.repeats * 100:.1f}%" if name in lost else " |"
        print(f"| {name} | {picked[name] / args.repeats * 100:.1f}% | {share:.0f}% of {full * (2 if how == 'today' else args.seeds)} | {lost_text} |")
    default = policies[0][0]
    print(f"\nreference truly {args.gap * 100:.1f} points ahead of the search's best: reported lost in "
          f"{lost[default] / args.repeats * 100:.1f}% of {args.repeats} repeats (today's: {lost[policies[-1][0]] / args.repeats * 100:.1f}%)")
    print(f"picked the truly best candidate in {picked[default] / args.repeats * 100:.1f}% of {args.repeats} repeats "
          f"(today's selection: {picked[policies[-1][0]] / args.repeats * 100:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
