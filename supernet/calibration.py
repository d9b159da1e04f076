"""BatchNorm recalibration of one path of the supernet, and of a standalone model.

Statistics collected while training mixed paths fit no single path, so before a path is scored (or
extracted) the BatchNorm layers it runs are reset and re-estimated, as a cumulative average, on a few
training batches: in place, without copying the supernet, and put back afterwards. A standalone model
is recalibrated the same way when it is to be scored alike (the audit's ground truth).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from search_spaces import Arch


def path_batchnorms(net, arch: Arch) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of the supernet modules that `net(x, arch)` runs."""
    return [m for root in net.path_modules(arch) for m in root.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def recalibrated(net, arch: Arch, batches):
    """Inside the block, the BatchNorm statistics of `arch`'s path are those of `batches` (an iterable of
    input tensors or (input, label) pairs); on leaving it the supernet's own statistics are back."""
    with _recalibrated(net, path_batchnorms(net, arch), lambda x: net(x, arch), batches):
        yield net


@contextmanager
def recalibrated_model(model: nn.Module, batches):
    """The same for every BatchNorm layer of a standalone model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with _recalibrated(model, bns, model, batches):
        yield model


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@contextmanager
def _recalibrated(net, bns, forward, batches):
    saved = [(bn, {k: v.clone() for k, v in bn.state_dict().items()}, bn.momentum, bn.training) for bn in bns]
    try:
        if bns:
            device = next(net.parameters()).device
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative moving average over the calibration batches
                bn.train()
            with torch.no_grad():
                for batch in batches:
                    x = batch[0] if isinstance(batch, (tuple, list)) else batch
                    forward(x.to(device, non_blocking=True))
            for bn in bns:
                bn.eval()
        yield
    finally:
        for bn, state, momentum, training in saved:
            bn.load_state_dict(state)
            bn.momentum = momentum
            bn.train(training)
