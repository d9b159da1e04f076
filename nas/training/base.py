"""What the supernet trainer (nas.train) and the retrain trainer (nas.retrain) share.

Device choice, rank and world under torch.distributed (Ray Train sets it up), batch sharding and
gradient averaging, the NaN guard, RNG state for exact resumes, the epoch loop with its progress bar,
and the per-epoch checkpoint + CSV log, both written atomically.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from search_spaces.atomic import write_text_atomic

from nas.training.checkpoint import save_checkpoint
from nas.errors import RunFailed, UserError
from nas.measure.device import resolve_device

LOG = "train_log.csv"


def rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def average_gradients(net: torch.nn.Module, world: int) -> None:
    """One all-reduce per gradient; every worker ran the same parameters, so no DDP bookkeeping is needed."""
    if world == 1:
        return
    for p in net.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world)


class Shard:
    """Worker `rank`'s slice of every batch of a loader (same order on every worker)."""

    def __init__(self, loader, rank: int, world: int):
        self.loader, self.rank, self.world = loader, rank, world

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x[self.rank::self.world], y[self.rank::self.world]


def shard(loader, rank: int, world: int):
    return Shard(loader, rank, world) if world > 1 else loader


def check_out_folder(out: Path, checkpoint: Path, resume: bool, what: str) -> None:
    """Refuse to overwrite a run that holds a checkpoint, and to resume one that does not."""
    if checkpoint.exists() and not resume:
        raise UserError(f"{out} already holds a {what} checkpoint; pass --resume to continue it or choose another --out")
    if resume and not checkpoint.exists():
        raise UserError(f"--resume: {checkpoint} does not exist")


class TrainerBase:
    """The set-up both trainers begin with: the config checked, rank and world, device and CPU threads,
    and the run folder's checkpoint rules (no overwriting without --resume)."""

    def _setup(self, cfg, log, on_epoch_end, checkpoint: str, what: str) -> None:
        cfg.check()
        self.cfg, self.log, self.on_epoch_end = cfg, log, on_epoch_end
        self.rank, self.world = rank_and_world()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu" and cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / checkpoint
        check_out_folder(self.out, self.ckpt_path, cfg.resume, what)


def check_finite(loss: torch.Tensor, epoch: int, step: int, checkpoint: Path, saved_epoch: int, lr: float) -> None:
    if not torch.isfinite(loss):
        raise RunFailed(
            f"training stopped: the loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; "
            f"the last good checkpoint (epoch {saved_epoch}) is kept at {checkpoint if saved_epoch else 'none'}; "
            f"try a lower --lr (now {lr:g})"
        )


def rng_state() -> dict:
    """torch, numpy (Mixup draws from it) and Python (RandAugment) generators, as plain types and tensors."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def train_epoch(loader, step, scheduler, epoch: int, epochs: int, device: torch.device, rank: int = 0, world: int = 1) -> dict:
    """One pass over `loader` with a progress bar; `step(x, y, epoch, k)` trains on a batch and returns
    its loss. The scheduler is stepped per update and at the end of the epoch."""
    steps = len(loader)
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    t0, seen, loss_sum = time.time(), 0, 0.0
    bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=rank > 0, mininterval=1.0, leave=False,
               dynamic_ncols=True)
    for k, (x, y) in enumerate(bar):
        x, y = to_device(x, y, device)
        loss_sum += step(x, y, epoch, k)
        seen += len(y) * world
        scheduler.step_update(epoch * steps + k + 1)
        bar.set_postfix(loss=f"{loss_sum / (k + 1):.3f}", img_s=f"{seen / (time.time() - t0):.0f}")
    bar.close()
    scheduler.step(epoch + 1)
    seconds = time.time() - t0
    return {"train_loss": loss_sum / max(steps, 1), "images_per_s": seen / max(seconds, 1e-9), "train_time_s": seconds}


def save_progress(state: dict, checkpoint: Path, history: list[dict], kind: str | None = None) -> None:
    """The checkpoint, then the CSV log next to it; each file is replaced atomically."""
    save_checkpoint(state, checkpoint, **({"kind": kind} if kind else {}))
    write_text_atomic(checkpoint.parent / LOG, pd.DataFrame(history).to_csv(index=False))


def new_out_dir(prefix: str, space: str) -> str:
    """results/<prefix>-<space>-<time>, with a -2, -3 ... suffix when that folder exists."""
    base = os.path.join("results", f"{prefix}-{space}-{time.strftime('%Y%m%d-%H%M%S')}")
    out, k = base, 1
    while os.path.exists(out):
        k += 1
        out = f"{base}-{k}"
    return out
