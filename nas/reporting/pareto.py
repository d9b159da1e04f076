"""Non-dominated sets and 2-D hypervolume of search results (pandas in, numpy out)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(df: pd.DataFrame, maximize: list[str], minimize: list[str]) -> np.ndarray:
    """True for the rows no other row dominates (at least as good everywhere, better somewhere).

    Rows with equal objectives do not dominate each other: duplicates of a front member are all kept.
    """
    if df.empty:
        return np.zeros(0, dtype=bool)
    values = np.concatenate([-df[maximize].to_numpy(float), df[minimize].to_numpy(float)], axis=1)
    n = len(values)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        no_worse = (values <= values[i]).all(axis=1)
        better = (values < values[i]).any(axis=1)
        mask[i] = not (no_worse & better).any()
    return mask


def hypervolume_2d(acc, cost, ref_acc: float, ref_cost: float) -> float:
    """Area dominated by the points (accuracy up, cost down) and bounded by the reference point.

    Points with accuracy <= ref_acc or cost >= ref_cost add nothing. Sorted by cost, each point
    covers from its cost to the next point's cost (the last one to ref_cost) up to the best
    accuracy seen so far.
    """
    acc, cost = np.asarray(acc, float), np.asarray(cost, float)
    inside = (acc > ref_acc) & (cost < ref_cost)
    if not inside.any():
        return 0.0
    order = np.argsort(cost[inside], kind="stable")
    costs = cost[inside][order]
    best_acc = np.maximum.accumulate(acc[inside][order])
    widths = np.diff(np.append(costs, ref_cost))
    return float(np.sum(widths * (best_acc - ref_acc)))
