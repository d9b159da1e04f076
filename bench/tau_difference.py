"""Paired bootstrap of the Kendall tau difference between two supernets' audits of the same architectures.

    python bench/tau_difference.py NEW/audit.csv OLD/audit.csv [--resamples 2000] [--seed 0]

Both audit.csv files must rank the same architectures against the same standalone accuracies (nas.audit
--archs-from and --standalone-dir): only the inherited accuracies differ. Each resample draws the architectures
with replacement once and computes both taus on that draw, so the interval is of the paired difference.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).parent))
from paired_args import paired_args  # noqa: E402


def main() -> int:
    args = paired_args(__doc__)
    new, old = (pd.read_csv(f).set_index("arch_id") for f in (args.new, args.old))
    common = new.index.intersection(old.index)
    if len(common) < 4 or not np.allclose(new.loc[common, "standalone_acc"], old.loc[common, "standalone_acc"]):
        print("the two audits must rank the same architectures against the same standalone accuracies "
              "(nas.audit --archs-from, --standalone-dir)", file=sys.stderr)
        return 2
    truth = new.loc[common, "standalone_acc"].to_numpy()
    a, b = new.loc[common, "inherited_acc"].to_numpy(), old.loc[common, "inherited_acc"].to_numpy()

    def tau(x, idx):
        value = kendalltau(x[idx], truth[idx]).statistic
        return 0.0 if np.isnan(value) else value

    rng, whole = np.random.default_rng(args.seed), np.arange(len(common))
    diffs = []
    for _ in range(args.resamples):
        idx = rng.integers(0, len(common), len(common))
        diffs.append(tau(a, idx) - tau(b, idx))
    lo, hi = np.percentile(diffs, [5, 95])
    print(f"{len(common)} architectures: tau new {tau(a, whole):.3f}, old {tau(b, whole):.3f}")
    print(f"tau difference new - old {tau(a, whole) - tau(b, whole):+.3f} [90% paired bootstrap {lo:+.3f}, {hi:+.3f}], "
          f"{np.mean(np.array(diffs) > 0):.0%} of resamples above 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
