"""Training-step time through the supernet relative to the same step through the extracted model.

    python bench/supernet_overhead.py [--space psvit_ext] [--archs 10] [--batch 32] [--steps 8]

For each of N random architectures at the proxy scale: forward, backward and an AdamW step on a
batch, timed as the median of `steps` repeats after warm-up, once through `supernet(x, arch)` and
once through `supernet.extract(arch)`. Prints the per-architecture ratios, then the median ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from search_spaces import get_space
from supernet import Supernet


def step_time(model, forward, x, y, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for k in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(forward(x), y).backward()
        opt.step()
        if k >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = get_space(args.space)
    scale = space.proxy
    net = Supernet(space, scale).train()
    x = torch.randn(args.batch, 3, scale.img_size, scale.img_size)
    y = torch.randint(0, scale.num_classes, (args.batch,))
    ratios = []
    for seed in range(args.archs):
        arch = space.sample(seed)
        sub = net.extract(arch).train()
        t_super = step_time(net, lambda inp: net(inp, arch), x, y, args.steps)
        t_sub = step_time(sub, sub, x, y, args.steps)
        ratios.append(t_super / t_sub)
        print(f"arch {seed}: depths {arch.depths}  supernet {t_super * 1e3:.1f} ms  extracted {t_sub * 1e3:.1f} ms  ratio {ratios[-1]:.3f}", flush=True)
    print(f"median supernet/extracted training-step time ratio over {args.archs} archs ({args.space}, proxy scale, batch {args.batch}): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
