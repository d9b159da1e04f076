"""Latency on the device at hand: measurement, a per-device lookup-table predictor, and its cache.

Measurement: eval mode, inference mode, a fixed thread count on the CPU, warm-up, then repeats until
both a minimum count and a minimum time are reached; on CUDA each repeat is timed with events after a
synchronize. Models are timed round-robin in rounds, and a model's figure is the median over rounds of
each round's median; the interquartile range of all its runs is the spread. Interleaving exposes every
model to the same changes of the machine's speed (docs/latency.md, "Measurement").

Prediction: a table of per-part latencies at the space's target scale (stem, head, each merge
operator, each block choice), keyed by what sets a part's cost (supernet.parts: block type, choices,
token grid, width, heads; the batch size and thread count are in the device key), plus a linear calibration
`latency = slope * table sum + intercept` fitted on whole sampled architectures measured on the same
device. The calibration absorbs what a sum of isolated parts misses (per-forward overhead, caches
shared between blocks). Built once per device and cached in results/latency/<device-key>.json.
"""
from __future__ import annotations

import json
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from search_spaces import Arch, Scale, SearchSpace
from search_spaces.atomic import write_text_atomic
from supernet.parts import arch_parts, block_key, merge_key, space_parts

from nas.measure.device import device_name, resolve_device

CACHE_DIR = Path("results") / "latency"
CACHE_FORMAT = 1
CALIBRATION_ARCHS, CALIBRATION_SEED = 12, 0  # whole architectures the table sum is calibrated on


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


def summarize(rounds: list[list[float]], device: torch.device, batch_size: int, threads: int) -> Latency:
    """The median over rounds of each round's median, with the interquartile range of all runs."""
    runs = [t for r in rounds for t in r]
    p25, p75 = np.percentile(runs, [25, 75])
    return Latency(float(statistics.median(statistics.median(r) for r in rounds)), float(p25), float(p75), len(runs),
                   str(device), batch_size, threads)


def measure_interleaved(fns: list, device: torch.device, threads: int, rounds: int = 5, progress: str | None = None,
                        **kw) -> list[list[list[float]]]:
    """Each of `fns` timed (`measure`) in `rounds` round-robin rounds: per fn, the runs of each round."""
    from tqdm import tqdm

    per_fn: list[list[list[float]]] = [[] for _ in fns]
    with _Threads(threads), tqdm(total=rounds * len(fns), desc=progress, disable=progress is None, file=sys.stderr,
                                 dynamic_ncols=True, mininterval=0.5) as bar:
        for _ in range(rounds):
            for k, fn in enumerate(fns):
                per_fn[k].append(measure(fn, device, **kw))
                bar.update()
    return per_fn


def _forward(model: nn.Module, shape: tuple, device: torch.device):
    model.eval().to(device)
    x = torch.randn(*shape, device=device)
    return lambda: model(x)


def measure_models(models: list[nn.Module], img_size: int, batch_size: int = 1, device: str | torch.device = "auto",
                   threads: int | None = None, in_chans: int = 3, rounds: int = 5, progress: str | None = None,
                   **kw) -> list[Latency]:
    """Latency of one forward pass of each model on a random (batch, in_chans, img_size, img_size) input,
    the models timed round-robin in `rounds` rounds."""
    device = resolve_device(device)
    threads = threads or default_threads()
    modes = [m.training for m in models]
    try:
        fns = [_forward(m, (batch_size, in_chans, img_size, img_size), device) for m in models]
        runs = measure_interleaved(fns, device, threads, rounds, progress, **kw)
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    return [summarize(times, device, batch_size, threads) for times in runs]


def measure_latency(model: nn.Module, img_size: int, batch_size: int = 1, device: str | torch.device = "auto",
                    threads: int | None = None, in_chans: int = 3, rounds: int = 1, **kw) -> Latency:
    """Latency of one forward pass of `model` on a random (batch, in_chans, img_size, img_size) input."""
    return measure_models([model], img_size, batch_size, device, threads, in_chans, rounds, **kw)[0]


# ------------------------------------------------------------------ the device key
def device_key(device_type: str, name: str, threads: int, batch_size: int, torch_version: str | None = None) -> str:
    """The cache file's name: device model, torch version, threads and batch size, as a file-safe slug."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{device_type} {name}".lower()).strip("-")
    return f"{slug}-torch{torch_version or torch.__version__.split('+')[0]}-{threads}t-b{batch_size}"


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
        from nas.measure.costs import optimal_arch

        grids, dims, heads = self.scale.grids(), self.scale.embed_dims, self.scale.num_heads
        return optimal_arch(
            space, largest=False,
            layer_cost=lambda i, layer: self.table[block_key(layer, grids[i], dims[i], heads[i])],
            merge_cost=lambda b, op: self.table[merge_key(op, grids[b], dims[b], dims[b + 1])],
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "scale": self.scale.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyPredictor":
        return cls(**{**d, "scale": Scale.from_dict(d["scale"])})


def measure_space(space: SearchSpace, archs: list[Arch], scale: Scale | None = None, device: str | torch.device = "auto",
                  batch_size: int = 1, threads: int | None = None, rounds: int = 5, repeats: dict | None = None,
                  progress: bool = True, seed: int = 0) -> tuple[dict[str, float], list[float]]:
    """(latency of every part of `space` at `scale`, latency of each of `archs` built whole), all measured in
    the same interleaved rounds, so that a change of the machine's speed affects parts and archs alike."""
    from supernet import ArchNet

    scale = scale or space.target
    device = resolve_device(device)
    threads = threads or default_threads()
    repeats = repeats or {"warmup": 2, "min_repeats": 5, "min_time_s": 0.1}
    torch.manual_seed(seed)
    probes = space_parts(space, scale, batch_size)
    fns = [_forward(factory(), shape, device) for factory, shape in probes.values()]
    fns += [_forward(ArchNet(a, scale), (batch_size, scale.in_chans, scale.img_size, scale.img_size), device) for a in archs]
    label = f"latency of {len(probes)} parts + {len(archs)} architectures of {space.name} ({device.type})" if progress else None
    figures = [summarize(r, device, batch_size, threads).median_ms for r in measure_interleaved(fns, device, threads, rounds, label, **repeats)]
    return dict(zip(probes, figures[:len(probes)])), figures[len(probes):]


def calibrate(predictor: LatencyPredictor, archs: list[Arch], measured: list[float]) -> LatencyPredictor:
    """Fit `predicted = slope * table sum + intercept` to whole architectures measured with the table."""
    sums, measured = np.array([predictor.table_sum(a) for a in archs]), np.array(measured)
    if len(archs) >= 2 and np.ptp(sums) > 0:
        slope, intercept = np.polyfit(sums, measured, 1)
        if slope <= 0:  # noise swamped the spread: fall back to a pure ratio
            slope, intercept = measured.sum() / sums.sum(), 0.0
    elif len(archs) == 1:
        slope, intercept = measured.sum() / sums.sum(), 0.0
    else:
        slope, intercept = 1.0, 0.0
    predictor.slope, predictor.intercept = float(slope), float(intercept)
    predicted = predictor.slope * sums + predictor.intercept
    predictor.calibration.update({
        "archs": len(archs), "mape": float(np.mean(np.abs(predicted - measured) / measured)) if len(archs) else None,
        "measured_ms": measured.tolist(), "table_sum_ms": sums.tolist(),
    })
    return predictor


def calibration_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """The architectures a predictor is calibrated on: drawn choice by choice, as the search proposes them."""
    rng = random.Random(seed)
    return [space.sample_by_choice(rng) for _ in range(n)]


def build_predictor(space: SearchSpace, scale: Scale | None = None, device: str | torch.device = "auto", batch_size: int = 1,
                    threads: int | None = None, calib_archs: int = CALIBRATION_ARCHS, seed: int = CALIBRATION_SEED,
                    progress: bool = True, rounds: int = 5, repeats: dict | None = None) -> LatencyPredictor:
    """Measure every part of `space` at `scale` (default: its target scale) and `calib_archs` whole
    architectures in the same interleaved rounds, and calibrate the table sum on the architectures."""
    scale = scale or space.target
    device = resolve_device(device)
    threads = threads or default_threads()
    archs = calibration_archs(space, calib_archs, seed)
    table, measured = measure_space(space, archs, scale, device, batch_size, threads, rounds, repeats, progress, seed)
    predictor = LatencyPredictor(device_key(device.type, device_name(device), threads, batch_size), space.name, scale, table)
    predictor.calibration = {"seed": seed, "rounds": rounds, "built": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": threads,
                             "batch_size": batch_size, "device": device_name(device), "torch": torch.__version__}
    return calibrate(predictor, archs, measured)


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
    device = resolve_device(device)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):  # read-modify-write: another search on this device may have added a table meanwhile
        tables = _read_cache(path)
        tables[table_id] = predictor.to_dict()
        write_text_atomic(path, json.dumps({"format": CACHE_FORMAT, "key": path.stem, "tables": tables}, indent=1) + "\n")
    return predictor
