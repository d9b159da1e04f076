"""Successive halving over the selection's candidates, and the statistics of its verdict.

No torch and no Ray here: the selection stage (`selection.py`) and `bench/selection_sim.py` run this same code, the one
on real trainings, the other on simulated ones. A rung is decided only when every candidate still in it has reported
its epochs there, so the order in which candidates are trained (and how many run at once) cannot change who goes on.
Every decision is a function of the candidates' histories on disk, so a killed or extended selection recomputes it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

RUNGS, ETA = 3, 2  # rungs at max_t / 4, max_t / 2, max_t (rounded up); the better half (rounded up) goes on: chosen by
#                    bench/selection_sim.py (docs/benchmarks.md)
LEVEL = 0.90  # the verdict's simultaneous confidence level (two-sided): "lost" and "beat" at 5% each side


def milestones(max_t: int, rungs: int = RUNGS, eta: int = ETA) -> list[int]:
    """The rungs' epochs, ascending, the last one max_t: max_t / eta^k rounded up, k = rungs - 1 .. 0, repeats dropped."""
    return sorted({max(1, math.ceil(max_t / eta ** k)) for k in range(rungs)})


@dataclass(frozen=True)
class Schedule:
    """Successive halving over epochs and seeds: every rung but the last ranks on `seeds` seeds, the last rung (the
    choice and the verdict) on `final_seeds` (its few candidates get more seeds: the comparison's power, issue 34)."""

    epochs: int
    seeds: int
    final_seeds: int
    rungs: int = RUNGS
    eta: int = ETA

    @property
    def marks(self) -> list[int]:
        return milestones(self.epochs, self.rungs, self.eta)

    def seeds_at(self, epochs: int) -> int:
        return self.final_seeds if epochs == self.marks[-1] else self.seeds


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def at(history: list[list[float]], epochs: int, seeds: int | None = None) -> list[float]:
    """Per-seed validation accuracy after `epochs` epochs, of the first `seeds` seeds (history: per epoch, per seed;
    a row holds the seeds that reached that epoch, in seed order)."""
    return history[epochs - 1][:seeds]


def _has(history: list[list[float]], epochs: int, seeds: int) -> bool:
    return len(history or []) >= epochs and len(history[epochs - 1]) >= seeds


def _score(history: list[list[float]], epochs: int, schedule: Schedule) -> float:
    return mean(at(history, epochs, schedule.seeds_at(epochs)))


def survivors(scores: dict[str, float], eta: int = ETA) -> list[str]:
    """The better 1/eta (rounded up) of a rung's candidates by score, best first; ties keep the given order."""
    keep = math.ceil(len(scores) / eta)
    return sorted(scores, key=lambda label: -scores[label])[:keep]


def plan(labels: list[str], histories: dict[str, list], schedule: Schedule) -> tuple[int | None, list[str]]:
    """Where successive halving stands: (rung index, the candidates that must still be trained to that rung's epochs
    and seeds), or (None, the candidates at the last rung) once every rung is decided. A history longer than a rung
    (an earlier selection trained the candidate further, or with more seeds) is read at the rung's epochs and seeds."""
    alive, marks = list(labels), schedule.marks
    for i, mark in enumerate(marks):
        missing = [label for label in alive if not _has(histories.get(label), mark, schedule.seeds_at(mark))]
        if missing:
            return i, missing
        if i == len(marks) - 1:
            return None, alive
        alive = survivors({label: _score(histories[label], mark, schedule) for label in alive}, schedule.eta)
    return None, alive


def reached(labels: list[str], histories: dict[str, list], schedule: Schedule) -> dict[str, int]:
    """Epochs of the last rung each candidate was trained to (0: none yet), as the decided rungs say."""
    out = {label: 0 for label in labels}
    alive, marks = list(labels), schedule.marks
    for i, mark in enumerate(marks):
        done = [label for label in alive if _has(histories.get(label), mark, schedule.seeds_at(mark))]
        for label in done:
            out[label] = mark
        if len(done) < len(alive) or i == len(marks) - 1:
            break
        alive = survivors({label: _score(histories[label], mark, schedule) for label in alive}, schedule.eta)
    return out


def compare(winner: list[float], references: dict[str, list[float]], level: float = LEVEL) -> dict[str, dict]:
    """The winner against every reference at equal epochs: per reference the mean difference (winner minus reference)
    and its simultaneous `level` interval from Dunnett's many-to-one test (scipy.stats.dunnett: the seeds' variance
    pooled over the winner and the references, the intervals adjusted for the number of references)."""
    from scipy import stats

    names = list(references)
    result = stats.dunnett(*[references[n] for n in names], control=winner, random_state=0)  # its integral is quasi-Monte Carlo: seeded, a verdict is reproducible
    ci = result.confidence_interval(confidence_level=level)
    out = {}
    for j, name in enumerate(names):
        # dunnett's statistic is reference minus control: turn it round so that positive means the winner is ahead
        out[name] = {"mean": mean(winner) - mean(references[name]), "ci90": [-float(ci.high[j]), -float(ci.low[j])],
                     "pvalue": float(result.pvalue[j]), "seeds": [len(winner), len(references[name])]}
    return out


def verdict(comparisons: dict[str, dict]) -> str:
    """lost: some reference is ahead beyond its interval; beat: the winner is ahead of every one beyond it; else tied."""
    if any(c["ci90"][1] < 0 for c in comparisons.values()):
        return "lost"
    return "beat" if all(c["ci90"][0] > 0 for c in comparisons.values()) else "tied"


def choose(kinds: dict[str, str], histories: dict[str, list], schedule: Schedule) -> tuple[str, dict[str, int]]:
    """The selected candidate, the most accurate (mean of its seeds) at the last rung reached, and every candidate's
    epochs (kinds: label -> searched | reference, in the candidates' order)."""
    epochs = reached(list(kinds), histories, schedule)
    last = max(epochs.values())
    if last == 0:
        raise ValueError("no candidate has reached the first rung")
    scores = {label: _score(histories[label], last, schedule) for label in kinds if epochs[label] == last}
    return max(scores, key=lambda label: scores[label]), epochs


def comparison(kinds: dict[str, str], histories: dict[str, list], epochs: dict[str, int], schedule: Schedule) -> dict | None:
    """The search's winner against every reference at equal epochs: the deepest rung that both a searched candidate and
    a reference reached (the last one unless the rungs stopped every reference, or every searched candidate, before it),
    the most accurate searched candidate there, every reference there, each with that rung's seeds; None without a
    searched candidate or a reference."""
    searched = [label for label in kinds if kinds[label] == "searched" and epochs[label]]
    refs = [label for label in kinds if kinds[label] == "reference" and epochs[label]]
    if not searched or not refs:
        return None
    e = min(max(epochs[label] for label in searched), max(epochs[label] for label in refs))
    n = schedule.seeds_at(e)
    winner = max((label for label in searched if epochs[label] >= e), key=lambda label: mean(at(histories[label], e, n)))
    per_ref = compare(at(histories[winner], e, n), {label: at(histories[label], e, n) for label in refs if epochs[label] >= e})
    return {"winner": winner, "epochs": e, "references": per_ref, "verdict": verdict(per_ref)}
