"""Which torch device a command runs on, and what that device is called."""
from __future__ import annotations

import platform
from pathlib import Path

import torch

from nas.errors import UserError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto`: CUDA when present, else the CPU; a torch.device is returned as it is."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; allowed: cpu, auto")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: only cpu and cuda devices are supported; allowed: auto, cpu, cuda, cuda:N")
    return device


def trials_per_gpu(free_bytes: int, per_trial_bytes: int, cap: int = 8, headroom: float = 0.8) -> int:
    """How many trials share one GPU: as many as `headroom` of its free memory holds at `per_trial_bytes` each
    (a trial's measured peak), at least 1 and at most `cap` (beyond that they only queue for the same SMs)."""
    if per_trial_bytes <= 0:
        return cap
    return max(1, min(cap, int(free_bytes * headroom // per_trial_bytes)))


def describe(device: torch.device) -> str:
    """'cpu (AMD EPYC ..., 2 threads)' or 'cuda:0 (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({device_name(device)}, {torch.get_num_threads()} threads)"


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
