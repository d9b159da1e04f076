"""Supernet training: path sampling, AdamW + cosine with warm-up (timm), in-place distillation,
atomic per-epoch checkpoints with resume, a NaN guard, progress and a CSV log.

Distributed: every worker draws the same paths for a step (the draw depends on seed, epoch and step),
so after the backward passes the gradients of exactly the same parameters exist everywhere and are
averaged with one all-reduce per tensor; no DistributedDataParallel bookkeeping of unused parameters.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from search_spaces import Scale, get_space
from search_spaces.atomic import write_text_atomic

from nas.training.checkpoint import check_compatible, load_checkpoint
from nas.errors import UserError
from nas.measure.costs import arch_costs
from nas.data import DataBundle, load_data, make_loader
from nas.measure.evaluate import evaluate
from nas.training.sampling import DISTRIBUTIONS, STRATEGIES, PathSampler
from nas.training.base import (TrainerBase, average_gradients, check_finite, new_out_dir, rng_state, save_progress, set_rng_state,
                        shard, train_epoch)

CHECKPOINT = "supernet.pt"
SUMMARY = "train_summary.json"


@dataclass
class TrainConfig:
    space: str = "psvit_ext"
    data: str = "digits"
    scale: str = "proxy"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    min_lr: float = 1e-5
    strategy: str = "sandwich"
    path_dist: str = "choice"
    num_random: int = 1
    distill: bool = True
    label_smoothing: float = 0.1
    clip_grad: float = 1.0
    seed: int = 0
    val_fraction: float = 0.1
    calib_batches: int = 10
    out: str = ""
    resume: bool = False
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    custom_scale: dict | None = field(default=None)  # a Scale as a dict, overriding `scale` (tests, research)

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy {self.strategy!r} is not known; allowed: {', '.join(STRATEGIES)}")
        if self.path_dist not in DISTRIBUTIONS:
            raise UserError(f"--path-dist {self.path_dist!r} is not known; allowed: {', '.join(DISTRIBUTIONS)}")
        if self.scale not in ("proxy", "target"):
            raise UserError(f"--scale {self.scale!r} is not known; allowed: proxy, target")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")


def resolve_scale(cfg, bundle: DataBundle) -> Scale:
    """The space's scale (cfg.custom_scale, else the one named cfg.scale) with the data's input size and class count."""
    space = get_space(cfg.space)
    scale = Scale.from_dict(cfg.custom_scale) if cfg.custom_scale else space.scale(cfg.scale)
    scale = scale.with_overrides(img_size=bundle.img_size, num_classes=bundle.num_classes)
    try:
        scale.check()
    except ValueError as e:
        raise UserError(f"the data's {bundle.img_size}x{bundle.img_size} images do not fit the {cfg.scale} scale: {e}") from None
    return scale


def data_img_size(cfg) -> int | None:
    """Digits, folders and named data sets are resized to the scale's input size; npz data keeps its own."""
    if cfg.custom_scale:
        return cfg.custom_scale["img_size"]
    return None if cfg.data.startswith("npz:") else get_space(cfg.space).scale(cfg.scale).img_size


def _soft_cross_entropy(logits, teacher_logits):
    return torch.sum(-F.softmax(teacher_logits, dim=-1) * F.log_softmax(logits, dim=-1), dim=-1).mean()


class Trainer(TrainerBase):
    """One supernet training run; `run()` trains to cfg.epochs, resuming from out/supernet.pt if asked."""

    def __init__(self, cfg: TrainConfig, bundle: DataBundle | None = None, log=print, on_epoch_end=None):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        from supernet import Supernet

        self._setup(cfg, log, on_epoch_end, CHECKPOINT, "supernet")
        self.space = get_space(cfg.space)
        self.bundle = bundle or load_data(cfg.data, img_size=data_img_size(cfg), seed=cfg.seed, val_fraction=cfg.val_fraction)
        self.scale = resolve_scale(cfg, self.bundle)
        resume_state = None
        if cfg.resume:
            resume_state = load_checkpoint(self.ckpt_path)
            check_compatible(resume_state, self.ckpt_path, self.space.name, self.scale)
        torch.manual_seed(cfg.seed)
        self.net = Supernet(self.space, self.scale).to(self.device)
        if self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.train_loader = shard(make_loader(self.bundle, "train", cfg.batch_size, seed=cfg.seed), self.rank, self.world)
        self.val_loader = make_loader(self.bundle, "val", 256)
        self.calib_loader = make_loader(self.bundle, "train", cfg.batch_size, seed=cfg.seed + 1, train=True)
        self.optimizer = create_optimizer_v2(self.net, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, "cosine", num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr,
            warmup_lr=cfg.lr * 0.01, updates_per_epoch=len(self.train_loader), step_on_epochs=False,
        )
        self.sampler = PathSampler(self.space, self.scale, cfg.strategy, seed=cfg.seed, num_random=cfg.num_random, dist=cfg.path_dist)
        self.epoch, self.history = 0, []
        if resume_state is not None:
            self._restore(resume_state)

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        return {
            "space": self.space.name, "scale": self.scale.to_dict(), "epoch": self.epoch,
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "config": asdict(self.cfg), "data": self.bundle.describe(), "history": self.history,
        }

    def _restore(self, ckpt: dict) -> None:
        self.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.epoch, self.history = int(ckpt["epoch"]), list(ckpt["history"])
        self.log(f"resumed {self.ckpt_path} at epoch {self.epoch}")

    def _save(self) -> None:
        if self.rank:
            return
        save_progress(self.state(), self.ckpt_path, self.history)

    # ---------------------------------------------------------------- training
    def _step(self, x, y, epoch: int, step: int) -> float:
        cfg = self.cfg
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda")
        self.optimizer.zero_grad(set_to_none=True)
        teacher, total = None, 0.0
        for k, arch in enumerate(self.sampler.paths(epoch, step)):
            with autocast:
                logits = self.net(x, arch)
                if teacher is not None and cfg.distill:
                    loss = _soft_cross_entropy(logits.float(), teacher)
                else:
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            check_finite(loss, epoch, step, self.ckpt_path, self.epoch, cfg.lr)
            loss.backward()
            total += loss.item()
            if k == 0 and cfg.strategy == "sandwich":
                teacher = logits.detach().float()
        average_gradients(self.net, self.world)
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clip_grad)
        self.optimizer.step()
        return total

    def run(self) -> dict:
        cfg, t_start = self.cfg, time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        while self.epoch < cfg.epochs:
            epoch, t0 = self.epoch, time.time()
            self.net.train()
            stats = train_epoch(self.train_loader, self._step, self.scheduler, epoch, cfg.epochs, self.device, self.rank, self.world)
            self.epoch = epoch + 1
            acc_hi = evaluate(self.net, self.sampler.largest, self.val_loader, self.calib_loader, cfg.calib_batches)
            acc_lo = evaluate(self.net, self.sampler.smallest, self.val_loader, self.calib_loader, cfg.calib_batches)
            row = {
                "epoch": self.epoch, "train_loss": stats["train_loss"], "lr": self.optimizer.param_groups[0]["lr"],
                "val_acc_largest": acc_hi, "val_acc_smallest": acc_lo, "images_per_s": stats["images_per_s"],
                "epoch_time_s": time.time() - t0,
            }
            self.history.append(row)
            self._save()
            self.log(f"epoch {self.epoch}/{cfg.epochs}: loss {row['train_loss']:.3f}, {row['images_per_s']:.0f} img/s, "
                     f"val acc largest {acc_hi:.3f}, smallest {acc_lo:.3f} ({row['epoch_time_s']:.1f}s)")
            if self.on_epoch_end is not None:
                self.on_epoch_end(self)
        return self.summary(time.time() - t_start)

    def summary(self, seconds: float) -> dict:
        last = self.history[-1] if self.history else {}
        summary = {
            "space": self.space.name, "scale": self.scale.to_dict(), "data": self.bundle.describe(), "epochs": self.epoch,
            "strategy": self.cfg.strategy, "path_dist": self.cfg.path_dist, "checkpoint": str(self.ckpt_path),
            "val_acc_largest": last.get("val_acc_largest"), "val_acc_smallest": last.get("val_acc_smallest"),
            "chance": 1.0 / self.bundle.num_classes,
            "largest_macs": arch_costs(self.sampler.largest, self.scale).macs,
            "smallest_macs": arch_costs(self.sampler.smallest, self.scale).macs,
            "largest_arch": self.sampler.largest.to_dict(), "smallest_arch": self.sampler.smallest.to_dict(),
            "wall_time_s": seconds, "torch": torch.__version__, "threads": torch.get_num_threads(),
        }
        if not self.rank:
            write_text_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
        return summary


def default_out(space: str, prefix: str = "supernet") -> str:
    return new_out_dir(prefix, space)
