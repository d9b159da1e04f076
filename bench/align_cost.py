"""What block-wise alignment (--align blocks) costs a supernet training step, against a plain sandwich step.

    python bench/align_cost.py [--steps 6] [--threads 1]

Times `--steps` sandwich steps (forward, backward, AdamW) of the psvit_ext proxy supernet on one digits batch of 32
for: no alignment, every other block type aligned at every layer, one other type per layer; the plain step is timed
again at the end (its two figures show the noise). Last line: the two alignment costs as multiples of the plain step.
"""
from __future__ import annotations

import argparse
import random
import time

import torch
import torch.nn.functional as F

from nas.data import load_data, make_loader
from nas.training.sampling import PathSampler
from nas.training.supernet_trainer import alignment_loss
from search_spaces import get_space
from supernet import Supernet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    space = get_space("psvit_ext")
    bundle = load_data("digits", img_size=32)
    scale = space.proxy.with_overrides(num_classes=bundle.num_classes)
    net = Supernet(space, scale).train()
    sampler = PathSampler(space, scale, "sandwich")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x, y = next(iter(make_loader(bundle, "train", 32)))

    def step(mode: str, k: int) -> None:
        opt.zero_grad()
        for i, arch in enumerate(sampler.paths(0, k)):
            trace = [] if i == 0 and mode != "none" else None
            loss = F.cross_entropy(net(x, arch, trace), y)
            if trace:
                loss = loss + alignment_loss(net, arch, trace, "blocks", random.Random(k), None if mode == "all" else 1)
            loss.backward()
        opt.step()

    seconds = {}
    for mode in ("none", "all", "one", "none again"):
        step(mode.split()[0], 0)
        t0 = time.perf_counter()
        for k in range(1, args.steps + 1):
            step(mode.split()[0], k)
        seconds[mode] = (time.perf_counter() - t0) / args.steps
        print(f"{mode}: {seconds[mode]:.2f} s per step", flush=True)
    plain = (seconds["none"] + seconds["none again"]) / 2
    print(f"alignment cost: every other type {seconds['all'] / plain:.2f}x, one other type per layer {seconds['one'] / plain:.2f}x "
          f"a plain sandwich step ({plain:.2f} s)")


if __name__ == "__main__":
    main()
