"""Paired comparison of two supernets on the same proposals, from two `bench/transfer.py --json` files.

    python bench/proposal_difference.py NEW.json OLD.json [--resamples 2000] [--seed 0]

transfer.py draws its proposals with one seed (`--seed`, default 1) from the space alone, so two runs on the same
space and seed evaluate the same architectures in the same order: the comparison is paired by position. Prints
the mean difference with a 90% paired bootstrap interval, how many proposals are higher and lower, and a
Wilcoxon signed-rank test; the last line is the difference.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).parent))
from paired_args import paired_args  # noqa: E402


def main() -> int:
    args = paired_args(__doc__)
    new, old = (json.loads(open(f).read()) for f in (args.new, args.old))
    a, b = np.array(new["proposals"]), np.array(old["proposals"])
    if len(a) != len(b) or len(a) < 4:
        print(f"the two files must hold the same proposals (transfer.py with the same --archs and --seed), "
              f"got {len(a)} and {len(b)}", file=sys.stderr)
        return 2
    diff = a - b
    rng = np.random.default_rng(args.seed)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(args.resamples)]
    lo, hi = np.percentile(means, [5, 95])
    p_value = wilcoxon(a, b).pvalue if np.any(diff != 0) else 1.0
    for label, r in (("new", new), ("old", old)):
        print(f"{label}: largest {r['largest']:.3f}, smallest {r['smallest']:.3f}, median proposal {r['median']:.3f}, "
              f"{r['near_chance']} near chance, worst swap {r['worst_swap_loss']:.0%}, ratio {r['ratio']:.2f}")
    print(f"{len(a)} proposals: higher on {int((diff > 0).sum())}, lower on {int((diff < 0).sum())}, "
          f"two-sided Wilcoxon signed-rank p = {p_value:.2g}")
    print(f"mean difference new - old {diff.mean():+.3f} [90% paired bootstrap {lo:+.3f}, {hi:+.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
