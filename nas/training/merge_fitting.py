"""Merge fitting: the supernet's last epochs (`--merge-fit-epochs`, after `--epochs`) train only the merge operators
the largest path does not run, everything else frozen.

Why. The stages behind a boundary are trained mostly behind the largest path's merge (spm in psvit_ext), and block-wise
alignment pulls the other operators towards its output in mean squared error, which they do not reach (relative error
0.4-0.9 at the default's end); a path that swaps them in loses up to half of its accuracy above chance. Fitted in
function space instead, on the finished stages, they learn to hand those stages what they read: on the main
command's supernet three epochs of this cut the worst merge swap from 51% to 16% and raised the proposals' median
(docs/benchmarks.md, "Merge fitting"; fitted to SPM's output in MSE, the swaps got worse).

What a step trains on, with the sandwich's student loss (the largest path's predictions as the teacher, mixed with the
labels): on even steps the smallest path and the largest and smallest paths with each fitted operator in every
boundary that offers it; on odd steps `RANDOM_PATHS` paths drawn choice by choice, as the search proposes. Batch
statistics as in training (evaluation recalibrates them per path). The draw depends on (seed, epoch, step) only, so a
resumed run and every data-parallel worker fit on the same paths.
"""
from __future__ import annotations

import dataclasses
import random

import torch

from search_spaces import Arch

from nas.errors import UserError
from nas.training.base import average_gradients

RANDOM_PATHS = 4


def fitted_merges(net, largest: Arch) -> list[torch.nn.Module]:
    """The merge modules the largest path does not run, boundary by boundary."""
    return [merge for i, stage in enumerate(net.stages) if stage.downsample is not None
            for op, merge in stage.downsample.items() if op != largest.merges[i - 1]]


def swapped(arch: Arch, op: str, allowed: tuple[tuple[str, ...], ...]) -> Arch:
    """`arch` with `op` at every boundary that offers it."""
    return dataclasses.replace(arch, merges=tuple(op if op in ops else m for m, ops in zip(arch.merges, allowed)))


def fit_paths(space, largest: Arch, smallest: Arch, seed: int, epoch: int, step: int) -> list[Arch]:
    """The paths of one fitting step (see the module's docstring); never the largest path itself (nothing of it is
    fitted)."""
    if step % 2:
        rng = random.Random(f"{seed}:{epoch}:{step}:merge-fit")
        return [space.sample_by_choice(rng) for _ in range(RANDOM_PATHS)]
    ops = sorted({op for i, ops in enumerate(space.merges) for op in ops if op != largest.merges[i]})
    paths = {smallest.key(): smallest}
    for base in (largest, smallest):
        for op in ops:
            arch = swapped(base, op, space.merges)
            paths.setdefault(arch.key(), arch)
    paths.pop(largest.key(), None)
    return list(paths.values())


def check_resumable(ckpt: dict, epochs: int, path) -> None:
    """A checkpoint whose merges were fitted to the stages of N training epochs continues with N (more fitting is fine);
    more training epochs would change the stages under merges fitted to them."""
    trained = ckpt.get("config", {}).get("epochs", epochs)
    if int(ckpt["epoch"]) > trained != epochs:
        raise UserError(f"cannot resume {path}: its merges were fitted after {trained} training epochs, so --epochs must "
                        f"stay {trained} (got {epochs}); start a new run for more epochs")


class MergeFitter:
    """AdamW (constant rate) over the fitted merges' parameters; `step` is one fitting update."""

    def __init__(self, net, space, largest: Arch, smallest: Arch, cfg):
        self.net, self.space, self.largest, self.smallest, self.cfg = net, space, largest, smallest, cfg
        self.params = [p for merge in fitted_merges(net, largest) for p in merge.parameters()]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay) if self.params else None

    def step(self, x, y, paths: list[Arch], epoch: int, step: int, loss_fn, trainer) -> float:
        """One update on `paths` (fit_paths): the teacher's logits without gradient, then each path's loss (`loss_fn(logits, teacher, y)`,
        guarded by the trainer's NaN check); only the fitted parameters get gradients, averaged across the trainer's
        workers and clipped as the training's are."""
        self.net.zero_grad(set_to_none=True)
        with torch.no_grad(), trainer._autocast():
            teacher = self.net(x, self.largest).float()
        total = 0.0
        for arch in paths:
            with trainer._autocast():
                loss = loss_fn(self.net(x, arch).float(), teacher, y)
            trainer._check_finite(loss, epoch, step)
            loss.backward(inputs=self.params)  # the frozen weights' gradients are never formed
            total += loss.item()
        average_gradients(self.net, trainer.world)
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad)
        self.optimizer.step()
        return total
