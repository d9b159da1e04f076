"""Supernet training: path sampling, AdamW + cosine with warm-up (timm), in-place distillation,
atomic per-epoch checkpoints with resume, a NaN guard, progress and a CSV log.

Distributed: every worker draws the same paths for a step (the draw depends on seed, epoch and step),
so after the backward passes the gradients of exactly the same parameters exist everywhere and are
averaged with one all-reduce per tensor; no DistributedDataParallel bookkeeping of unused parameters.
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from search_spaces import Arch, Scale, get_space
from search_spaces.vocabulary import reuses_attention
from search_spaces.atomic import write_text_atomic
from supernet.blocks.attention import formed

from nas.data import DataBundle, load_data
from nas.errors import RunFailed, UserError
from nas.measure.costs import arch_costs
from nas.measure.evaluate import calibration_loader, evaluate
from nas.training.base import MAX_EPOCHS, TrainerBase, check_common_settings, new_out_dir
from nas.training.merge_fitting import MergeFitter, check_resumable, fit_paths, fitted_merges
from nas.training.sampling import DISTRIBUTIONS, STRATEGIES, TEACHER_STRATEGIES, PathSampler

CHECKPOINT = "supernet.pt"
SUMMARY = "train_summary.json"


@dataclass
class TrainConfig:
    space: str = "psvit_ext"
    data: str = "digits"
    scale: str = "proxy"
    epochs: int = 6  # the most that train within issue 3's 5 minutes on 2 cores with --align-batch 0.5 (docs/benchmarks.md)
    batch_size: int = 32
    lr: float = 1e-3  # 5e-4 until 2026-12-07: +0.21 on the digits proposals, +0.02 at cifar10_12k's audit scale (docs/benchmarks.md)
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    min_lr: float = 1e-5
    strategy: str = "sandwich"
    path_dist: str = "choice"
    num_random: int = 1
    distill: bool = True
    student_labels: float = 0.5  # teacher strategies: a student's loss is this much cross-entropy on the labels, the rest distillation
    label_smoothing: float = 0.1
    clip_grad: float = 1.0
    align: str = "blocks"  # block-wise distillation of the modules the teacher did not run: none, merges, blocks, stages (bench/transfer.py)
    align_weight: float = 5.0
    align_types: int = 1  # other block types per layer aligned a step, drawn each step (0: all): a step 1.26x a sandwich step, not 1.57x
    align_batch: float = 0.5  # share of each batch (its first images) the alignment runs on: half ties the whole batch (docs/benchmarks.md)
    align_paths: str = "teacher"  # whose merge inputs the merges are aligned on: the teacher's, or every path's ("all")
    merge_lr_scale: float = 1.0  # the learning rate's multiple for the merges the largest path does not run (4: +0.05 on digits)
    merge_fit_epochs: int = 0  # epochs after `epochs` fitting only those merges (nas.training.merge_fitting); nas.search's default 3
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
        check_common_settings(self)
        if not 0.0 <= self.student_labels <= 1.0:
            raise UserError(f"--student-labels must be between 0 and 1 (the labels' share of a student's loss), got {self.student_labels}")
        if self.align not in ALIGN:
            raise UserError(f"--align {self.align!r} is not known; allowed: {', '.join(ALIGN)}")
        if not 0 <= self.align_weight <= 1e3:
            raise UserError(f"--align-weight must be between 0 and 1000, got {self.align_weight}")
        if self.align_paths not in ALIGN_PATHS:
            raise UserError(f"--align-paths {self.align_paths!r} is not known; allowed: {', '.join(ALIGN_PATHS)}")
        if not 0.0 < self.align_batch <= 1.0:
            raise UserError(f"--align-batch must be in (0, 1] (the share of a batch the alignment runs on), got {self.align_batch}")
        if not 0 < self.merge_lr_scale <= 100:
            raise UserError(f"--merge-lr-scale must be above 0 and at most 100 (a multiple of --lr), got {self.merge_lr_scale}")
        if not 0 <= self.merge_fit_epochs <= MAX_EPOCHS:
            raise UserError(f"--merge-fit-epochs must be between 0 and {MAX_EPOCHS:,}, got {self.merge_fit_epochs}")
        if self.align_types < 0:
            raise UserError(f"--align-types must be at least 0 (0: every other block type at a layer), got {self.align_types}")
        if self.num_random < 0 or self.calib_batches < 0:
            raise UserError(f"--num-random and the calibration batches must be at least 0, got {self.num_random}, {self.calib_batches}")


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


def student_loss(logits, teacher_logits, y, label_weight: float, label_smoothing: float):
    """In-place distillation from the teacher's predictions, mixed with `label_weight` of cross-entropy on the labels:
    with distillation alone, the paths other than the teacher never learn from a label."""
    loss = _soft_cross_entropy(logits, teacher_logits)
    if label_weight > 0:
        loss = (1 - label_weight) * loss + label_weight * F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    return loss


ALIGN = ("none", "merges", "blocks", "stages")
ALIGN_PATHS = ("teacher", "all")


def mean_term(terms: list, trace: list):
    """The mean of an alignment's loss terms; zero on the trace's device when there are none."""
    return torch.stack(terms).mean() if terms else torch.zeros((), device=trace[0][3].device)


def alignment_loss(net, arch, trace: list, align: str, rng: random.Random, types_per_layer: int | None = None,
                   images: int | None = None):
    """Block-wise distillation from the teacher's path (`trace`: what its merges and blocks took and gave): every other
    merge operator at a boundary ("merges"), and every other block type at a layer ("blocks": merges too; a random
    legal layer of that type), given the teacher's input, is pulled towards the teacher's output (mean squared error
    relative to the mean square of the teacher's output, for a block of its residual branch; inputs and targets detached). A stage is then fed alike whichever merge
    an architecture has, and a layer's types are interchangeable: what architectures mixing them inherit. With
    `images`, on the batch's first `images` images only (the cost of the alignment is proportional to them)."""
    space, terms = net.space, []
    for i, kind, j, x, y, attn in trace:
        x, y = x[:images].detach(), y[:images].detach()
        # a block: against the size of its residual branch, which may start near zero (bounded by 1% of the output's)
        scale = (y if kind == "merge" else y - x).float().pow(2).mean() + 0.01 * y.float().pow(2).mean() + 1e-6
        stage = net.stages[i]
        if kind == "merge":
            outs = [stage.downsample[op](x) for op in space.merges[i - 1] if op != arch.merges[i - 1]]
        elif align in ("blocks", "stages"):
            slot, rule = stage.blocks[j], space.stages[i]
            others = [b for b in slot if b != arch.stages[i][j].block and not (reuses_attention(b) and attn is None)]
            outs = []
            for block in (others if types_per_layer is None else rng.sample(others, min(types_per_layer, len(others)))):
                layer = rng.choice([o for o in rule.options() if o.block == block])
                handed = formed(attn)[:images].detach() if reuses_attention(block) else None  # formed only where read
                outs.append(slot[block](x, handed, layer)[0])
        else:
            continue
        terms += [F.mse_loss(out.float(), y.float()) / scale for out in outs]
    loss = mean_term(terms, trace)
    if align == "stages":
        loss = loss + stage_swap_loss(net, arch, trace, rng)
    return loss


def student_merge_loss(net, teacher: Arch, trace: list):
    """On a student's path, every merge operator at a boundary, given the student's input there, pulled towards what
    the teacher's operator makes of that input (relative mean squared error; input and target detached). The teacher's
    trace aligns the merges on the largest path's features only; a smaller path's stages feed its merges other ones."""
    terms = []
    for i, kind, _, x, _, _ in trace:
        if kind != "merge":
            continue
        x, ops = x.detach(), net.stages[i].downsample
        with torch.no_grad():
            y = ops[teacher.merges[i - 1]](x).float()
        scale = y.pow(2).mean() + 1e-6
        terms += [F.mse_loss(ops[op](x).float(), y) / scale for op in ops if op != teacher.merges[i - 1]]
    return mean_term(terms, trace)


def stage_swap_loss(net, arch, trace: list, rng: random.Random):
    """Each stage after a boundary run end to end behind another merge operator (one drawn per boundary), from the
    teacher's input to that stage, pulled towards the teacher's output of the stage (mean squared error relative to
    its mean square; input and target detached): the merge and the stage's blocks learn together to hand the next
    stage what the teacher's merge leads to, whichever merge an architecture has."""
    space, terms, inputs, outputs = net.space, [], {}, {}
    for i, kind, j, x, y, attn in trace:
        if kind == "merge":
            inputs[i] = x.detach()
        outputs[i] = y.detach()  # the last entry of stage i is its output
    for i, x in inputs.items():
        others = [op for op in space.merges[i - 1] if op != arch.merges[i - 1]]
        if others:
            out, y = net.stages[i](x, arch.stages[i], rng.choice(others)).float(), outputs[i].float()
            terms.append(F.mse_loss(out, y) / (y.pow(2).mean() + 1e-6))
    return mean_term(terms, trace)


class Trainer(TrainerBase):
    """One supernet training run; `run()` trains to cfg.epochs, resuming from out/supernet.pt if asked."""

    checkpoint_file, label = CHECKPOINT, "supernet"

    def __init__(self, cfg: TrainConfig, bundle: DataBundle | None = None, log=print, on_epoch_end=None):
        from supernet import Supernet

        self._setup(cfg, log, on_epoch_end)
        self.space = get_space(cfg.space)
        self.bundle = bundle or load_data(cfg.data, img_size=data_img_size(cfg), seed=cfg.seed, val_fraction=cfg.val_fraction,
                                          batch_size=cfg.batch_size)
        self.scale = resolve_scale(cfg, self.bundle)
        resume_state = self._resume_state()
        torch.manual_seed(cfg.seed)
        self.model = self._on_device(Supernet(self.space, self.scale))
        self.calib_loader = calibration_loader(self.bundle)
        self.sampler = PathSampler(self.space, self.scale, cfg.strategy, seed=cfg.seed, num_random=cfg.num_random, dist=cfg.path_dist,
                                   epochs=cfg.epochs)
        self.fitter = MergeFitter(self.model, self.space, self.sampler.largest, self.sampler.smallest, cfg)
        self._start_training(resume_state)

    @property
    def net(self):
        """The supernet (the model TrainerBase trains)."""
        return self.model

    @property
    def planned_epochs(self) -> int:
        """cfg.epochs, then cfg.merge_fit_epochs where the space has merges the largest path does not run."""
        return self.cfg.epochs + (self.cfg.merge_fit_epochs if self.fitter.params else 0)

    def _epoch_label(self, epoch: int) -> str:
        if epoch < self.cfg.epochs:
            return f"epoch {epoch + 1}/{self.cfg.epochs}"
        return f"merge fit {epoch + 1 - self.cfg.epochs}/{self.cfg.merge_fit_epochs}"

    def _fit_step(self, x, y, epoch: int, step: int) -> float:
        paths = fit_paths(self.space, self.sampler.largest, self.sampler.smallest, self.cfg.seed, epoch, step)
        self.path_hash.update(("merge-fit" + "".join(a.key() for a in paths)).encode())
        loss_fn = functools.partial(student_loss, label_weight=self.cfg.student_labels, label_smoothing=self.cfg.label_smoothing)
        return self.fitter.step(x, y, paths, epoch, step, loss_fn, self)

    def _step(self, x, y, epoch: int, step: int) -> float:
        cfg = self.cfg
        if epoch >= cfg.epochs:
            return self._fit_step(x, y, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        teacher, total = None, 0.0
        paths = self.sampler.paths(epoch, step)
        self.path_hash.update("".join(a.key() for a in paths).encode())
        for k, arch in enumerate(paths):
            aligning = cfg.align != "none" and cfg.strategy in TEACHER_STRATEGIES
            trace = [] if aligning and (k == 0 or cfg.align_paths == "all") else None  # the teacher's path, or every path's
            with self._autocast():
                logits = self.model(x, arch, trace)
                if teacher is not None and cfg.distill:
                    loss = student_loss(logits.float(), teacher, y, cfg.student_labels, cfg.label_smoothing)
                else:
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                if trace and k:
                    loss = loss + cfg.align_weight * student_merge_loss(self.model, paths[0], trace)
                elif trace:
                    loss = loss + cfg.align_weight * alignment_loss(self.model, arch, trace, cfg.align,
                                                                    random.Random(f"{cfg.seed}:{epoch}:{step}:align"),
                                                                    cfg.align_types or None, max(1, round(cfg.align_batch * len(x))))
            self._check_finite(loss, epoch, step)
            loss.backward()
            total += loss.item()
            if k == 0 and cfg.strategy in TEACHER_STRATEGIES:
                teacher = logits.detach().float()
        self._apply_gradients()
        return total

    def _start_epoch(self, epoch: int) -> None:
        self.path_hash = hashlib.sha256()

    def _lr_scales(self) -> dict[int, float]:
        """The merges the largest path does not run learn at cfg.merge_lr_scale times the rate: they are trained only
        when a smaller path draws them and by the alignment towards the largest path's merge, and the stages behind
        them read what they make."""
        if self.cfg.merge_lr_scale == 1.0:
            return {}
        return {id(p): self.cfg.merge_lr_scale for merge in fitted_merges(self.model, self.sampler.largest) for p in merge.parameters()}

    def _extra_state(self) -> dict:
        fitting = self.fitter.optimizer is not None and self.epoch > self.cfg.epochs
        return {"sampler": self.sampler.state_dict(), **({"merge_fit_optimizer": self.fitter.optimizer.state_dict()} if fitting else {})}

    def _restore_extra(self, ckpt: dict) -> None:
        check_resumable(ckpt, self.cfg.epochs, self.ckpt_path)
        self.sampler.load_state_dict(ckpt.get("sampler", {}))
        if "merge_fit_optimizer" in ckpt and self.fitter.optimizer is not None:
            self.fitter.optimizer.load_state_dict(ckpt["merge_fit_optimizer"])

    def _agreed_paths(self) -> str:
        """The digest of the epoch's paths, checked to be the same on every worker: their gradients are
        averaged parameter by parameter, which is only right when all of them ran the same paths."""
        digest = self.path_hash.hexdigest()[:16]
        if self.world > 1:
            digests = [None] * self.world
            torch.distributed.all_gather_object(digests, digest)
            if len(set(digests)) > 1:
                raise RunFailed(f"epoch {self.epoch}: the workers trained different paths (digests {', '.join(digests)}); "
                                "every worker must draw the same paths from (seed, epoch, step)")
        return digest

    def _validate(self) -> dict:
        cfg = self.cfg
        return {"world": self.world, "paths_sha256": self._agreed_paths(),
                "val_acc_largest": evaluate(self.model, self.sampler.largest, self.val_loader, self.calib_loader, cfg.calib_batches),
                "val_acc_smallest": evaluate(self.model, self.sampler.smallest, self.val_loader, self.calib_loader, cfg.calib_batches)}

    def _describe_validation(self, row: dict) -> str:
        return f"val acc largest {row['val_acc_largest']:.3f}, smallest {row['val_acc_smallest']:.3f}"

    def finish(self) -> dict:
        return self.summary(time.time() - self.t_run)

    def summary(self, seconds: float) -> dict:
        last = self.history[-1] if self.history else {}
        summary = {
            "space": self.space.name, "scale": self.scale.to_dict(), "data": self.bundle.describe(),
            "epochs": min(self.epoch, self.cfg.epochs), "merge_fit_epochs": max(0, self.epoch - self.cfg.epochs),
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
