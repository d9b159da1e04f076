"""Where a search runs: the devices of its supernet training, trials and latency, said in its first line
and recorded in config.json; and how many trials share a GPU when the user does not say.

Where CUDA is visible and --gpus-per-trial is not given, trials run on the GPU, as many at once as its
free memory holds: one evaluation of the largest path (a validation batch, BatchNorm calibration
included) is run on the GPU to measure a trial's peak memory, plus the CUDA context every Ray worker
process holds. On a cluster (--address) the GPUs are not visible from the driver: a trial then takes a
quarter of one, when the cluster has any.
"""
from __future__ import annotations

import itertools

import torch

from nas.measure.device import describe, resolve_device, trials_per_gpu
from nas.runs import SearchSettings

CUDA_CONTEXT_BYTES = 512 << 20  # what a worker process's CUDA context takes besides its tensors (measured: 0.3-0.5 GiB)
CLUSTER_GPU_SHARE = 0.25


def devices_line(settings: SearchSettings) -> str:
    """The search's first line: which devices its supernet training, trials and latency use."""
    if settings.evaluator != "supernet":
        latency = f"; latency from its column lat_{settings.device}" if settings.uses_latency else ""
        return f"devices: none trained or measured: costs and scores from {settings.evaluator}; trials on cpu{latency}"
    train = "given (--supernet)" if settings.supernet else describe(resolve_device("auto"))
    if settings.address:
        trials = f"the cluster at {settings.address} ({_share(settings.gpus_per_trial)})"
    elif settings.gpus_per_trial is None and torch.cuda.is_available():
        trials = f"{describe(torch.device('cuda'))}, several per GPU (chosen from its free memory once the supernet is ready)"
    elif settings.gpus_per_trial:
        trials = f"{describe(torch.device('cuda'))}, {settings.gpus_per_trial:g} GPU each"
    else:
        trials = f"cpu, {settings.cpus_per_trial:g} CPU each"
    latency = f"; latency on {describe(resolve_device(settings.device))}" if settings.uses_latency else ""
    return f"devices: supernet training on {train}; trials on {trials}{latency}"


def _share(gpus: float | None) -> str:
    return "GPU share chosen from its resources" if gpus is None else f"{gpus:g} GPU and CPUs as given per trial" if gpus else "CPUs only"


def trial_peak_bytes(supernet_state: dict, space, bundle, device: torch.device, calib_batches: int) -> int:
    """The peak GPU memory of one trial: the supernet moved to the GPU and its largest path evaluated on a
    validation batch after BatchNorm calibration, plus a worker's CUDA context."""
    from search_spaces import Scale
    from supernet import Supernet

    from nas.data import make_loader
    from nas.measure.costs import extreme_arch
    from nas.measure.evaluate import calibration_loader, evaluate

    scale = Scale.from_dict(supernet_state["scale"])
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    net = Supernet(space, scale)
    net.load_state_dict(supernet_state["model"])
    net = net.to(device).eval()
    evaluate(net, extreme_arch(space, scale, largest=True), make_loader(bundle, "val", 256),
             itertools.islice(calibration_loader(bundle), max(1, calib_batches)), calib_batches=max(1, calib_batches), max_batches=1)
    peak = torch.cuda.max_memory_allocated(device) - before
    del net
    torch.cuda.empty_cache()
    return int(peak + CUDA_CONTEXT_BYTES)


def plan_trial_devices(settings: SearchSettings, supernet_state: dict, bundle, cluster_gpus: float, log=print) -> dict:
    """The GPU share of a trial, and what was decided, as config.json records it under "devices"."""
    from search_spaces import get_space

    plan = {"gpus_per_trial": settings.gpus_per_trial, "given": settings.gpus_per_trial is not None}
    if settings.gpus_per_trial is not None:
        pass
    elif settings.address:
        plan["gpus_per_trial"] = CLUSTER_GPU_SHARE if cluster_gpus > 0 else 0.0
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        peak = trial_peak_bytes(supernet_state, get_space(settings.space), bundle, device, settings.calib_batches)
        free, total = torch.cuda.mem_get_info(device)
        k = trials_per_gpu(free, peak)
        plan.update(gpus_per_trial=1.0 / k, trials_per_gpu=k, free_bytes=int(free), total_bytes=int(total), trial_peak_bytes=peak,
                    device=describe(device))
        log(f"trials: {k} per GPU on {describe(device)} ({free / 2**30:.1f} GiB free, a trial's peak {peak / 2**30:.2f} GiB measured)")
    else:
        plan["gpus_per_trial"] = 0.0
    plan["trials_on"] = "gpu" if plan["gpus_per_trial"] else "cpu"
    return plan
