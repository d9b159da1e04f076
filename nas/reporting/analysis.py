"""Tables a report is made of: which trials count, Pareto fronts per run, the best trial per cost bin and
hypervolume over trials, each against a cost axis (MACs, or latency when the trials have it)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nas.reporting.pareto import hypervolume_2d, pareto_mask
from nas.runs import OBJECTIVES


@dataclass(frozen=True)
class CostAxis:
    """A cost that fronts are drawn against: its trials column, how it is shown, and the setting that limits it."""

    column: str
    name: str
    label: str
    unit: str
    scale: float
    limit_setting: str
    measured_column: str | None = None

MACS = CostAxis("macs", "MACs", "MACs at 224x224 (G)", "G MACs", 1e9, "flops")


LATENCY = CostAxis("latency_ms", "latency", "latency (ms)", "ms", 1.0, "latency_ms", measured_column="latency_measured_ms")




def evaluated_feasible(trials: pd.DataFrame, cost: str = "macs") -> pd.Series:
    """The rows that count for fronts and hypervolume: status ok, feasible, evaluated, with an accuracy and a cost."""
    mask = trials["status"].eq("ok") & trials["feasible"] & trials["acc"].notna() & trials[cost].notna()
    if "evaluated" in trials.columns:
        mask &= trials["evaluated"]
    return mask


def runs_of(trials: pd.DataFrame) -> list[pd.DataFrame]:
    if "run" not in trials.columns:
        return [trials]
    return [group for _, group in trials.groupby("run", observed=True, sort=False)]


def _order(trials: pd.DataFrame, *keys: str) -> list[str]:
    return ["run", *keys] if "run" in trials.columns else list(keys)


def has_cost(trials: pd.DataFrame, axis: CostAxis) -> bool:
    """Whether any evaluated feasible trial has this cost (latency is absent from searches without a predictor)."""
    return axis.column in trials.columns and bool(evaluated_feasible(trials, axis.column).any())


def runs_with(trials: pd.DataFrame, axis: CostAxis) -> list[str]:
    """The runs with at least one evaluated feasible trial that has this cost."""
    return [run["run"].iloc[0] for run in runs_of(trials) if has_cost(run, axis)]


def pareto_front(trials: pd.DataFrame, cost: str = "macs") -> pd.DataFrame:
    """The evaluated feasible trials that no other trial of the same run dominates (accuracy up, cost down),
    with is_pareto set, sorted by run and cost. Trials with equal accuracy and cost are all kept."""
    fronts = [group[pareto_mask(group, ["acc"], [cost])] for group in runs_of(trials[evaluated_feasible(trials, cost)])]
    front = pd.concat(fronts) if fronts else trials.iloc[:0]
    return front.assign(is_pareto=True).sort_values(_order(trials, cost, "trial"))


def stored_pareto_mismatch(trials: pd.DataFrame, settings: pd.DataFrame) -> dict[str, list[int]]:
    """Per run, the trials whose stored is_pareto differs from the front recomputed over accuracy and the run's
    cost objective (the search marks the front over its second objective, MACs when it has none)."""
    mismatches = {}
    if "is_pareto" not in trials.columns:
        return mismatches
    for run in runs_of(trials):
        name = run["run"].iloc[0] if "run" in run.columns else ""
        objectives = str(settings["objectives"].get(name) or "acc,flops").split(",") if name in settings.index else ["acc", "flops"]
        cost = OBJECTIVES[objectives[1]][0] if len(objectives) > 1 and objectives[1] in OBJECTIVES else "macs"
        if cost not in run.columns:
            continue
        recomputed = set(pareto_front(run, cost)["trial"])
        stored = set(run.loc[run["is_pareto"], "trial"])
        if recomputed != stored:
            mismatches[name] = sorted(recomputed ^ stored)
    return mismatches


def best_per_bin(trials: pd.DataFrame, axis: CostAxis = MACS, bins: int = 8, edges: list[float] | None = None) -> pd.DataFrame:
    """The most accurate evaluated feasible trial (the cheaper, then the earlier one on ties) in each cost bin, per run.
    Bins are intervals (lo, hi] in axis units (the first one closed; trials outside given edges are left out); by
    default up to `bins` round intervals over the costs of all runs (matplotlib's tick values), so runs share them."""
    candidates = trials[evaluated_feasible(trials, axis.column)]
    values = candidates[axis.column] / axis.scale
    if candidates.empty:
        return candidates.assign(bin=pd.Series(dtype=str))
    if edges is None:
        from matplotlib.ticker import MaxNLocator

        edges = MaxNLocator(nbins=bins).tick_values(values.min(), values.max())
        edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
    edges = np.unique(edges)
    if len(edges) < 2 or values.min() == values.max():
        binned = candidates.assign(bin=f"{values.min():g}")
    else:
        binned = candidates.assign(bin=pd.cut(values, edges, labels=_interval_labels(edges), include_lowest=True))
    keys = _order(trials, "bin")
    best = binned.sort_values(["acc", axis.column, "trial"], ascending=[False, True, True]).groupby(keys, observed=True).head(1)
    return best.sort_values(keys)


def _interval_labels(edges) -> list[str]:
    """'lo–hi' for each pair of edges, with as many significant digits as it takes to tell them apart."""
    for digits in range(3, 17):
        labels = [f"{lo:.{digits}g}–{hi:.{digits}g}" for lo, hi in zip(edges[:-1], edges[1:])]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{lo!r}–{hi!r}" for lo, hi in zip(edges[:-1], edges[1:])]


def reference_cost(trials: pd.DataFrame, settings: pd.DataFrame, axis: CostAxis) -> float:
    """The cost of the hypervolume reference point (its accuracy is 0): the largest limit on this cost among the
    runs compared, so that every run is measured against the same point; without a limit, the largest cost among
    all trials compared (that trial then adds nothing: the reference point bounds the area)."""
    limits = settings[axis.limit_setting].dropna() if axis.limit_setting in settings.columns else pd.Series(dtype=float)
    return float(limits.max()) if len(limits) else float(trials[axis.column].max())


def hypervolume_curve(trials: pd.DataFrame, cost: str = "macs", ref_cost: float | None = None, ref_acc: float = 0.0) -> pd.DataFrame:
    """Hypervolume (accuracy up, cost down, in accuracy x cost-column units) of the evaluated feasible trials
    among the first k trials of each run, for k = 1..n in proposal order: columns run, trials (k), hypervolume.
    The reference point is (ref_acc, ref_cost); ref_cost defaults to the largest cost in the table."""
    ref_cost = float(trials[cost].max()) if ref_cost is None else ref_cost
    parts = []
    for run in runs_of(trials):
        run = run.sort_values("trial")
        ok = evaluated_feasible(run, cost).to_numpy()
        acc, costs = run["acc"].to_numpy(float), run[cost].to_numpy(float)
        hv = [hypervolume_2d(acc[:k][ok[:k]], costs[:k][ok[:k]], ref_acc, ref_cost) for k in range(1, len(run) + 1)]
        part = pd.DataFrame({"trials": np.arange(1, len(run) + 1), "hypervolume": hv})
        if "run" in run.columns:
            part.insert(0, "run", run["run"].iloc[0])
        parts.append(part)
    curve = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_order(trials, "trials", "hypervolume"))
    if "run" in curve.columns:
        curve["run"] = curve["run"].astype(trials["run"].dtype)
    return curve
