"""Training on Ray: data parallel on several workers (GPUs or machines) through Ray Train, and
several retrains at once as Ray tasks.

Data parallel (a supernet, or one retrain with --num-workers): each worker runs the same trainer; Ray
Train's TorchTrainer sets up torch.distributed, the trainer shards every batch by rank and averages
gradients (a supernet's sampled paths are identical on all workers). Rank 0 writes the checkpoint, the
log and the summary or metrics into the run folder, which must be visible to all workers (one machine,
or a shared file system on a cluster).
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from nas.cluster import start_ray
from nas.errors import RunFailed
from nas.training.recipes import RetrainConfig
from nas.training.retrainer import METRICS, Retrainer
from nas.training.supernet_trainer import SUMMARY, TrainConfig, Trainer


def worker_device(device: str) -> str:
    """A Ray Train worker's own GPU (Ray shows every GPU of a node to each of its workers), else `device`."""
    if device != "cpu" and torch.cuda.is_available():
        import ray.train.torch

        return str(ray.train.torch.get_device())
    return device


def _supernet_worker(config: dict) -> None:
    """One Ray Train worker of a data-parallel supernet training."""
    import ray.train

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
    fit_with_ray_train(_supernet_worker, asdict(cfg), out, "train_supernet", num_workers, use_gpu, address)
    return json.loads((out / SUMMARY).read_text())


def _absolute(cfg: RetrainConfig) -> RetrainConfig:
    """Paths that Ray workers (another working directory, maybe another machine) can open."""
    data = cfg.data
    for prefix in ("npz:", "folder:"):
        if data.startswith(prefix):
            data = prefix + str(Path(data[len(prefix):]).resolve())
    return replace(cfg, out=str(Path(cfg.out).resolve()), data=data,
                   supernet=str(Path(cfg.supernet).resolve()) if cfg.supernet else None,
                   space_file=str(Path(cfg.space_file).resolve()) if cfg.space_file else None)


def _quiet(*_args) -> None:
    pass


def _retrain_task(config: dict, threads: int) -> dict:
    """One retrain in a Ray task (--parallel)."""
    if threads:
        torch.set_num_threads(threads)
    return Retrainer(RetrainConfig(**config), log=_quiet).run()


def _retrain_worker(config: dict) -> None:
    """One Ray Train worker of a data-parallel retrain (--num-workers)."""
    import ray.train

    config = {**config, "device": worker_device(config["device"])}
    result = Retrainer(RetrainConfig(**config), log=print if ray.train.get_context().get_world_rank() == 0 else _quiet).run()
    ray.train.report({"val_acc": result["val_acc"], "test_acc": result["test_acc"]})


def retrain_in_parallel(cfgs: list[RetrainConfig], cpus_per_trial: float, gpus_per_trial: float, address: str | None) -> list[dict]:
    """Each architecture as a Ray task on `cpus_per_trial` CPUs and `gpus_per_trial` GPUs; results in input order."""
    ray = start_ray(address)
    task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(_retrain_task)
    refs = [task.remote(asdict(_absolute(cfg)), max(1, int(cpus_per_trial))) for cfg in cfgs]
    where = {ref: cfg.out for ref, cfg in zip(refs, cfgs)}
    pending, results = list(refs), {}
    print(f"retraining {len(cfgs)} architectures in parallel on Ray ({cpus_per_trial:g} CPUs, {gpus_per_trial:g} GPUs each); "
          f"progress in <folder>/train_log.csv", flush=True)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            results[done[0]] = ray.get(done[0])
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else e
            raise RunFailed(f"retraining {where[done[0]]} failed: {str(cause).splitlines()[0][:300]}") from None
        print(f"finished {where[done[0]]}: val acc {results[done[0]]['val_acc']:.3f}", flush=True)
    return [results[ref] for ref in refs]


def retrain_with_ray_train(cfg: RetrainConfig, num_workers: int, use_gpu: bool, address: str | None) -> dict:
    cfg = _absolute(replace(cfg, device="auto" if use_gpu else "cpu"))
    fit_with_ray_train(_retrain_worker, asdict(cfg), Path(cfg.out), "retrain", num_workers, use_gpu, address)
    return json.loads((Path(cfg.out) / METRICS).read_text())
