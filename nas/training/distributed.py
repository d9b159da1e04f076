"""Data-parallel training on several workers (GPUs or machines) through Ray Train.

Supernet: each worker runs the same Trainer; Ray Train's TorchTrainer sets up torch.distributed, the Trainer
shards every batch by rank and averages gradients (the sampled paths are identical on all workers).
Rank 0 writes the checkpoint, the log and the summary into the run folder, which must be visible to
all workers (one machine, or a shared file system on a cluster).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from nas.cluster import start_ray
from nas.training.supernet_trainer import SUMMARY, TrainConfig


def worker_device(device: str) -> str:
    """A Ray Train worker's own GPU (Ray shows every GPU of a node to each of its workers), else `device`."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        import ray.train.torch

        return str(ray.train.torch.get_device())
    return device


def _worker_loop(config: dict) -> None:
    import ray.train

    from nas.training.supernet_trainer import Trainer

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
