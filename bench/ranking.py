"""Ranking fidelity of a supernet strategy: a search on real images, then `python -m nas.audit` of its run.

    python bench/ranking.py --data npz:../shared/data/cifar10_12k.npz [--train-subset 4000] [--strategy sandwich]
        [--val-fraction 0.2] [--supernet-epochs 8] [--trials 60] [--archs 24] [--epochs 4] [--seeds 1] [--calib-batches N]
        [--archs-from AUDIT_CSV] [--standalone-dir DIR] [--out results/ranking-<time>]

1. The data: with --train-subset, a seeded subset of the npz's training images (the test images are kept)
   written to <out>/data.npz, so that every figure below is measured on the same, smaller set; the search
   holds out --val-fraction of it as the validation split.
2. `nas.search --space psvit_ext --flops 4.5G` on it (the supernet trained with --strategy for
   --supernet-epochs epochs, then --trials trials): <out>/run.
3. `nas.audit <out>/run --archs N --epochs E --seeds S`: the architectures trained alone and compared with
   their inherited accuracy. To compare strategies on one ground truth, give the later runs
   --archs-from <first>/run/audit/audit.csv and --standalone-dir <first>/run/audit/standalone: only their
   supernet is trained, the standalone trainings are reused (architectures the later search did not
   evaluate are audited all the same, with trial -1 in audit.csv; a short --trials is enough).

Its last line is the audit's: n, Kendall tau [90% interval], Spearman rho, the MAC baseline's tau.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from nas import audit, search
from nas.cli import Parser, run_cli
from search_bench import subset_npz


def build_parser() -> Parser:
    p = Parser(prog="python bench/ranking.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="npz:PATH (e.g. npz:../shared/data/cifar10_12k.npz)")
    p.add_argument("--train-subset", type=int, default=5000, help="training images kept (0: all), before the validation split")
    p.add_argument("--val-fraction", type=float, default=0.2, help="of those, held out for scoring (default 0.2: 4,000 train, 1,000 val)")
    p.add_argument("--strategy", default="sandwich", help="supernet path sampling: sandwich, sandwich-mixed, fair, uniform, stratified")
    p.add_argument("--supernet-epochs", type=int, default=8)
    p.add_argument("--student-labels", type=float, default=0.5, help="label share of a student path's loss (0: distillation only)")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--archs", type=int, default=24)
    p.add_argument("--epochs", type=int, default=4, help="standalone epochs")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--calib-batches", type=int, default=None)
    p.add_argument("--archs-from", default=None)
    p.add_argument("--standalone-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="default results/ranking-<time>")
    return p


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out or f"results/ranking-{time.strftime('%Y%m%d-%H%M%S')}")
    run = out / "run"
    if not (run / "trials.csv").is_file():
        if (run / "config.json").exists():  # a search cut short: go on with it
            code = search.main(["--resume", str(run)])
        else:
            data = subset_npz(args.data, args.train_subset, args.seed, out / "data.npz")
            code = search.main(["--space", "psvit_ext", "--flops", "4.5G", "--data", data, "--epochs", str(args.supernet_epochs),
                                "--strategy", args.strategy, "--student-labels", str(args.student_labels), "--trials", str(args.trials),
                                "--seed", str(args.seed), "--out", str(run),
                                "--val-fraction", str(args.val_fraction)])
        if code:
            return code
    audit_args = [str(run), "--archs", str(args.archs), "--epochs", str(args.epochs), "--seeds", str(args.seeds), "--seed", str(args.seed)]
    for flag, value in (("--calib-batches", args.calib_batches), ("--archs-from", args.archs_from), ("--standalone-dir", args.standalone_dir)):
        if value is not None:
            audit_args += [flag, str(value)]
    return audit.main(audit_args)


if __name__ == "__main__":
    sys.exit(main())
