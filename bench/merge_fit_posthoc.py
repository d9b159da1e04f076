"""Merge fitting tried on a finished supernet: which paths, which BN mode, how long (the measurements behind
`--merge-fit-epochs`, nas/training/merge_fitting.py).

    python bench/merge_fit_posthoc.py CHECKPOINT OUT.pt [--paths alternate] [--epochs 2] [--random 4] [--lr 1e-3]
        [--images 32] [--bn eval|train]
    python bench/transfer.py OUT.pt --json OUT.json     # then bench/proposal_difference.py against the checkpoint's

Everything but the merges the largest path does not run is frozen; those are trained with AdamW and the sandwich's
student loss (the largest path's predictions as the teacher, half labels) on `--paths`: `extremes` (the smallest
path, and the largest and the smallest with conv, then pool, in every boundary: psvit_ext's operators), `random` (`--random` paths drawn
choice by choice a step, one generator for the run), or `alternate` (the two, step by step: what the trainer does).
`--bn eval` runs the frozen network with its running BN statistics, `train` with the batch's; `--images` uses the
first N images of each batch of 32. Last line: the checkpoint written (measure it with bench/transfer.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import time

import torch

from nas.data import load_data, make_loader
from nas.measure.costs import extreme_arch
from nas.training.checkpoint import supernet_from_checkpoint
from nas.training.merge_fitting import fitted_merges
from nas.training.supernet_trainer import student_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--paths", choices=("extremes", "random", "alternate"), default="alternate")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--random", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--bn", choices=("eval", "train"), default="train")
    args = p.parse_args()
    torch.set_num_threads(2)
    net, ckpt = supernet_from_checkpoint(args.checkpoint)
    net.train(args.bn == "train")
    space, scale, cfg = net.space, net.scale, ckpt.get("config", {})
    bundle = load_data(cfg.get("data", "digits"), img_size=scale.img_size, seed=cfg.get("seed", 0),
                       val_fraction=cfg.get("val_fraction", 0.1))
    largest, smallest = extreme_arch(space, scale, True), extreme_arch(space, scale, False)

    def every(arch, op):
        return dataclasses.replace(arch, merges=tuple(op for _ in space.merges))

    for param in net.parameters():
        param.requires_grad_(False)
    params = [param for merge in fitted_merges(net, largest) for param in merge.parameters()]
    for param in params:
        param.requires_grad_(True)
    print(f"{sum(param.numel() for param in params)} merge parameters trained")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    rng, t0, train = random.Random(0), time.time(), make_loader(bundle, "train", 32)
    for epoch in range(args.epochs):
        total, n = 0.0, 0
        for x, y in train:
            x, y = x[:args.images], y[:args.images]
            with torch.no_grad():
                teacher = net(x, largest).float()
            opt.zero_grad()
            if args.paths == "extremes" or (args.paths == "alternate" and n % 2 == 0):
                paths = [every(largest, "conv"), every(largest, "pool"), every(smallest, "conv"), smallest]
            else:
                paths = [space.sample_by_choice(rng) for _ in range(args.random)]
            loss = sum(student_loss(net(x, arch).float(), teacher, y, 0.5, 0.1) for arch in paths)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / n:.3f} ({time.time() - t0:.0f} s)", flush=True)
    ckpt["model"] = net.state_dict()
    torch.save(ckpt, args.out)
    print(f"merges fitted ({args.paths}, {args.epochs} epochs, bn {args.bn}, {args.images} images a step): {args.out}")


if __name__ == "__main__":
    main()
