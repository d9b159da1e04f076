"""Latency on the device at hand: measurement, a per-device lookup-table predictor, and its cache.

Measurement: eval mode, inference mode, a fixed thread count on the CPU, warm-up, then repeats until
both a minimum count and a minimum time are reached; on CUDA each repeat is timed with events after a
synchronize. The median is the figure, the interquartile range its spread.

Prediction: a table of per-part latencies at the space's target scale (stem, head, each merge
operator, each block choice), keyed by what sets a part's cost (block type, choice, token grid,
width, heads; the batch size and thread count are in the device key), plus a linear calibration
`latency = slope * table sum + intercept` fitted on whole sampled architectures measured on the same
device. The calibration absorbs what a sum of isolated parts misses (per-forward overhead, caches
shared between blocks). Built once per device and cached in results/latency/<device-key>.json.
"""
from __future__ import annotations

import json
import platform
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from search_spaces import Arch, Layer, Scale, SearchSpace
from search_spaces.atomic import write_text_atomic

from .cli import UserError

CACHE_DIR = Path("results") / "latency"
CACHE_FORMAT = 1


# ------------------------------------------------------------------ measurement
@dataclass(frozen=True)
class Latency:
    median_ms: float
    p25_ms: float
    p75_ms: float
    repeats: int
    device: str
    batch_size: int
    threads: int

    def __str__(self) -> str:
        return f"{self.median_ms:.2f} ms (IQR {self.p25_ms:.2f}-{self.p75_ms:.2f} ms, {self.repeats} runs)"


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA when present, else the CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; allowed: cpu, auto")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: only cpu and cuda latencies are measured; allowed: auto, cpu, cuda, cuda:N")
    return device


class _Threads:
    """Fix torch's intra-op thread count for a block of code, then put it back."""

    def __init__(self, threads: int):
        self.threads, self.saved = threads, None

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def default_threads() -> int:
    return torch.get_num_threads()


@torch.inference_mode()
def measure(fn, device: torch.device, warmup: int = 5, min_repeats: int = 10, min_time_s: float = 0.5,
            max_repeats: int = 200) -> list[float]:
    """Milliseconds of each timed call of `fn()` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    cuda = device.type == "cuda"
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < min_time_s):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def summarize(times: list[float], device: torch.device, batch_size: int, threads: int) -> Latency:
    q = np.percentile(times, [25, 50, 75])
    return Latency(float(q[1]), float(q[0]), float(q[2]), len(times), str(device), batch_size, threads)


def measure_latency(model: nn.Module, img_size: int, batch_size: int = 1, device: str | torch.device = "auto",
                    threads: int | None = None, in_chans: int = 3, **kw) -> Latency:
    """Latency of one forward pass of `model` on a random (batch, in_chans, img_size, img_size) input."""
    device = device if isinstance(device, torch.device) else resolve_device(device)
    threads = threads or default_threads()
    was_training = model.training
    model.eval().to(device)
    x = torch.randn(batch_size, in_chans, img_size, img_size, device=device)
    try:
        with _Threads(threads):
            times = measure(lambda: model(x), device, **kw)
    finally:
        model.train(was_training)
    return summarize(times, device, batch_size, threads)


# ------------------------------------------------------------------ the device key
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_key(device_type: str, name: str, threads: int, batch_size: int, torch_version: str | None = None) -> str:
    """The cache file's name: device model, torch version, threads and batch size, as a file-safe slug."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{device_type} {name}".lower()).strip("-")
    return f"{slug}-torch{torch_version or torch.__version__.split('+')[0]}-{threads}t-b{batch_size}"


# ------------------------------------------------------------------ the parts of an architecture
def _block_key(layer: Layer, side: int, dim: int, heads: int) -> str:
    if layer.block == "strip":
        choice = f"s{layer.strip_width}"
    elif layer.block == "stoken":
        choice = f"g{layer.grid}"
    else:
        choice = f"r{layer.mlp_ratio:g}"
    return f"{layer.block}:{choice}@{side}x{side}x{dim}/h{heads}"


def _merge_key(op: str, side_in: int, dim_in: int, dim_out: int) -> str:
    return f"merge:{op}@{side_in}x{side_in}x{dim_in}>{dim_out}"


def arch_parts(arch: Arch, scale: Scale) -> list[str]:
    """The table keys whose latencies add up to `arch`'s at `scale`."""
    grids = scale.grids()
    parts = ["stem"]
    for i, layers in enumerate(arch.stages):
        if i:
            parts.append(_merge_key(arch.merges[i - 1], grids[i - 1], scale.embed_dims[i - 1], scale.embed_dims[i]))
        parts += [_block_key(layer, grids[i], scale.embed_dims[i], scale.num_heads[i]) for layer in layers]
    return parts + ["head"]


class _BlockProbe(nn.Module):
    """One block on its own: (B, H, W, C) tokens in, tokens out; a sharing block gets an attention map."""

    def __init__(self, block: nn.Module, attn: torch.Tensor | None):
        super().__init__()
        self.block, self.attn = block, attn

    def forward(self, x):
        return self.block(x, self.attn)[0]


def _space_probes(space: SearchSpace, scale: Scale, batch_size: int):
    """(key, module factory, input shape) for every distinct part of the space at `scale`."""
    from supernet.blocks import make_block, make_merge
    from supernet.model import Head, Stem

    grids = scale.grids()
    probes = {"stem": (lambda: Stem(scale), (batch_size, scale.in_chans, scale.img_size, scale.img_size))}
    for i, rule in enumerate(space.stages):
        side, dim, heads = grids[i], scale.embed_dims[i], scale.num_heads[i]
        if i:
            for op in space.merges[i - 1]:
                d_in = scale.embed_dims[i - 1]
                key = _merge_key(op, grids[i - 1], d_in, dim)
                probes[key] = (lambda op=op, d_in=d_in, dim=dim: make_merge(op, d_in, dim), (batch_size, grids[i - 1], grids[i - 1], d_in))
        for layer in rule.options():
            key = _block_key(layer, side, dim, heads)

            def factory(layer=layer, side=side, dim=dim, heads=heads):
                n = side * side
                attn = torch.rand(batch_size, heads, n, n).softmax(-1) if layer.block == "shared" else None
                return _BlockProbe(make_block(layer, dim, heads, side, scale), attn)

            probes[key] = (factory, (batch_size, side, side, dim))
    last = scale.embed_dims[-1]
    probes["head"] = (lambda: Head(last, scale.num_classes), (batch_size, grids[-1], grids[-1], last))
    return probes


# ------------------------------------------------------------------ the predictor
@dataclass
class LatencyPredictor:
    """Per-part latencies (ms) of one space at one scale on one device, and their calibration."""

    key: str
    space: str
    scale: Scale
    table: dict[str, float]
    slope: float = 1.0
    intercept: float = 0.0
    calibration: dict = field(default_factory=dict)

    def table_sum(self, arch: Arch) -> float:
        return sum(self.table[p] for p in arch_parts(arch, self.scale))

    def predict(self, arch: Arch) -> float:
        """Predicted latency of `arch` in ms, from the table alone (nothing is built)."""
        return self.slope * self.table_sum(arch) + self.intercept

    def fastest(self, space: SearchSpace) -> Arch:
        """The architecture with the lowest predicted latency (exact: the prediction is additive)."""
        from .costs import optimal_arch

        grids, dims, heads = self.scale.grids(), self.scale.embed_dims, self.scale.num_heads
        return optimal_arch(
            space, largest=False,
            layer_cost=lambda i, layer: self.table[_block_key(layer, grids[i], dims[i], heads[i])],
            merge_cost=lambda b, op: self.table[_merge_key(op, grids[b], dims[b], dims[b + 1])],
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "scale": self.scale.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyPredictor":
        return cls(**{**d, "scale": Scale.from_dict(d["scale"])})


def _measure_module(module: nn.Module, shape: tuple, device: torch.device, threads: int, **kw) -> float:
    module.eval().to(device)
    x = torch.randn(*shape, device=device)
    with _Threads(threads):
        return statistics.median(measure(lambda: module(x), device, **kw))


def build_predictor(space: SearchSpace, scale: Scale | None = None, device: str | torch.device = "auto", batch_size: int = 1,
                    threads: int | None = None, calib_archs: int = 12, seed: int = 0, progress: bool = True,
                    part_repeats: dict | None = None, arch_repeats: dict | None = None) -> LatencyPredictor:
    """Measure every part of `space` at `scale` (default: its target scale) and calibrate on `calib_archs`
    uniformly sampled whole architectures."""
    from tqdm import tqdm

    from supernet import ArchNet

    scale = scale or space.target
    device = device if isinstance(device, torch.device) else resolve_device(device)
    threads = threads or default_threads()
    key = device_key(device.type, device_name(device), threads, batch_size)
    part_repeats = part_repeats or {"warmup": 3, "min_repeats": 10, "min_time_s": 0.2}
    arch_repeats = arch_repeats or {"warmup": 3, "min_repeats": 10, "min_time_s": 0.5}
    torch.manual_seed(seed)
    probes = _space_probes(space, scale, batch_size)
    table = {}
    bar = tqdm(probes.items(), desc=f"latency table {space.name} ({device.type})", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5)
    for k, (factory, shape) in bar:
        table[k] = _measure_module(factory(), shape, device, threads, **part_repeats)
    bar.close()
    rng = random.Random(seed)
    sums, measured = [], []
    predictor = LatencyPredictor(key, space.name, scale, table)
    for _ in tqdm(range(calib_archs), desc="latency calibration (whole architectures)", disable=not progress, file=sys.stderr,
                  dynamic_ncols=True, mininterval=0.5):
        arch = space.sample(rng)
        model = ArchNet(arch, scale)
        sums.append(predictor.table_sum(arch))
        measured.append(measure_latency(model, scale.img_size, batch_size, device, threads, scale.in_chans, **arch_repeats).median_ms)
    if calib_archs >= 2 and np.ptp(sums) > 0:
        slope, intercept = np.polyfit(sums, measured, 1)
        if slope <= 0:  # noise swamped the spread: fall back to a pure ratio
            slope, intercept = float(np.sum(measured) / np.sum(sums)), 0.0
    elif calib_archs >= 1:
        slope, intercept = float(np.sum(measured) / np.sum(sums)), 0.0
    else:
        slope, intercept = 1.0, 0.0
    predictor.slope, predictor.intercept = float(slope), float(intercept)
    predicted = np.array([predictor.slope * s + predictor.intercept for s in sums])
    predictor.calibration = {
        "archs": calib_archs, "seed": seed,
        "mape": float(np.mean(np.abs(predicted - measured) / np.array(measured))) if calib_archs else None,
        "measured_ms": [float(m) for m in measured], "table_sum_ms": [float(s) for s in sums],
        "built": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": threads, "batch_size": batch_size,
        "device": device_name(device), "torch": torch.__version__,
    }
    return predictor


# ------------------------------------------------------------------ the cache
def _table_id(space: SearchSpace, scale: Scale) -> str:
    return f"{space.name}@{json.dumps(scale.to_dict(), sort_keys=True)}"


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def cache_path(device: torch.device, threads: int, batch_size: int, root: str | Path = CACHE_DIR) -> Path:
    return Path(root) / f"{device_key(device.type, device_name(device), threads, batch_size)}.json"


def _read_cache(path: Path) -> dict:
    """The cache file's tables, or {} (with a warning) if it is unreadable or not a latency cache."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("tables"), dict):
            raise ValueError("not a latency cache of this version")
        tables = data["tables"]
        for entry in tables.values():
            LatencyPredictor.from_dict(entry)  # every entry must have the predictor's fields
            if not all(isinstance(v, (int, float)) for v in entry["table"].values()):
                raise ValueError("a table value is not a number")
        return tables
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
        _warn(f"latency cache {path} is corrupt ({type(e).__name__}: {str(e)[:100]}); rebuilding it")
        return {}


def load_predictor(space: SearchSpace, scale: Scale | None = None, device: str | torch.device = "auto", batch_size: int = 1,
                   threads: int | None = None, root: str | Path = CACHE_DIR, build: bool = True, log=print, **build_kw) -> LatencyPredictor | None:
    """The cached predictor for this device, space and scale; built (and cached) if missing and `build`."""
    scale = scale or space.target
    device = device if isinstance(device, torch.device) else resolve_device(device)
    threads = threads or default_threads()
    path = cache_path(device, threads, batch_size, root)
    tables = _read_cache(path)
    table_id = _table_id(space, scale)
    if table_id in tables:
        return LatencyPredictor.from_dict(tables[table_id])
    if not build:
        return None
    log(f"building the latency predictor of {space.name} for {path.stem} (once per device; cached in {path})")
    predictor = build_predictor(space, scale, device, batch_size, threads, **build_kw)
    tables[table_id] = predictor.to_dict()
    write_text_atomic(path, json.dumps({"format": CACHE_FORMAT, "key": path.stem, "tables": tables}, indent=1) + "\n")
    return predictor
