"""The measuring steps of bench/gpu_check.py, each a function of (sizes, device, record).

`record(name, value)` keeps a figure at once (the driver may end a step at its time box; what was recorded by then
stays). Only the public API is used (Supernet(space, scale), supernet(x, arch), supernet.extract(arch),
timm.create_model), and nothing here imports Ray, Optuna or thop, which the GPU machine's image lacks.
Step times are torch.utils.benchmark medians (it synchronizes CUDA around each block).
"""
from __future__ import annotations

import random
import resource
import time
from dataclasses import dataclass

import torch
from torch.utils import benchmark


@dataclass(frozen=True)
class Sizes:
    """How big each step's work is: `GPU` on a CUDA machine, `DRY` for the CPU dry run (seconds in all)."""

    scale: str  # target, or "tiny": the space's proxy at 16x16 (psvit: at 32x32)
    batch: int  # supernet and compile steps
    archs: int  # sandwich steps timed (one random path each)
    min_run_s: float  # torch.utils.benchmark's min_run_time per timing
    memory_batch: int
    latency_calib: int
    latency_held_out: int
    latency_rounds: int
    latency_repeats: dict
    latency_batches: tuple[int, int]  # the "b1" and "b64" steps
    retrain_batch: int
    retrain_img: int
    compile_backend: str
    compile_largest: bool  # the largest path compiled, else the smallest (fewer layers to trace)


GPU = Sizes("target", 64, 4, 1.0, 128, 12, 20, 3, {"warmup": 3, "min_repeats": 5, "min_time_s": 0.05}, (1, 64), 128, 224,
            "inductor", True)
DRY = Sizes("tiny", 4, 1, 0.05, 4, 3, 4, 1, {"warmup": 1, "min_repeats": 1, "min_time_s": 0.0}, (1, 2), 2, 32, "eager", False)


def _space_and_scale(sizes: Sizes, name: str = "psvit_ext"):
    from search_spaces import get_space

    space = get_space(name)
    if sizes.scale == "target":
        return space, space.target
    return space, space.proxy.with_overrides(img_size=32 if space.proxy.stem_stride > 2 else 16)


def _amp(device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _memory_format(device):
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def _seconds(fn, sizes: Sizes, warmup: int = 2) -> float:
    """Median seconds of one call of `fn` after `warmup` calls (torch.utils.benchmark, all threads torch has)."""
    for _ in range(warmup):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=sizes.min_run_s).median


def _train_step(params, forwards, x, y, device):
    """The sandwich rule's step: each forward under bfloat16 autocast and its backward (the first path's logits teach
    the others), then one AdamW step."""
    opt = torch.optim.AdamW(params, lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        teacher = None
        for forward in forwards:
            with _amp(device):
                logits = forward(x).float()
            if teacher is None:
                loss, teacher = loss_fn(logits, y), logits.detach().softmax(-1)
            else:
                loss = torch.sum(-teacher * logits.log_softmax(-1), dim=-1).mean()
            loss.backward()
        opt.step()

    return step


def _batch(scale, batch: int, device, fmt=None):
    x = torch.randn(batch, scale.in_chans, scale.img_size, scale.img_size, device=device)
    return x.contiguous(memory_format=fmt or _memory_format(device)), torch.randint(0, scale.num_classes, (batch,), device=device)


def _supernet(sizes: Sizes, device):
    from nas.measure.costs import extreme_arch
    from supernet import Supernet

    space, scale = _space_and_scale(sizes)
    net = Supernet(space, scale).to(device).train()
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return space, scale, net, extreme_arch(space, scale, largest=True), extreme_arch(space, scale, largest=False)


def supernet_step(sizes: Sizes, device, record) -> None:
    """The supernet's sandwich step against the same step through the three extracted paths, at the target scale."""
    torch.manual_seed(0)
    space, scale, net, largest, smallest = _supernet(sizes, device)
    record("scale", f"{scale.img_size}x{scale.img_size}, widths {list(scale.embed_dims)}")
    record("batch", sizes.batch)
    ratios = []
    for k in range(sizes.archs):
        archs = [largest, smallest, space.sample_by_choice(random.Random(k))]
        subs = [net.extract(a).to(device).train() for a in archs]
        formats = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format} if k == 0 else \
            {"channels_last" if device.type == "cuda" else "contiguous": _memory_format(device)}
        for label, fmt in formats.items():
            x, y = _batch(scale, sizes.batch, device, fmt)
            t_super = _seconds(_train_step(list(net.parameters()), [lambda i, a=a: net(i, a) for a in archs], x, y, device), sizes)
            t_sub = _seconds(_train_step([q for s in subs for q in s.parameters()], subs, x, y, device), sizes)
            if fmt == _memory_format(device):
                ratios.append(t_super / t_sub)
                record(f"sandwich_{k}", {"supernet_ms": t_super * 1e3, "extracted_ms": t_sub * 1e3, "ratio": t_super / t_sub,
                                         "supernet_img_s": sizes.batch / t_super})
            if k == 0:
                record(f"{label}_supernet_ms", t_super * 1e3)
                record(f"{label}_extracted_ms", t_sub * 1e3)
        del subs
        record("ratio", sorted(ratios)[len(ratios) // 2])  # the median so far (the step may be ended at its time box)


def compile_step(sizes: Sizes, device, record) -> None:
    """torch.compile tried on the largest path's training step (the dry run: the smallest's), extracted and through
    the supernet: compile time (the first compiled step less an eager one) and the compiled step against the eager one."""
    torch.manual_seed(0)
    _, scale, net, largest, smallest = _supernet(sizes, device)
    path = largest if sizes.compile_largest else smallest
    x, y = _batch(scale, sizes.batch, device)
    record("backend", sizes.compile_backend)
    record("path", "largest" if sizes.compile_largest else "smallest")
    sub = net.extract(path).to(device).train()
    for name, params, forward in (("extracted", sub.parameters(), sub), ("supernet", net.parameters(), lambda i: net(i, path))):
        params = list(params)
        eager = _seconds(_train_step(params, [forward], x, y, device), sizes)
        record(f"{name}_eager_ms", eager * 1e3)
        torch._dynamo.reset()
        step = _train_step(params, [torch.compile(forward, backend=sizes.compile_backend)], x, y, device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        record(f"{name}_compile_s", time.perf_counter() - t0 - eager)
        compiled = _seconds(step, sizes)
        record(f"{name}_compiled_ms", compiled * 1e3)
        record(f"{name}_speedup", eager / compiled)


def _latency(sizes: Sizes, device, record, batch: int) -> None:
    """The latency lookup table (every part, calibrated on whole architectures, nas.measure.latency) against
    held-out architectures measured in the same interleaved rounds: Spearman's rho and MAPE."""
    import numpy as np
    from scipy import stats

    from nas.measure.latency import LatencyPredictor, calibrate, calibration_archs, device_key, device_name, measure_space

    space, scale = _space_and_scale(sizes)
    calib = calibration_archs(space, sizes.latency_calib, 0)
    seen, held, rng = {a.key() for a in calib}, [], random.Random(1000)
    while len(held) < sizes.latency_held_out:
        arch = space.sample_by_choice(rng)
        if arch.key() not in seen:
            seen.add(arch.key())
            held.append(arch)
    threads = torch.get_num_threads()
    table, measured = measure_space(space, calib + held, scale, device, batch, threads, sizes.latency_rounds, sizes.latency_repeats)
    predictor = LatencyPredictor(device_key(device.type, device_name(device), threads, batch), space.name, scale, table)
    calibrate(predictor, calib, measured[:len(calib)])
    predicted, truth = np.array([predictor.predict(a) for a in held]), np.array(measured[len(calib):])
    record("batch_size", batch)
    record("parts", len(table))
    record("held_out_archs", len(held))
    record("measured_ms_range", [float(truth.min()), float(truth.max())])
    record("spearman", float(stats.spearmanr(predicted, truth).statistic))
    record("mape", float(np.mean(np.abs(predicted - truth) / truth)))


def latency_b1(sizes: Sizes, device, record) -> None:
    _latency(sizes, device, record, sizes.latency_batches[0])


def latency_b64(sizes: Sizes, device, record) -> None:
    _latency(sizes, device, record, sizes.latency_batches[1])


def retrain(sizes: Sizes, device, record) -> None:
    """Retraining images/s of psvit:deit_s against timm's deit_small_patch16_224, one loop for both (AdamW, bfloat16
    autocast, channels-last on CUDA, label smoothing, gradient clipping, as nas.retrain trains)."""
    import timm

    import supernet  # noqa: F401  (registers the spaces' timm models)
    from nas.measure.costs import measure_costs
    from search_spaces import load_arch

    torch.manual_seed(0)
    arch = load_arch("psvit:deit_s")
    _, scale = _space_and_scale(sizes, arch.space)
    img, classes = sizes.retrain_img, scale.num_classes
    models = {"psvit:deit_s": timm.create_model(arch.space, arch=arch, scale=scale.with_overrides(img_size=img)),
              "deit_small_patch16_224": timm.create_model("deit_small_patch16_224", img_size=img, num_classes=classes)}
    record("batch", sizes.retrain_batch)
    record("img_size", img)
    rates = {}
    for name, model in models.items():
        record(f"{name}_gmacs", measure_costs(model, img).macs / 1e9)
        model = model.to(device).train().to(memory_format=_memory_format(device))
        x, y = _batch(scale.with_overrides(img_size=img), sizes.retrain_batch, device)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

        def step(model=model, opt=opt, x=x, y=y):
            with _amp(device):
                loss = loss_fn(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        rates[name] = sizes.retrain_batch / _seconds(step, sizes, warmup=3)
        record(f"{name}_img_s", rates[name])
        model.cpu()
    record("ratio", rates["psvit:deit_s"] / rates["deit_small_patch16_224"])


def memory(sizes: Sizes, device, record) -> None:
    """Peak memory of a supernet sandwich step and of a largest-path step at batch 128 (on the CPU: the process's
    peak resident set, which is no per-step figure)."""
    torch.manual_seed(0)
    space, scale, net, largest, smallest = _supernet(sizes, device)
    x, y = _batch(scale, sizes.memory_batch, device)
    record("batch", sizes.memory_batch)
    for name, archs in (("largest_path", [largest]), ("sandwich", [largest, smallest, space.sample_by_choice(random.Random(0))])):
        step = _train_step(list(net.parameters()), [lambda i, a=a: net(i, a) for a in archs], x, y, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            record(f"{name}_peak_allocated_gib", torch.cuda.max_memory_allocated(device) / 2**30)
            record(f"{name}_peak_reserved_gib", torch.cuda.max_memory_reserved(device) / 2**30)
        net.zero_grad(set_to_none=True)
    if device.type == "cuda":
        record("total_gib", torch.cuda.get_device_properties(device).total_memory / 2**30)
    else:
        record("cpu_peak_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


STEPS = {"supernet_step": supernet_step, "compile": compile_step, "latency_b1": latency_b1, "latency_b64": latency_b64,
         "retrain": retrain, "memory": memory}
