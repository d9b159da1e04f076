"""Accuracy of one path of the supernet with inherited weights, and of a standalone model.

A path with BatchNorm is recalibrated first (supernet.calibration.recalibrated: its statistics
re-estimated on training batches, in place, and put back afterwards), so evaluating never changes the
supernet; `Supernet.extract(arch, calib=...)` recalibrates the same way, so an extracted model scores
what the search scored.
"""
from __future__ import annotations

import contextlib
import itertools

import torch
from torch import nn

from search_spaces import Arch
from supernet.calibration import recalibrated

from nas.data import ArrayData, BatchLoader


def _device(net) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def top1(forward, loader, device: torch.device, max_batches: int | None = None) -> float:
    """Top-1 accuracy of `forward(x)` (a model or a closure) over `loader`."""
    correct, total = 0, 0
    for x, y in itertools.islice(loader, max_batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (forward(x).argmax(dim=1) == y).sum().item()
        total += y.numel()
    return correct / max(total, 1)


def accuracy(net, arch: Arch, loader, max_batches: int | None = None) -> float:
    return top1(lambda x: net(x, arch), loader, _device(net), max_batches)


def model_accuracy(model: nn.Module, loader, max_batches: int | None = None) -> float:
    """Top-1 accuracy of a standalone model in eval mode; its train/eval mode is put back afterwards."""
    was_training = model.training
    model.eval()
    try:
        return top1(model, loader, _device(model), max_batches)
    finally:
        model.train(was_training)


CALIBRATION_BATCH = 32
CALIBRATION_IMAGES = 64 * CALIBRATION_BATCH  # the pool calibration batches are taken from, in a fixed order


class CalibrationBatches:
    """The batches BatchNorm is recalibrated on: training images under the evaluation transform (no crop, flip or
    RandAugment), a fixed seeded subset in a fixed order, so every evaluation that asks for k batches gets the same
    k batches, the first time read from the data and afterwards replayed from memory.

    Two evaluations of one architecture are therefore paired: the search's trials, the supernet trainer's
    validation, the audit and `Supernet.extract(calib=...)` recalibrate on identical batches, whatever the data
    kind (a shuffling DataLoader drew new batches, under training augmentation, at every evaluation)."""

    def __init__(self, bundle, seed: int):
        data = bundle.train_eval if bundle.train_eval is not None else bundle.train
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:CALIBRATION_IMAGES]
        if isinstance(data, ArrayData):
            self._loader = BatchLoader(data.subset(order), CALIBRATION_BATCH, bundle.mean, bundle.std, train=False)
        else:
            self._loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, order.tolist()), batch_size=CALIBRATION_BATCH,
                                                       shuffle=False)
        self._batches: list = []
        self._source = None

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self):
        k = 0
        while True:
            if k == len(self._batches):
                if self._source is None:
                    self._source = iter(self._loader)
                try:
                    self._batches.append(next(self._source))
                except StopIteration:
                    return
            yield self._batches[k]
            k += 1


def calibration_loader(bundle) -> CalibrationBatches:
    """The fixed calibration batches of the bundle's training split (CalibrationBatches): the same for the supernet
    trainer's validation, the search's trials, `retrain --init supernet` and the audit, given the same data and split."""
    return CalibrationBatches(bundle, seed=bundle.info.get("split_seed", 0) + 7)


@torch.no_grad()
def evaluate(net, arch: Arch, loader, calib_loader=None, calib_batches: int = 20, max_batches: int | None = None) -> float:
    """Top-1 accuracy of `arch` with inherited weights on `loader`, BN recalibrated on the first
    `calib_batches` batches of `calib_loader` (supernet.calibration)."""
    was_training = net.training
    net.eval()
    calibrate = calib_loader is not None and calib_batches > 0
    try:
        with recalibrated(net, arch, itertools.islice(calib_loader, calib_batches)) if calibrate else contextlib.nullcontext():
            return accuracy(net, arch, loader, max_batches)
    finally:
        net.train(was_training)
