"""python -m nas.train_supernet --space psvit_ext [--data digits|npz:PATH|folder:PATH|NAME] [--epochs N]
    [--scale proxy|target] [--strategy sandwich|uniform|stratified] [--out results/<run>] [--resume]
    [--num-workers N] [--use-gpu]

Trains the weight-sharing supernet and reports the validation accuracy of its largest and smallest
path (by MACs). With no argument it trains on scikit-learn's digits at the proxy scale in a few
minutes on a laptop CPU.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from search_spaces import get_space

from nas.cli import Parser, run_cli, seed_type

from nas.errors import UserError
from nas.training.sampling import STRATEGIES
from nas.training.supernet_trainer import TrainConfig, Trainer, default_out


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = Parser(prog="python -m nas.train_supernet", description=__doc__.split("\n\n")[1])
    p.add_argument("--space", default=d.space)
    p.add_argument("--data", default=d.data, help="digits (default), npz:PATH, folder:PATH or a timm data set name")
    p.add_argument("--scale", default=d.scale, help="proxy (default) or target")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"training images held out for validation (default {d.val_fraction:g}; a search's --val-fraction)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    p.add_argument("--strategy", default=d.strategy, help=f"path sampling: {', '.join(STRATEGIES)}")
    p.add_argument("--path-dist", default=d.path_dist, help="random paths drawn choice by choice (default) or uniformly over the legal set: choice, legal")
    p.add_argument("--num-random", type=int, default=d.num_random, help="random paths per sandwich step")
    p.add_argument("--no-distill", action="store_true", help="sandwich without in-place distillation")
    p.add_argument("--align", default=d.align, help="block-wise distillation from the teacher's path of the merges (merges) or of "
                   "the merges and every block type (blocks, the default) it did not run, blocks plus each stage run behind another merge "
                   "(stages), or none; with a teacher strategy only")
    p.add_argument("--align-weight", type=float, default=d.align_weight, help=f"the alignment loss's weight (default {d.align_weight:g})")
    p.add_argument("--align-types", type=int, default=d.align_types,
                   help=f"other block types per layer aligned a step, drawn at random (default {d.align_types}; 0: all)")
    p.add_argument("--align-batch", type=float, default=d.align_batch,
                   help=f"share of each batch the alignment runs on (default {d.align_batch:g}; its cost scales with it)")
    p.add_argument("--align-paths", default=d.align_paths,
                   help="the merges aligned on the teacher's inputs (teacher, the default) or on every path's (all)")
    p.add_argument("--merge-lr-scale", type=float, default=d.merge_lr_scale,
                   help=f"learning-rate multiple for the merges the largest path does not run (default {d.merge_lr_scale:g})")
    p.add_argument("--merge-fit-epochs", type=int, default=d.merge_fit_epochs,
                   help=f"epochs after --epochs that train only the merges the largest path does not run, the rest frozen "
                        f"(default {d.merge_fit_epochs}, which keeps this training within 5 minutes on 2 cores; nas.search trains with 3)")
    p.add_argument("--student-labels", type=float, default=d.student_labels,
                   help="share of cross-entropy on the labels in a student path's loss, the rest distillation (default 0.5; 0: distillation only)")
    p.add_argument("--seed", type=seed_type(), default=d.seed)
    p.add_argument("--out", default="", help="run folder (default results/supernet-<space>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--device", default=d.device, help="auto (cuda if present), cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers (data parallel)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument("--address", default=None, help="Ray cluster address for --num-workers > 1 (e.g. auto)")
    return p


def config_from_args(args) -> TrainConfig:
    get_space(args.space)  # unknown space: a clear error before anything else
    if args.resume and not args.out:
        raise UserError("--resume needs --out <run folder holding supernet.pt>")
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["distill"] = not args.no_distill
    values["out"] = args.out or default_out(args.space)
    return TrainConfig(**values)


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    cfg.check()
    if args.address:
        from nas.cluster import check_address

        check_address(args.address)  # before anything is written: a head that does not answer is one line, not a hang
    if args.num_workers > 1 or args.address:
        from nas.training.distributed import train_with_ray

        summary = train_with_ray(cfg, args.num_workers, args.use_gpu, args.address)
    else:
        summary = Trainer(cfg).run()
    fitted = f" + {summary['merge_fit_epochs']} fitting the merges" if summary.get("merge_fit_epochs") else ""
    print(f"supernet: {summary['checkpoint']} ({summary['epochs']} epochs{fitted}, {summary['wall_time_s']:.0f}s, data {summary['data']['name']}, "
          f"chance {summary['chance']:.3f})")
    print(f"validation accuracy, largest path ({summary['largest_macs'] / 1e6:.1f}M MACs): {summary['val_acc_largest']:.3f}")
    print(f"validation accuracy, smallest path ({summary['smallest_macs'] / 1e6:.1f}M MACs): {summary['val_acc_smallest']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
