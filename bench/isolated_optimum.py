"""Where each task of bench/sampler_regret.py keeps the cells that meet its regret goal, and how a search reaches them.

    python bench/isolated_optimum.py --table ../shared/data/nb201/nb201_cifar10.csv [--goal 0.3] [--fit 100]

For every task of sampler_regret.py (same limits): the feasible cells within --goal points of the feasible optimum
(the targets: a run meets the goal only by evaluating one of them), and three ways a search could come to one:

- by chance: the probability that uniform draws from the feasible set (what a screened random search makes) hit a
  target within 100 and 300 trials;
- by climbing: the share of feasible cells from which steepest ascent on the feasible one-change graph (every
  neighbour over the limit left out, as local search's walk sees it) ends on a target, and how many local optima
  that graph has; and the same share for climbs started at the 10% costliest feasible cells (a start that spends
  the budget, the prior that under a limit the best architectures use most of it);
- by a model: the rank among the feasible cells of the best target, predicted by a ridge regression on the cells'
  one-hot operations fitted to --fit random feasible cells (median over 10 fits), what a model-based sampler could
  know after that many trials.

The last line: the raspi4 <= 20 ms task's figures.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from sampler_regret import tasks  # noqa: E402

from search_spaces.nb201 import OPS  # noqa: E402


def cell_codes(table: pd.DataFrame) -> np.ndarray:
    """Each row's operations as indices into OPS, one column per edge in the cell string's order."""
    ops = table["arch"].str.findall(r"\|([a-z_0-9]+)~\d")
    return np.array([[OPS.index(o) for o in row] for row in ops])


def neighbour_rows(codes: np.ndarray) -> np.ndarray:
    """Row indices of every one-change neighbour of every row: shape (rows, edges * (ops - 1))."""
    base = len(OPS) ** np.arange(codes.shape[1])[::-1]
    row_of = np.full(len(OPS) ** codes.shape[1], -1)
    row_of[codes @ base] = np.arange(len(codes))
    out = []
    for edge in range(codes.shape[1]):
        for shift in range(1, len(OPS)):
            changed = codes.copy()
            changed[:, edge] = (changed[:, edge] + shift) % len(OPS)
            out.append(row_of[changed @ base])
    return np.stack(out, 1)


def climb_ends(acc: np.ndarray, feasible: np.ndarray, nbrs: np.ndarray) -> np.ndarray:
    """For every cell, the feasible cell where steepest ascent over feasible neighbours from it stops (-1 if infeasible)."""
    masked = np.where(feasible[nbrs], acc[nbrs], -np.inf)
    best = nbrs[np.arange(len(acc)), masked.argmax(1)]
    step = np.where(masked.max(1) > acc, best, np.arange(len(acc)))
    end = step.copy()
    for _ in range(len(acc)):
        nxt = step[end]
        if np.array_equal(nxt, end):
            break
        end = nxt
    return np.where(feasible, end, -1)


def costliest(rows: np.ndarray, cost: np.ndarray, share: float = 0.1) -> np.ndarray:
    """The rows whose cost is at or above the (1 - share) quantile of `cost` (one value per row)."""
    return rows[cost >= np.quantile(cost, 1 - share)]


def model_rank(onehot: np.ndarray, acc: np.ndarray, feasible_rows: np.ndarray, target: int, fit: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    seen = rng.choice(feasible_rows, min(fit, len(feasible_rows)), replace=False)
    x, y = onehot[seen], acc[seen]
    weights = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ (y - y.mean()))
    predicted = onehot[feasible_rows] @ weights
    return int((predicted > predicted[np.searchsorted(feasible_rows, target)]).sum()) + 1


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/isolated_optimum.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True, help="NAS-Bench-201's table (../shared/data/nb201/nb201_cifar10.csv)")
    p.add_argument("--goal", type=float, default=0.3, help="regret goal in points of test accuracy")
    p.add_argument("--fit", type=int, default=100, help="random feasible cells the ridge model is fitted to")
    p.add_argument("--percentiles", default="10,20,30")
    p.add_argument("--devices", default="all")
    args = p.parse_args(argv)
    table = pd.read_csv(args.table)
    table["acc"], table["macs"] = table["cifar10_test_acc"], table["mflops"] * 1e6
    codes = cell_codes(table)
    nbrs = neighbour_rows(codes)
    onehot = np.concatenate([(codes == k).astype(float) for k in range(len(OPS))], 1)
    acc = table["acc"].to_numpy()
    rows = []
    for task in tasks(table, args):
        feasible = (table[task["cost"]] <= task["limit"]).to_numpy()
        feasible_rows = np.flatnonzero(feasible)
        optimum = acc[feasible].max()
        targets = np.flatnonzero(feasible & (acc >= optimum - args.goal))
        ends = climb_ends(acc, feasible, nbrs)
        share = float(np.isin(ends[feasible_rows], targets).mean())
        costly = costliest(feasible_rows, table[task["cost"]].to_numpy()[feasible_rows])
        best = targets[acc[targets].argmax()]
        chance = len(targets) / len(feasible_rows)
        rows.append({"task": task["task"], "feasible": len(feasible_rows), "targets": len(targets),
                     "runner_up_gap": float(optimum - np.sort(acc[feasible])[-2]),
                     "random_100": 1 - (1 - chance) ** 100, "random_300": 1 - (1 - chance) ** 300,
                     "climb_share": share, "costly_climb_share": float(np.isin(ends[costly], targets).mean()),
                     "local_optima": len(np.unique(ends[feasible_rows])),
                     "optimum_feasible_neighbours": int(feasible[nbrs[best]].sum()),
                     "model_rank": float(np.median([model_rank(onehot, acc, feasible_rows, best, args.fit, s) for s in range(10)]))})
        r = rows[-1]
        print(f"{r['task']}: {r['targets']} of {r['feasible']} feasible cells within {args.goal} points; climb ends there from "
              f"{share:.1%} ({r['costly_climb_share']:.1%} of the 10% costliest); {r['local_optima']} local optima; random finds one by 100 / 300 trials with p {r['random_100']:.2f} / "
              f"{r['random_300']:.2f}; model rank of the optimum {r['model_rank']:.0f}", flush=True)
    df = pd.DataFrame(rows)
    print()
    print(df.to_markdown(index=False, floatfmt=".3f"))
    r = df[df["task"] == "raspi4<=20ms"].iloc[0]
    print(f"raspi4 <= 20 ms: {r['targets']} cell(s) within {args.goal} points of the optimum among {r['feasible']} feasible; "
          f"steepest ascent ends there from {r['climb_share']:.2%} of the feasible cells ({r['costly_climb_share']:.2%} of the 10% "
          f"costliest; {r['local_optima']} local optima); "
          f"the optimum has {r['optimum_feasible_neighbours']} feasible neighbours; random draws hit it by 300 trials with p "
          f"{r['random_300']:.2f}; a ridge model fitted to {args.fit} cells ranks it {r['model_rank']:.0f} of {r['feasible']}")


if __name__ == "__main__":
    main()
