"""Non-dominated sets and 2-D hypervolume of search results (pandas in, numpy out)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(df: pd.DataFrame, maximize: list[str], minimize: list[str]) -> np.ndarray:
    """True for the rows no other row dominates (at least as good everywhere, better somewhere)."""
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


def hypervolume_2d(acc: np.ndarray, cost: np.ndarray, ref_acc: float, ref_cost: float) -> float:
    """Area dominated by the points (accuracy up, cost down) and bounded by the reference point."""
    pts = [(c, a) for a, c in zip(acc, cost) if a > ref_acc and c < ref_cost]
    if not pts:
        return 0.0
    pts.sort()  # by cost ascending
    area, best_acc = 0.0, ref_acc
    for k, (c, a) in enumerate(pts):
        best_acc = max(best_acc, a)
        next_cost = pts[k + 1][0] if k + 1 < len(pts) else ref_cost
        area += (next_cost - c) * (best_acc - ref_acc)
    return area
