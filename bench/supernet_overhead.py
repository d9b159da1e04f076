"""Training-step time through the supernet relative to the same step through extracted standalone models.

    python bench/supernet_overhead.py [--space psvit_ext] [--archs 10] [--batch 32] [--steps 8]
        [--device auto|cpu|cuda] [--scale proxy|target] [--step path|sandwich] [--threads 2]

--step path (default): for each of --archs random architectures, forward, backward and an AdamW step on a
batch, once through `supernet(x, arch)` and once through `supernet.extract(arch)`.
--step sandwich: the supernet trainer's step (the largest path, which teaches, the smallest and one random
path drawn choice by choice, each forward and backward, then one optimizer step), once through the
supernet and once through the three extracted models; images/s of both are printed.

On CUDA each step runs under bfloat16 autocast with channels-last inputs, as the trainers do, and is timed
between synchronizations. Timed as the median of --steps repeats after two warm-up steps. The last line is
the median supernet / extracted step-time ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time

import torch

from nas.measure.costs import extreme_arch
from nas.measure.device import describe, resolve_device
from search_spaces import get_space
from supernet import Supernet


def step_time(params, forwards, x, y, steps: int, device) -> float:
    """Median seconds of: zero grads, each forward + backward (the first one's logits teach the others when
    there are several, as in the sandwich rule), one AdamW step."""
    opt = torch.optim.AdamW(params, lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    times = []
    for k in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        teacher = None
        for forward in forwards:
            with amp:
                logits = forward(x).float()
            if teacher is None:
                loss = loss_fn(logits, y)
                teacher = logits.detach().softmax(-1)
            else:
                loss = torch.sum(-teacher * logits.log_softmax(-1), dim=-1).mean()
            loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--scale", default="proxy", choices=("proxy", "target"))
    p.add_argument("--step", default="path", choices=("path", "sandwich"))
    args = p.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = get_space(args.space)
    scale = space.scale(args.scale)
    net = Supernet(space, scale).to(device).train()
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    x = torch.randn(args.batch, 3, scale.img_size, scale.img_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, scale.num_classes, (args.batch,), device=device)
    largest, smallest = extreme_arch(space, scale, largest=True), extreme_arch(space, scale, largest=False)
    print(f"{args.space} at the {args.scale} scale ({scale.img_size}x{scale.img_size}), batch {args.batch}, {args.step} steps on "
          f"{describe(device)}, torch {torch.__version__}", flush=True)
    ratios = []
    for seed in range(args.archs):
        rng = random.Random(seed)
        archs = [largest, smallest, space.sample_by_choice(rng)] if args.step == "sandwich" else [space.sample(seed)]
        subs = [net.extract(a).to(device).train() for a in archs]
        t_super = step_time(net.parameters(), [lambda inp, a=a: net(inp, a) for a in archs], x, y, args.steps, device)
        t_sub = step_time([q for s in subs for q in s.parameters()], subs, x, y, args.steps, device)
        ratios.append(t_super / t_sub)
        print(f"step {seed}: depths {' + '.join(str(a.depths) for a in archs)}  supernet {t_super * 1e3:.1f} ms ({args.batch / t_super:.0f} img/s)  "
              f"extracted {t_sub * 1e3:.1f} ms ({args.batch / t_sub:.0f} img/s)  ratio {ratios[-1]:.3f}", flush=True)
        del subs
    print(f"median supernet/extracted training-step time ratio over {args.archs} {args.step} steps ({args.space}, {args.scale} scale, "
          f"batch {args.batch}, {device.type}): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
