"""What the supernet trainer (supernet_trainer.Trainer) and the retrainer (retrainer.Retrainer) share.

Device choice, rank and world under torch.distributed (Ray Train sets it up), batch sharding and
gradient averaging, the NaN guard, RNG state for exact resumes, the epoch loop with its progress bar,
and the per-epoch checkpoint + CSV log, both written atomically; TrainerBase runs them.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from search_spaces.atomic import write_text_atomic

from nas.data import make_loader
from nas.errors import RunFailed, UserError
from nas.measure.device import resolve_device
from nas.runs import check_folder_path
from nas.training.checkpoint import KIND, check_compatible, load_checkpoint, rng_state, save_checkpoint, set_rng_state

LOG = "train_log.csv"
MAX_EPOCHS = 100_000


def check_common_settings(cfg) -> None:
    """The numbers both trainers take, each named by its flag when out of range."""
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.lr > 0 or not math.isfinite(cfg.lr):
        raise UserError(f"--lr must be a positive finite number, got {cfg.lr}")
    if cfg.epochs > MAX_EPOCHS:
        raise UserError(f"--epochs must be at most {MAX_EPOCHS:,}, got {cfg.epochs}")
    for name in ("weight_decay", "warmup_epochs", "min_lr", "threads"):
        if not getattr(cfg, name) >= 0 or not math.isfinite(getattr(cfg, name)):
            extra = " (0: torch's default)" if name == "threads" else ""
            raise UserError(f"--{name.replace('_', '-')} must be at least 0{extra}, got {getattr(cfg, name)}")
    if cfg.clip_grad is not None and (not cfg.clip_grad > 0 or not math.isfinite(cfg.clip_grad)):
        raise UserError(f"--clip-grad must be positive (or left out), got {cfg.clip_grad}")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in (0, 1), got {cfg.val_fraction}")


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
    """Refuse a file in the folder's place, to overwrite a run that holds a checkpoint, and to resume one that does not."""
    check_folder_path(out)
    if checkpoint.exists() and not resume:
        raise UserError(f"{out} already holds a {what} checkpoint; pass --resume to continue it or choose another --out")
    if resume and not checkpoint.exists():
        raise UserError(f"--resume: {checkpoint} does not exist")


def to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def scale_learning_rates(optimizer: torch.optim.Optimizer, scales: dict[int, float]) -> None:
    """Moves the parameters named in `scales` (by id) out of their groups into groups of their own, one per
    (group, scale), with timm's `lr_scale`, which its schedulers apply at every update (the group's own `lr` stays
    the base rate: timm's schedulers start from it). Made before the scheduler and the first step,
    so the optimizer's state is empty; the groups depend only on which parameters are named and their scales, so a
    run resumed with the same settings rebuilds the same ones."""
    for group in list(optimizer.param_groups):
        by_scale: dict[float, list] = {}
        for p in group["params"]:
            if id(p) in scales:
                by_scale.setdefault(scales[id(p)], []).append(p)
        if by_scale:
            group["params"] = [p for p in group["params"] if id(p) not in scales]
            settings = {k: v for k, v in group.items() if k != "params"}
            for scale, params in by_scale.items():
                optimizer.add_param_group({**settings, "params": params, "lr_scale": scale})


def train_epoch(loader, step, scheduler, epoch: int, label: str, device: torch.device, rank: int = 0, world: int = 1) -> dict:
    """One pass over `loader` with a progress bar; `step(x, y, epoch, k)` trains on a batch and returns
    its loss. The scheduler is stepped per update and at the end of the epoch."""
    steps = len(loader)
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    t0, seen, loss_sum = time.time(), 0, 0.0
    bar = tqdm(loader, total=steps, desc=label, disable=rank > 0, mininterval=1.0, leave=False,
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


def save_progress(state: dict, checkpoint: Path, history: list[dict], kind: str) -> None:
    """The checkpoint, then the CSV log next to it; each file is replaced atomically."""
    save_checkpoint(state, checkpoint, kind)
    write_text_atomic(checkpoint.parent / LOG, pd.DataFrame(history).to_csv(index=False))


def new_out_dir(prefix: str, space: str) -> str:
    """results/<prefix>-<space>-<time>, with a -2, -3 ... suffix when that folder exists."""
    base = os.path.join("results", f"{prefix}-{space}-{time.strftime('%Y%m%d-%H%M%S')}")
    out, k = base, 1
    while os.path.exists(out):
        k += 1
        out = f"{base}-{k}"
    return out


class TrainerBase:
    """A training run's life: set-up (config checked, rank and world, device and CPU threads, the run
    folder's checkpoint rules), optional resume, the epoch loop with its per-epoch checkpoint and log,
    and the end.

    A subclass builds `space`, `scale`, `bundle` and `model`, then calls `_start_training`, and fills the
    hooks: `_step` (one batch, returns its loss), `_validate` (the epoch's validation columns),
    `_describe_validation` (their part of the progress line), `finish` (what `run` returns), and, for
    state beyond model + optimizer + scheduler + epoch + history + RNG, `_extra_state` / `_restore_extra`.
    """

    checkpoint_file: str
    checkpoint_kind: str = KIND
    label: str  # names the run in messages: "a supernet checkpoint"

    def _setup(self, cfg, log, on_epoch_end) -> None:
        cfg.check()
        self.cfg, self.log, self.on_epoch_end = cfg, log, on_epoch_end
        self.rank, self.world = rank_and_world()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu" and cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / self.checkpoint_file
        check_out_folder(self.out, self.ckpt_path, cfg.resume, self.label)

    def _resume_state(self) -> dict | None:
        """With --resume, the checkpoint to continue, refused when it is of another kind, space or scale;
        read before the model is built so that a bad one fails fast."""
        if not self.cfg.resume:
            return None
        ckpt = load_checkpoint(self.ckpt_path, kind=self.checkpoint_kind)
        check_compatible(ckpt, self.ckpt_path, self.space.name, self.scale)
        return ckpt

    def _on_device(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.device.type == "cuda" else model

    def _start_training(self, resume_state: dict | None) -> None:
        """The train and validation loaders, AdamW and the cosine schedule with warm-up (timm, stepped per
        update), then the resumed state. The RNG state is kept here so that `run()` starts from it, whatever
        happens to the global generators in between (several trainers are built before any runs)."""
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        cfg = self.cfg
        self.train_loader = shard(make_loader(self.bundle, "train", cfg.batch_size, seed=cfg.seed), self.rank, self.world)
        self.val_loader = make_loader(self.bundle, "val", 256)
        self.optimizer = create_optimizer_v2(self.model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        scale_learning_rates(self.optimizer, self._lr_scales())
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, "cosine", num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr,
            warmup_lr=cfg.lr * 0.01, updates_per_epoch=len(self.train_loader), step_on_epochs=False,
        )
        self.epoch, self.history = 0, []
        if resume_state is not None:
            self._restore(resume_state)
        self.rng = rng_state()

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        return {
            "space": self.space.name, "scale": self.scale.to_dict(), "epoch": self.epoch,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "config": asdict(self.cfg), "data": self.bundle.describe(), "history": self.history,
            **self._extra_state(),
        }

    def _restore(self, ckpt: dict) -> None:
        saved = [g.get("lr_scale", 1.0) for g in ckpt["optimizer"]["param_groups"]]
        own = [g.get("lr_scale", 1.0) for g in self.optimizer.param_groups]
        if saved != own:  # load_state_dict would refuse other counts and silently keep the saved scales
            raise UserError(f"cannot resume {self.ckpt_path}: its optimizer's learning-rate scales per parameter group are "
                            f"{saved}, this run's {own} (it was trained with another --merge-lr-scale); resume with that one, "
                            "or start a new run")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self._restore_extra(ckpt)
        set_rng_state(ckpt["rng"])
        self.epoch, self.history = int(ckpt["epoch"]), list(ckpt["history"])
        self.log(f"resumed {self.ckpt_path} at epoch {self.epoch}")

    def _start_epoch(self, epoch: int) -> None:
        pass

    def _extra_state(self) -> dict:
        return {}

    def _lr_scales(self) -> dict[int, float]:
        """Parameters (by id) that learn at a multiple of the learning rate; none by default."""
        return {}

    def _restore_extra(self, ckpt: dict) -> None:
        pass

    # ---------------------------------------------------------------- one update
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cfg.amp and self.device.type == "cuda")

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """The NaN guard: stop before a non-finite loss reaches the weights; the last checkpoint stays."""
        if not torch.isfinite(loss):
            raise RunFailed(
                f"training stopped: the loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; "
                f"the last good checkpoint (epoch {self.epoch}) is kept at {self.ckpt_path if self.epoch else 'none'}; "
                f"try a lower --lr (now {self.cfg.lr:g})"
            )

    def _apply_gradients(self) -> None:
        average_gradients(self.model, self.world)
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.optimizer.step()

    # ---------------------------------------------------------------- the run
    def _open_out(self) -> None:
        """Rank 0 creates the run folder (the other workers write nothing)."""
        if not self.rank:
            self.out.mkdir(parents=True, exist_ok=True)

    @property
    def planned_epochs(self) -> int:  # the epochs a finished run has: cfg.epochs, and any a subclass adds after them
        return self.cfg.epochs

    def _epoch_label(self, epoch: int) -> str:  # the progress bar's and the log's name of epoch `epoch` (from 0)
        return f"epoch {epoch + 1}/{self.planned_epochs}"

    def run(self) -> dict:
        """Trains to planned_epochs from the current epoch, saving the checkpoint and log after every epoch."""
        while self.epoch < self.planned_epochs:
            self.run_epoch()
        self.begin()
        return self.finish()

    def begin(self) -> None:
        """Opens the run folder and starts the wall clock, once."""
        if getattr(self, "t_run", None) is None:
            self.t_run = time.time()
            self._open_out()

    def run_epoch(self) -> dict:
        """One epoch: train, validate, save the checkpoint and log; returns the epoch's row. Its own random state is
        put in place for the epoch and kept afterwards, so that trainers run epoch by epoch in turn (the selection
        stage's seeds) draw what each would draw alone."""
        self.begin()
        set_rng_state(self.rng)
        epoch, t0 = self.epoch, time.time()
        self.model.train()
        self._start_epoch(epoch)
        stats = train_epoch(self.train_loader, self._step, self.scheduler, epoch, self._epoch_label(epoch), self.device, self.rank, self.world)
        self.epoch = epoch + 1
        lr = self.optimizer.param_groups[0]["lr"]
        scores = self._validate()
        row = {"epoch": self.epoch, "train_loss": stats["train_loss"], "lr": lr, **scores,
               "images_per_s": stats["images_per_s"], "epoch_time_s": time.time() - t0}
        self.history.append(row)
        self.rng = rng_state()
        if not self.rank:
            save_progress(self.state(), self.ckpt_path, self.history, self.checkpoint_kind)
        self.log(f"{self._epoch_label(epoch)}: loss {row['train_loss']:.3f}, {row['images_per_s']:.0f} img/s, "
                 f"{self._describe_validation(row)} ({row['epoch_time_s']:.1f}s)")
        if self.on_epoch_end is not None:
            self.on_epoch_end(self)
        return row
