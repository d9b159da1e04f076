"""The ground truth of an audit: each architecture trained alone from scratch, with one recipe for all.

Every training has its own folder, named by architecture, seed and epochs, holding the retrainer's
per-epoch checkpoint and, once finished, its metrics.json: a killed audit keeps every finished
training and resumes the one it was in. The folders may be shared by audits of several runs on the
same data (`--standalone-dir`), so that supernets are compared on one ground truth.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nas.data import same_data
from nas.errors import UserError
from nas.training.recipes import RetrainConfig, resolve_recipe
from nas.training.retrainer import CHECKPOINT, METRICS, Retrainer

RECIPE = "quick"
SAME = ("space", "arch", "data", "split_seed", "val_fraction", "seed", "custom_scale", "epochs", "recipe", "batch_size", "lr")


@dataclass(frozen=True)
class Training:
    arch_id: str
    seed: int
    cfg: RetrainConfig

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def finished(self) -> dict | None:
        """Its metrics when it was trained to the end before (with this very recipe), else None."""
        path = self.out / METRICS
        if not path.is_file():
            return None
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        mine = json.loads(json.dumps(asdict(self.cfg)))  # as metrics.json holds it (tuples as lists)
        theirs = {"space": metrics.get("space"), "arch": metrics.get("arch"), "data": metrics.get("data", {}).get("spec"),
                  "seed": metrics.get("seed"), "epochs": metrics.get("epochs"), "recipe": metrics.get("recipe", {}).get("name"),
                  "batch_size": metrics.get("recipe", {}).get("batch_size"), "lr": metrics.get("recipe", {}).get("lr"),
                  "custom_scale": metrics.get("scale"), "split_seed": metrics.get("split_seed", mine["split_seed"]),
                  "val_fraction": metrics.get("data", {}).get("val_fraction", mine["val_fraction"])}
        if isinstance(theirs["data"], str) and same_data(theirs["data"], mine["data"]):
            theirs["data"] = mine["data"]
        differ = [k for k in SAME if theirs[k] != mine[k]]
        if differ:
            raise UserError(f"{self.out}: a standalone training with another {', '.join(differ)} is there; "
                            "give the audit its own --standalone-dir")
        return metrics


def plan_trainings(archs, *, space: str, data: str, split: tuple[int, float], scale: dict, epochs: int, seeds: dict[str, int],
                   root: Path, device: str, space_file: str | None) -> list[Training]:
    """One Training per (architecture, seed): `seeds` maps arch_id to the number of seeds it is trained with."""
    knobs = resolve_recipe(RECIPE, {"epochs": epochs})
    trainings = []
    for _, row in archs.iterrows():
        for seed in range(seeds[row["arch_id"]]):
            out = root / f"{row['arch_id']}-seed{seed}-e{epochs}"
            cfg = RetrainConfig(space=space, arch=json.loads(row["arch"]), data=data, seed=seed, split_seed=split[0], val_fraction=split[1],
                                custom_scale=scale, recipe=RECIPE, **knobs, out=str(out), device=device, latency=False,
                                space_file=space_file, resume=(out / CHECKPOINT).exists() and not (out / METRICS).exists(),
                                source={"audit": True})
            trainings.append(Training(row["arch_id"], seed, cfg))
    return trainings


def standalone_accuracy(metrics: dict) -> float:
    """A standalone training's score as an inherited path is scored: validation top-1 with BatchNorm recalibrated on
    the same fixed calibration batches (the trained model's momentum statistics otherwise, and for models without BN)."""
    recalibrated = metrics.get("val_acc_recalibrated")
    return float(metrics["val_acc"] if recalibrated is None else recalibrated)


def run_trainings(trainings: list[Training], bundle, workers: int, gpus: float, log=print) -> dict[tuple[str, int], float]:
    """The validation top-1 of each training, by (arch_id, seed): finished ones read back, the others trained,
    one after another in this process, or as Ray tasks when `workers` > 1."""
    results, todo = {}, []
    for t in trainings:
        metrics = t.finished()
        if metrics is not None:
            results[(t.arch_id, t.seed)] = standalone_accuracy(metrics)
        else:
            todo.append(t)
    if results:
        log(f"standalone: {len(results)} of {len(trainings)} trainings finished before, kept")
    t0 = time.time()
    if workers > 1 and len(todo) > 1:
        from nas.training.distributed import retrain_in_parallel

        for t, metrics in zip(todo, retrain_in_parallel([t.cfg for t in todo], 1.0, gpus, None)):
            results[(t.arch_id, t.seed)] = standalone_accuracy(metrics)
        return results
    for k, t in enumerate(todo):
        metrics = Retrainer(t.cfg, bundle=bundle, log=lambda *_: None).run()
        results[(t.arch_id, t.seed)] = standalone_accuracy(metrics)
        spent = time.time() - t0
        eta = spent / (k + 1) * (len(todo) - k - 1)
        log(f"standalone {len(results)}/{len(trainings)}: {t.arch_id} seed {t.seed}, {t.cfg.epochs} epochs: val acc "
            f"{standalone_accuracy(metrics):.3f} ({metrics['train_time_s']:.0f}s; about {eta / 60:.0f} min left)")
    return results
