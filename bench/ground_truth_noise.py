"""Is an audit's ground-truth noise the training's or the evaluation set's? From its standalone trainings.

    python bench/ground_truth_noise.py results/<run>/audit/standalone [--epochs 6]

Each standalone training (nas.audit) reports its top-1 on the validation split and on the test split.
For the trainings of --epochs epochs, this prints the seed-to-seed standard deviation (pooled over the
architectures trained with several seeds) and the standard deviation between architectures, scored on
the validation images, the test images, and both together. If the noise were the evaluation set's
(which images a model happens to get right), scoring on k times the images would divide it by about
sqrt(k); if it is the training's (a different model per seed), more images leave it as it is.
The last line is the seed-to-seed standard deviation on the validation images and on all of them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from nas.reporting.ranking import seed_spread


def trainings(root: Path, epochs: int) -> pd.DataFrame:
    rows = []
    for path in sorted(root.glob(f"*-seed*-e{epochs}/metrics.json")):
        m = json.loads(path.read_text())
        n_val, n_test = m["data"]["val"], m["data"]["test"]
        rows.append({"arch_id": path.parent.name.split("-seed")[0], "seed": m["seed"], "val": m["val_acc"], "test": m["test_acc"],
                     "both": (m["val_acc"] * n_val + m["test_acc"] * n_test) / (n_val + n_test), "n_val": n_val, "n_test": n_test})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("standalone_dir")
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args(argv)
    runs = trainings(Path(args.standalone_dir), args.epochs)
    if runs.empty:
        raise SystemExit(f"{args.standalone_dir}: no finished standalone training of {args.epochs} epochs")
    n_val, n_test = int(runs["n_val"].iloc[0]), int(runs["n_test"].iloc[0])
    spreads = {}
    for column, label in (("val", f"validation ({n_val} images)"), ("test", f"test ({n_test} images)"),
                          ("both", f"validation + test ({n_val + n_test} images)")):
        spreads[column] = seed_spread(runs.rename(columns={column: "standalone_acc"}))
        s = spreads[column]
        print(f"{label}: seed-to-seed std {s['seed_std']:.4f} ({s['archs_with_seeds']} architectures, {s['runs_with_seeds']} trainings), "
              f"between architectures {s['between_arch_std']:.4f}")
    evaluation_only = spreads["val"]["seed_std"] * np.sqrt(n_val / (n_val + n_test))
    print(f"seed-to-seed std {spreads['val']['seed_std']:.4f} on {n_val} images, {spreads['both']['seed_std']:.4f} on {n_val + n_test} "
          f"({evaluation_only:.4f} if it were the evaluation set's noise)")


if __name__ == "__main__":
    main()
