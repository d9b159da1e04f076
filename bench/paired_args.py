"""The command line the paired-comparison benches share: two result files, new then old, and the bootstrap's knobs."""
from __future__ import annotations

import argparse


def paired_args(doc: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("new")
    p.add_argument("old")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()
