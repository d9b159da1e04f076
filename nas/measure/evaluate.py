"""Accuracy of one path of the supernet with inherited weights, and of a standalone model.

BatchNorm statistics collected while training mixed paths do not fit any single path, so a path with
BatchNorm is recalibrated first: its BN layers' statistics are reset and re-estimated (cumulative
average) over a fixed number of training batches, in place, without copying the supernet; afterwards
the supernet's own statistics are put back, so evaluating never changes the supernet.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from search_spaces import Arch


def path_batchnorms(net, arch: Arch) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of the supernet modules that `net(x, arch)` runs."""
    return [m for root in net.path_modules(arch) for m in root.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


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


@torch.no_grad()
def evaluate(net, arch: Arch, loader, calib_loader=None, calib_batches: int = 20, max_batches: int | None = None) -> float:
    """Top-1 accuracy of `arch` with inherited weights on `loader`, BN recalibrated on `calib_loader`."""
    was_training = net.training
    net.eval()
    bns = path_batchnorms(net, arch) if calib_loader is not None and calib_batches > 0 else []
    saved = [(bn, {k: v.clone() for k, v in bn.state_dict().items()}, bn.momentum) for bn in bns]
    try:
        if bns:
            device = _device(net)
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative moving average over the calibration batches
                bn.train()
            for x, _ in itertools.islice(calib_loader, calib_batches):
                net(x.to(device, non_blocking=True), arch)
            for bn in bns:
                bn.eval()
        return accuracy(net, arch, loader, max_batches)
    finally:
        for bn, state, momentum in saved:
            bn.load_state_dict(state)
            bn.momentum = momentum
        net.train(was_training)
