"""Data-parallel training on several workers (GPUs or machines) through Ray Train, and the private
Ray instance that the search and retrain start.

Supernet: each worker runs the same Trainer; Ray Train's TorchTrainer sets up torch.distributed, the Trainer
shards every batch by rank and averages gradients (the sampled paths are identical on all workers).
Rank 0 writes the checkpoint, the log and the summary into the run folder, which must be visible to
all workers (one machine, or a shared file system on a cluster).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .cli import UserError
from .train import SUMMARY, TrainConfig


def check_address(address: str) -> None:
    """Fail fast on an explicit host:port nobody listens on (ray.init would retry for minutes)."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as e:
        raise UserError(f"--address {address}: cannot reach a Ray cluster there ({e.strerror or e})") from None


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """Join the cluster at `address` or start a private Ray instance on localhost, dashboard off."""
    import ray

    if ray.is_initialized():
        return ray
    if address:
        check_address(address)
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"--address {address}: cannot reach a Ray cluster there ({str(e).splitlines()[0][:120]})") from None
    return ray


def worker_device(device: str) -> str:
    """A Ray Train worker's own GPU (Ray shows every GPU of a node to each of its workers), else `device`."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        import ray.train.torch

        return str(ray.train.torch.get_device())
    return device


def _worker_loop(config: dict) -> None:
    import ray.train

    from .train import Trainer

    summary = Trainer(TrainConfig(**{**config, "device": worker_device(config["device"])})).run()
    ray.train.report({"val_acc_largest": summary["val_acc_largest"], "val_acc_smallest": summary["val_acc_smallest"]})


def fit_with_ray_train(worker_loop, config: dict, out: Path, name: str, num_workers: int, use_gpu: bool,
                       address: str | None = None) -> None:
    """Run `worker_loop(config)` on `num_workers` Ray Train workers with torch.distributed set up;
    Ray's own records go to <out>/ray."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    start_ray(address)
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=str(Path(out).resolve() / "ray"), name=name),
    )
    trainer.fit()


def train_with_ray(cfg: TrainConfig, num_workers: int, use_gpu: bool, address: str | None = None) -> dict:
    out = Path(cfg.out).resolve()
    cfg = TrainConfig(**{**asdict(cfg), "out": str(out), "device": "auto" if use_gpu else "cpu"})
    fit_with_ray_train(_worker_loop, asdict(cfg), out, "train_supernet", num_workers, use_gpu, address)
    return json.loads((out / SUMMARY).read_text())
