"""Does a supernet favour architectures by their merge ops? From an audit.csv (python -m nas.audit).

    python bench/merge_bias.py results/<run>/audit/audit.csv [more audit.csv ...]

For each audit: mean inherited and standalone accuracy of the architectures whose merges are all spm
against the others, and the gap in each (where the audit has both kinds); then, per merge operator, the Kendall
tau of the number of boundaries that use it with the inherited and with the standalone accuracy. A supernet
without that bias shows about the standalone gap and the standalone taus in its inherited accuracy. The last line
is the last audit's per-operator taus.
"""
from __future__ import annotations

import json
import sys

import pandas as pd
from scipy.stats import kendalltau


def operator_taus(audit: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Merge operator -> (tau of its count with inherited accuracy, with standalone accuracy)."""
    merges = audit["arch"].map(lambda a: json.loads(a)["merges"])
    taus = {}
    for op in sorted({m for ms in merges for m in ms}):
        count = merges.map(lambda ms: ms.count(op))
        if count.nunique() > 1:
            taus[op] = (kendalltau(count, audit["inherited_acc"])[0], kendalltau(count, audit["standalone_acc"])[0])
    return taus


def main(paths: list[str]) -> None:
    for path in paths:
        audit = pd.read_csv(path)
        all_spm = audit["arch"].map(lambda a: all(m == "spm" for m in json.loads(a)["merges"]))
        if 0 < all_spm.sum() < len(audit):
            means = audit.groupby(all_spm)[["inherited_acc", "standalone_acc"]].mean()
            inherited_gap, standalone_gap = ((means.loc[True] - means.loc[False]) * 100).tolist()
            print(f"{path}: {int(all_spm.sum())} all-spm of {len(audit)}; inherited {means.loc[True, 'inherited_acc']:.3f} vs "
                  f"{means.loc[False, 'inherited_acc']:.3f}, standalone {means.loc[True, 'standalone_acc']:.3f} vs "
                  f"{means.loc[False, 'standalone_acc']:.3f} (gaps {inherited_gap:+.1f} and {standalone_gap:+.1f} points)")
        else:
            print(f"{path}: {int(all_spm.sum())} all-spm of {len(audit)}: no all-spm gap")
        taus = operator_taus(audit)
        print("  Kendall tau of the count of each merge operator with inherited / standalone accuracy: "
              + ", ".join(f"{op} {i:+.2f} / {s:+.2f}" for op, (i, s) in taus.items()))
    print("merge operators, tau with inherited / standalone: " + ", ".join(f"{op} {i:+.2f} / {s:+.2f}" for op, (i, s) in taus.items()))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.split("\n\n")[1])
    main(sys.argv[1:])
