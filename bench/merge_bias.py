"""Does a supernet favour architectures by their merge ops? From an audit.csv (python -m nas.audit).

    python bench/merge_bias.py results/<run>/audit/audit.csv [more audit.csv ...]

For each audit: mean inherited and standalone accuracy of the architectures whose merges are all spm
against the others, and the gap in each. A supernet without that bias shows about the standalone gap in
its inherited accuracy. The last line is the last audit's two gaps, in points.
"""
from __future__ import annotations

import json
import sys

import pandas as pd


def main(paths: list[str]) -> None:
    for path in paths:
        audit = pd.read_csv(path)
        all_spm = audit["arch"].map(lambda a: all(m == "spm" for m in json.loads(a)["merges"]))
        means = audit.groupby(all_spm)[["inherited_acc", "standalone_acc"]].mean()
        inherited_gap, standalone_gap = ((means.loc[True] - means.loc[False]) * 100).tolist()
        print(f"{path}: {int(all_spm.sum())} all-spm of {len(audit)}; inherited {means.loc[True, 'inherited_acc']:.3f} vs "
              f"{means.loc[False, 'inherited_acc']:.3f}, standalone {means.loc[True, 'standalone_acc']:.3f} vs "
              f"{means.loc[False, 'standalone_acc']:.3f} (gaps {inherited_gap:+.1f} and {standalone_gap:+.1f} points)")
    print(f"all-spm minus the rest: inherited {inherited_gap:+.1f} points, standalone {standalone_gap:+.1f} points")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.split("\n\n")[1])
    main(sys.argv[1:])
