"""Retraining throughput of a searched architecture against a timm baseline of similar MACs, same loop.

    python bench/retrain_throughput.py [--arch psvit:deit_s | results/best.json] [--baseline deit_small_patch16_224]
        [--batch 128] [--steps 20] [--device auto] [--threads 2]

Both models are built at 224x224 with 1000 classes and trained on random images by one loop, the one
`python -m nas.retrain` runs per batch: AdamW, bfloat16 autocast and channels-last inputs on CUDA, label
smoothing, gradient clipping. Images per second are the median over --steps steps after three warm-up
steps. The last line is the architecture's images/s as a fraction of the baseline's (goal on a GPU: at
least 0.8 at similar MACs).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import timm
import torch

import supernet  # noqa: F401  (registers the spaces' timm models)
from nas.measure.costs import measure_costs
from nas.measure.device import describe, resolve_device
from search_spaces import get_space, load_arch


def images_per_s(model, batch: int, steps: int, device) -> float:
    model = model.to(device).train()
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    rates = []
    for k in range(steps + 3):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with amp:
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k >= 3:
            rates.append(batch / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="psvit:deit_s", help="an architecture file or SPACE:REFERENCE (default psvit:deit_s, 4.67G)")
    p.add_argument("--baseline", default="deit_small_patch16_224", help="a timm model name")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    arch = load_arch(args.arch)
    ours = timm.create_model(arch.space, arch=arch, scale=get_space(arch.space).target)
    base = timm.create_model(args.baseline)
    costs = {name: measure_costs(m, 224) for name, m in (("arch", ours), ("baseline", base))}
    print(f"on {describe(device)}, torch {torch.__version__}, batch {args.batch}", flush=True)
    rates = {}
    for name, model, label in (("arch", ours, args.arch), ("baseline", base, f"timm:{args.baseline}")):
        rates[name] = images_per_s(model, args.batch, args.steps, device)
        print(f"{label}: {costs[name].macs / 1e9:.2f} GMACs, {costs[name].params / 1e6:.1f}M params, {rates[name]:.1f} img/s", flush=True)
    print(f"retrain throughput of {args.arch} / {args.baseline}: {rates['arch'] / rates['baseline']:.3f} (goal >= 0.8 on a GPU)")


if __name__ == "__main__":
    main()
