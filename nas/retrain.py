"""python -m nas.retrain ARCH_FILE [--top K] [--recipe quick|deit] [--epochs N] [--data ...]
    [--init scratch|supernet] [--export onnx,torchscript] [--out results/<folder>] [--resume]
    [--parallel | --num-workers N [--use-gpu] [--address auto]]

Trains a searched architecture as a standalone timm model, evaluates it on the validation and test
splits, measures it, and optionally exports it. ARCH_FILE is a best.json, a bare architecture JSON,
or a run's pareto.csv / trials.csv (--top K: the K most accurate rows). When the file belongs to a
search run, the run's data, seed and supernet scale are the defaults, so the validation split is the
one the search used.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from search_spaces import Arch, ArchError, get_space
from search_spaces.atomic import write_text_atomic

from nas.training.checkpoint import RETRAIN_KIND, check_compatible, load_checkpoint, supernet_from_checkpoint
from nas.cli import Parser, run_cli
from nas.errors import RunFailed, UserError
from nas.measure.costs import arch_costs
from nas.data import DataBundle, load_data, make_loader
from nas.measure.evaluate import model_accuracy
from nas.measure.export import export_model, parse_formats
from nas.training.supernet_trainer import data_img_size, resolve_scale
from nas.training.base import (TrainerBase, average_gradients, check_finite, new_out_dir, rng_state, save_progress, set_rng_state,
                        shard, train_epoch)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
ARCH = "arch.json"
INITS = ("scratch", "supernet")

# The knobs of a recipe; explicit flags override the preset. lr None: lr_base x batch / 512 (DeiT's rule).
RECIPES = {
    "quick": dict(epochs=20, batch_size=64, lr=1e-3, lr_base=None, weight_decay=0.05, warmup_epochs=2, min_lr=1e-5,
                  smoothing=0.1, mixup=0.0, cutmix=0.0, aa=None, drop_path=0.0, model_ema=False, ema_decay=0.998,
                  clip_grad=1.0, amp=True),
    "deit": dict(epochs=300, batch_size=1024, lr=None, lr_base=5e-4, weight_decay=0.05, warmup_epochs=5, min_lr=1e-5,
                 smoothing=0.1, mixup=0.8, cutmix=1.0, aa="rand-m9-mstd0.5-inc1", drop_path=0.1, model_ema=True,
                 ema_decay=0.99996, clip_grad=None, amp=True),
}
RECIPE_KEYS = tuple(k for k in RECIPES["quick"] if k != "lr_base")
_QUICK = RECIPES["quick"]


@dataclass
class RetrainConfig:
    space: str
    arch: dict
    data: str = "digits"
    seed: int = 0
    scale: str = "proxy"
    custom_scale: dict | None = None  # a Scale as a dict (the search run's supernet scale), overriding `scale`
    val_fraction: float = 0.1
    recipe: str = "quick"
    epochs: int = _QUICK["epochs"]
    batch_size: int = _QUICK["batch_size"]
    lr: float = _QUICK["lr"]
    weight_decay: float = _QUICK["weight_decay"]
    warmup_epochs: int = _QUICK["warmup_epochs"]
    min_lr: float = _QUICK["min_lr"]
    smoothing: float = _QUICK["smoothing"]
    mixup: float = _QUICK["mixup"]
    cutmix: float = _QUICK["cutmix"]
    aa: str | None = _QUICK["aa"]
    drop_path: float = _QUICK["drop_path"]
    model_ema: bool = _QUICK["model_ema"]
    ema_decay: float = _QUICK["ema_decay"]
    clip_grad: float | None = _QUICK["clip_grad"]
    amp: bool = _QUICK["amp"]
    init: str = "scratch"
    supernet: str | None = None
    out: str = ""
    resume: bool = False
    device: str = "auto"
    threads: int = 0
    export: tuple[str, ...] = ()
    latency: bool = True
    space_file: str | None = None
    source: dict = field(default_factory=dict)  # where the arch came from: file, run, trial, inherited accuracy

    def check(self) -> None:
        if self.init not in INITS:
            raise UserError(f"--init {self.init!r} is not known; allowed: {', '.join(INITS)}")
        if self.init == "supernet" and not self.supernet:
            raise UserError("--init supernet needs a supernet checkpoint: give a run's best.json or pareto.csv, or --supernet PATH")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        for name in ("smoothing", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if self.mixup < 0 or self.cutmix < 0:
            raise UserError(f"--mixup and --cutmix must be at least 0 (Beta-distribution alphas), got {self.mixup}, {self.cutmix}")
        if self.mixes and self.batch_size % 2:
            raise UserError(f"--batch-size {self.batch_size}: Mixup/CutMix pair images within a batch, so it must be even")
        if self.model_ema and not 0.0 < self.ema_decay < 1.0:
            raise UserError(f"--ema-decay must be in (0, 1), got {self.ema_decay}")

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def resolve_recipe(name: str, overrides: dict) -> dict:
    """The preset's knobs with the explicit ones (not None) in their place. The DeiT rule sets an lr the
    preset leaves open from the global batch size; a preset's warm-up is cut to a quarter of fewer epochs."""
    if name not in RECIPES:
        raise UserError(f"--recipe {name!r} is not known; allowed: {', '.join(RECIPES)}")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    knobs = {**RECIPES[name], **explicit}
    if "warmup_epochs" not in explicit:
        knobs["warmup_epochs"] = min(knobs["warmup_epochs"], knobs["epochs"] // 4)
    lr_base = knobs.pop("lr_base")
    if knobs["lr"] is None:
        knobs["lr"] = lr_base * knobs["batch_size"] / 512
    return knobs


# ------------------------------------------------------------------ where the architectures come from
@dataclass(frozen=True)
class Candidate:
    arch: Arch
    inherited_acc: float | None
    trial: int | None
    label: str  # the subfolder name when several are retrained


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"architecture file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {str(path)!r}: {e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); expected a best.json, "
                        "an architecture JSON, or a pareto.csv / trials.csv") from None
    return data


def _arch(data, where: str) -> Arch:
    try:
        return Arch.from_dict(data)
    except ArchError as e:
        raise ArchError(f"{where}: {e}") from None


def candidates_from_json(path: Path, top: int) -> list[Candidate]:
    data = _read_json(path)
    if top != 1:
        raise UserError(f"--top {top}: {path} holds one architecture; --top picks from a pareto.csv or trials.csv")
    arch = _arch(data, str(path))
    wrapped = isinstance(data, dict) and isinstance(data.get("arch"), dict)
    acc = data.get("accuracy") if wrapped else None
    trial = data.get("trial") if wrapped else None
    return [Candidate(arch, float(acc) if isinstance(acc, (int, float)) else None, trial, f"trial-{trial}" if trial is not None else "arch")]


def candidates_from_table(path: Path, top: int) -> list[Candidate]:
    """The `top` most accurate rows of a pareto.csv, or of a trials.csv's feasible, evaluated, ok rows."""
    import pandas as pd

    if not path.is_file():
        raise UserError(f"architecture file {str(path)!r} does not exist")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV table ({str(e).splitlines()[0][:120]})") from None
    missing = [c for c in ("arch", "acc") if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; a pareto.csv or trials.csv from nas.search has "
                        f"columns trial, acc, macs, params, arch")
    if "feasible" in df.columns:
        df = df[df["feasible"].astype(str).str.lower() == "true"]
    if "evaluated" in df.columns:
        df = df[df["evaluated"].astype(str).str.lower() == "true"]
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    df = df.dropna(subset=["acc", "arch"]).sort_values("acc", ascending=False, kind="stable")
    if top > len(df):
        raise UserError(f"--top {top}: {path} has {len(df)} evaluated feasible architecture(s); choose --top 1 to {len(df)}"
                        if len(df) else f"--top {top}: {path} has no evaluated feasible architecture")
    rows = []
    for k, (index, row) in enumerate(df.head(top).iterrows()):
        try:
            data = json.loads(row["arch"])
        except (TypeError, json.JSONDecodeError):
            raise UserError(f"{path}: the arch column of row {index + 2} is not JSON") from None
        trial = int(row["trial"]) if "trial" in df.columns and pd.notna(row["trial"]) else None
        label = f"trial-{trial}" if trial is not None else f"row-{index + 2}"
        rows.append(Candidate(_arch(data, f"{path} row {index + 2}"), float(row["acc"]), trial, label))
    return rows


def find_run(path: Path, data) -> Path | None:
    """The search run an arch file belongs to: its own folder, or the `run` a best.json names."""
    if (path.parent / "config.json").is_file():
        return path.parent
    named = data.get("run") if isinstance(data, dict) else None
    if isinstance(named, str):
        for candidate in (Path(named), path.parent.parent / named, path.parent / Path(named).name):
            if (candidate / "config.json").is_file():
                return candidate
    return None


def read_run_config(run: Path) -> dict:
    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{run / 'config.json'}: not a readable search configuration ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("settings"), dict):
        raise UserError(f"{run / 'config.json'}: has no 'settings'; runs are the folders nas.search writes")
    return config


def run_supernet(run: Path | None, config: dict) -> str | None:
    """The run's supernet checkpoint: the path config.json records, else <run>/supernet.pt."""
    if run is None:
        return None
    for candidate in (config.get("supernet"), run / "supernet.pt"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


# ------------------------------------------------------------------ training one architecture
def inherited_weights(path: str, space_name: str, scale, arch: Arch) -> dict:
    """The state dict of `arch`'s path in the supernet checkpoint at `path`, whose scale must be `scale`."""
    try:
        net, _ = supernet_from_checkpoint(path, space_name, scale)
    except UserError as e:
        raise UserError(f"--init supernet: {e}") from None
    return net.extract(arch).state_dict()


class Retrainer(TrainerBase):
    """One architecture trained from scratch (or from its supernet weights) with a timm recipe;
    `run()` trains to cfg.epochs, resuming from out/checkpoint.pt if asked, then evaluates and measures."""

    def __init__(self, cfg: RetrainConfig, bundle: DataBundle | None = None, log=print, on_epoch_end=None):
        import timm
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        from timm.utils import ModelEmaV3, random_seed

        import supernet  # noqa: F401  (registers the spaces' timm models)

        from search_spaces import load_space_file

        t_start = time.time()
        load_space_file(cfg.space_file)
        self._setup(cfg, log, on_epoch_end, CHECKPOINT, "retrain")
        self.space = get_space(cfg.space)
        self.arch = self.space.validate(Arch.from_dict(cfg.arch))
        self.bundle = bundle or load_data(cfg.data, img_size=data_img_size(cfg), seed=cfg.seed, val_fraction=cfg.val_fraction,
                                          auto_augment=cfg.aa)
        self.scale = resolve_scale(cfg, self.bundle)
        resume_state = self._load_resume() if cfg.resume else None
        init_state = None
        if cfg.init == "supernet" and resume_state is None:
            init_state = inherited_weights(cfg.supernet, self.space.name, self.scale, self.arch)
        random_seed(cfg.seed)  # torch, numpy and Python alike on every worker: the same initial weights everywhere
        self.model = timm.create_model(self.space.name, arch=self.arch, scale=self.scale, drop_path_rate=cfg.drop_path)
        if init_state is not None:
            self.model.load_state_dict(init_state)
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.model_ema else None
        self.train_loader = shard(make_loader(self.bundle, "train", cfg.batch_size, seed=cfg.seed), self.rank, self.world)
        self.val_loader = make_loader(self.bundle, "val", 256)
        self.test_loader = make_loader(self.bundle, "test", 256) if self.bundle.test is not None else None
        self.mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing,
                           num_classes=self.scale.num_classes) if cfg.mixes else None
        if self.mixup is not None:
            self.criterion = SoftTargetCrossEntropy()
        elif cfg.smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(cfg.smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.optimizer = create_optimizer_v2(self.model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, "cosine", num_epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr,
            warmup_lr=cfg.lr * 0.01, updates_per_epoch=len(self.train_loader), step_on_epochs=False,
        )
        self.epoch, self.history = 0, []
        if resume_state is not None:
            self._restore(resume_state)
        self.rng = rng_state()  # where run() starts, whatever happens to the global generators in between
        self.setup_s, self.t_run = time.time() - t_start, None

    # ---------------------------------------------------------------- state
    def _load_resume(self) -> dict:
        ckpt = load_checkpoint(self.ckpt_path, kind=RETRAIN_KIND)
        check_compatible(ckpt, self.ckpt_path, self.space.name, self.scale)
        if Arch.from_dict(ckpt["arch"]) != self.arch:
            raise UserError(f"--resume: {self.ckpt_path} trains another architecture than the one given; "
                            f"its own is in {self.out / ARCH}")
        return ckpt

    def state(self) -> dict:
        return {
            "space": self.space.name, "scale": self.scale.to_dict(), "arch": self.arch.to_dict(), "epoch": self.epoch,
            "model": self.model.state_dict(), "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "config": asdict(self.cfg), "data": self.bundle.describe(), "history": self.history,
        }

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.epoch, self.history = int(ckpt["epoch"]), list(ckpt["history"])
        self.log(f"resumed {self.ckpt_path} at epoch {self.epoch}")

    # ---------------------------------------------------------------- training
    def _step(self, x, y, epoch: int, step: int) -> float:
        cfg = self.cfg
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda"):
            loss = self.criterion(self.model(x).float(), y)
        check_finite(loss, epoch, step, self.ckpt_path, self.epoch, cfg.lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.model, self.world)
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.item()

    def run(self) -> dict:
        cfg, self.t_run = self.cfg, time.time()
        if not self.rank:
            self.out.mkdir(parents=True, exist_ok=True)
            self.arch.save(self.out / ARCH)
        set_rng_state(self.rng)
        while self.epoch < cfg.epochs:
            epoch, t0 = self.epoch, time.time()
            self.model.train()
            stats = train_epoch(self.train_loader, self._step, self.scheduler, epoch, cfg.epochs, self.device, self.rank, self.world)
            self.epoch = epoch + 1
            row = {"epoch": self.epoch, "train_loss": stats["train_loss"], "lr": self.optimizer.param_groups[0]["lr"],
                   "val_acc": model_accuracy(self.model, self.val_loader)}
            if self.ema is not None:
                row["val_acc_ema"] = model_accuracy(self.ema.module, self.val_loader)
            row.update(images_per_s=stats["images_per_s"], epoch_time_s=time.time() - t0)
            self.history.append(row)
            if not self.rank:
                save_progress(self.state(), self.ckpt_path, self.history, kind=RETRAIN_KIND)
            ema = f", EMA {row['val_acc_ema']:.3f}" if self.ema is not None else ""
            self.log(f"epoch {self.epoch}/{cfg.epochs}: loss {row['train_loss']:.3f}, {row['images_per_s']:.0f} img/s, "
                     f"val acc {row['val_acc']:.3f}{ema} ({row['epoch_time_s']:.1f}s)")
            if self.on_epoch_end is not None:
                self.on_epoch_end(self)
        return self.finish()

    # ---------------------------------------------------------------- the end: evaluate, measure, export
    def final_model(self) -> tuple[nn.Module, str, dict]:
        """The EMA weights when they validate at least as well as the trained ones (timm's choice), else
        the trained ones; with the validation accuracy of each."""
        accs = {"model": model_accuracy(self.model, self.val_loader)}
        if self.ema is not None:
            accs["ema"] = model_accuracy(self.ema.module, self.val_loader)
            if accs["ema"] >= accs["model"]:
                return self.ema.module, "ema", accs
        return self.model, "model", accs

    def finish(self) -> dict:
        import timm

        model, which, accs = self.final_model()
        test_acc = model_accuracy(model, self.test_loader) if self.test_loader is not None else None
        if self.rank:
            return {"val_acc": accs[which], "test_acc": test_acc}
        latency = None
        if self.cfg.latency:
            from nas.measure.latency import measure_latency

            target_model = timm.create_model(self.space.name, arch=self.arch, scale="target")
            latency = measure_latency(target_model, img_size=self.space.target.img_size, batch_size=1, device="auto")
        exports = [export_model(model, fmt, self.out, self.scale.img_size, self.scale.in_chans, seed=self.cfg.seed)
                   for fmt in self.cfg.export]
        metrics = self.metrics(which, accs, test_acc, latency, exports)
        write_text_atomic(self.out / METRICS, json.dumps(metrics, indent=2) + "\n")
        return metrics

    def metrics(self, which: str, accs: dict, test_acc: float | None, latency, exports) -> dict:
        import timm

        cfg, target = self.cfg, self.space.target
        trained, at_target = arch_costs(self.arch, self.scale), arch_costs(self.arch, target)
        return {
            "space": self.space.name, "out": str(self.out),
            "val_acc": accs[which], "test_acc": test_acc,
            "inherited_val_acc": cfg.source.get("inherited_acc"), "chance": 1.0 / self.scale.num_classes,
            "weights": which, "val_acc_model": accs["model"], "val_acc_ema": accs.get("ema"),
            "macs": trained.macs, "params": trained.params, "scale": self.scale.to_dict(),
            "target_macs": at_target.macs, "target_params": at_target.params,
            "target_scale": {"name": target.name, "img_size": target.img_size, "num_classes": target.num_classes},
            "latency_ms": latency.median_ms if latency else None,
            "latency": {**asdict(latency), "img_size": target.img_size, "scale": "target"} if latency else None,
            "epochs": self.epoch, "train_time_s": sum(r["epoch_time_s"] for r in self.history),
            "wall_time_s": self.setup_s + time.time() - self.t_run, "seed": cfg.seed, "init": cfg.init,
            "supernet": cfg.supernet if cfg.init == "supernet" else None,
            "arch": self.arch.to_dict(), "source": cfg.source,
            "data": {"spec": cfg.data, "val_fraction": cfg.val_fraction, **self.bundle.describe()},
            "recipe": {"name": cfg.recipe, **{k: getattr(cfg, k) for k in RECIPE_KEYS}},
            "exports": [e.to_dict() for e in exports], "checkpoint": str(self.ckpt_path),
            "device": str(self.device), "world_size": self.world, "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "timm": timm.__version__},
        }


# ------------------------------------------------------------------ several architectures, several workers
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

    from nas.training.distributed import worker_device

    config = {**config, "device": worker_device(config["device"])}
    result = Retrainer(RetrainConfig(**config), log=print if ray.train.get_context().get_world_rank() == 0 else _quiet).run()
    ray.train.report({"val_acc": result["val_acc"], "test_acc": result["test_acc"]})


def retrain_in_parallel(cfgs: list[RetrainConfig], cpus_per_trial: float, gpus_per_trial: float, address: str | None) -> list[dict]:
    """Each architecture as a Ray task on `cpus_per_trial` CPUs and `gpus_per_trial` GPUs; results in input order."""
    from nas.cluster import start_ray

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
    from nas.training.distributed import fit_with_ray_train

    cfg = _absolute(replace(cfg, device="auto" if use_gpu else "cpu"))
    fit_with_ray_train(_retrain_worker, asdict(cfg), Path(cfg.out), "retrain", num_workers, use_gpu, address)
    return json.loads((Path(cfg.out) / METRICS).read_text())


# ------------------------------------------------------------------ the command
def build_parser() -> argparse.ArgumentParser:
    q = RECIPES["quick"]
    p = Parser(prog="python -m nas.retrain", description=__doc__.split("\n\n")[1])
    p.add_argument("arch_file", help="best.json, an architecture JSON, or a run's pareto.csv / trials.csv")
    p.add_argument("--top", type=int, default=1, help="retrain the K most accurate rows of a pareto.csv / trials.csv")
    p.add_argument("--recipe", default="quick", help=f"preset: {', '.join(RECIPES)} (explicit flags override it)")
    p.add_argument("--data", default=None, help="digits, npz:PATH, folder:PATH or a timm data set (default: the run's, else digits)")
    p.add_argument("--seed", type=int, default=None, help="seeds the train/val split and training (default: the run's, else 0)")
    p.add_argument("--scale", default=None, help="proxy or target (default: the scale the run's supernet was trained at, else proxy)")
    p.add_argument("--init", default="scratch", help="scratch (default) or supernet: start from the weights inherited from the run's supernet")
    p.add_argument("--supernet", default=None, help="supernet checkpoint for --init supernet (default: the run's supernet.pt)")
    g = p.add_argument_group("recipe (defaults: the --recipe preset; quick shown)")
    g.add_argument("--epochs", type=int, default=None, help=f"({q['epochs']})")
    g.add_argument("--batch-size", type=int, default=None, help=f"global batch, split over --num-workers ({q['batch_size']})")
    g.add_argument("--lr", type=float, default=None, help=f"AdamW peak learning rate ({q['lr']:g}; deit: 5e-4 x batch / 512)")
    g.add_argument("--weight-decay", type=float, default=None, help=f"({q['weight_decay']})")
    g.add_argument("--warmup-epochs", type=int, default=None, help=f"linear warm-up before the cosine decay ({q['warmup_epochs']})")
    g.add_argument("--min-lr", type=float, default=None, help=f"({q['min_lr']:g})")
    g.add_argument("--smoothing", type=float, default=None, help=f"label smoothing ({q['smoothing']})")
    g.add_argument("--mixup", type=float, default=None, help=f"Mixup alpha, 0 off ({q['mixup']})")
    g.add_argument("--cutmix", type=float, default=None, help=f"CutMix alpha, 0 off ({q['cutmix']})")
    g.add_argument("--aa", default=None, help="RandAugment spec, e.g. rand-m9-mstd0.5-inc1; 'none' off (off)")
    g.add_argument("--drop-path", type=float, default=None, help=f"stochastic depth rate ({q['drop_path']})")
    g.add_argument("--model-ema", action=argparse.BooleanOptionalAction, default=None, help="keep an EMA of the weights (off)")
    g.add_argument("--ema-decay", type=float, default=None, help=f"({q['ema_decay']})")
    g.add_argument("--clip-grad", type=float, default=None, help=f"gradient norm clip, 0 off ({q['clip_grad']})")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 autocast on CUDA (on)")
    p.add_argument("--export", action="append", default=None, help="onnx and/or torchscript, comma-separated or repeated")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement at the target scale")
    p.add_argument("--out", default=None, help="output folder (default results/retrain-<space>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint(s) in --out")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--parallel", action="store_true", help="with --top K: retrain the architectures at once as Ray tasks")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="with --parallel")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="with --parallel")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per architecture (data parallel)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto); default: a private local instance")
    p.add_argument("--space-file", default=None, help="a Python file that registers extra spaces (default: the run's)")
    return p


def _check_resources(args) -> None:
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    if args.num_workers < 1:
        raise UserError(f"--num-workers must be at least 1, got {args.num_workers}")
    if args.parallel and args.num_workers > 1:
        raise UserError("--parallel and --num-workers > 1 do not combine: run several architectures at once, or one on several workers")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UserError("--cpus-per-trial must be positive and --gpus-per-trial at least 0")
    wants_gpu = args.use_gpu or args.gpus_per_trial > 0
    if wants_gpu and not args.address and not torch.cuda.is_available():
        raise UserError("--use-gpu / --gpus-per-trial: no GPU is visible here; leave them off or join a cluster with --address")
    if args.scale is not None and args.scale not in ("proxy", "target"):
        raise UserError(f"--scale {args.scale!r} is not known; allowed: proxy, target")
    if args.resume and not args.out:
        raise UserError("--resume needs --out <the retrain folder holding checkpoint.pt>")
    if args.address:
        from nas.cluster import check_address

        check_address(args.address)


def plan(args) -> list[RetrainConfig]:
    """One validated RetrainConfig per architecture; nothing is written."""
    from search_spaces import load_space_file

    _check_resources(args)
    path = Path(args.arch_file)
    is_table = path.suffix.lower() == ".csv"
    found = candidates_from_table(path, args.top) if is_table else candidates_from_json(path, args.top)
    run = find_run(path, None if is_table else _read_json(path))
    config = read_run_config(run) if run is not None else {}
    settings = config.get("settings", {})
    space_file = args.space_file or settings.get("space_file")
    load_space_file(space_file)
    spaces = {c.arch.space for c in found}
    for c in found:
        try:
            get_space(c.arch.space).validate(c.arch)
        except ArchError as e:
            raise ArchError(f"{path}{f' (trial {c.trial})' if is_table and c.trial is not None else ''}: {e}") from None
    knobs = resolve_recipe(args.recipe, {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
        "warmup_epochs": args.warmup_epochs, "min_lr": args.min_lr, "smoothing": args.smoothing, "mixup": args.mixup,
        "cutmix": args.cutmix, "aa": args.aa, "drop_path": args.drop_path, "model_ema": args.model_ema,
        "ema_decay": args.ema_decay, "clip_grad": args.clip_grad, "amp": args.amp,
    })
    if knobs["aa"] in ("none", ""):
        knobs["aa"] = None
    if (knobs["mixup"] or knobs["cutmix"]) and args.num_workers > 1:
        if knobs["batch_size"] % (2 * args.num_workers):
            raise UserError(f"--batch-size {knobs['batch_size']}: with Mixup/CutMix every worker's share must be even; "
                            f"use a multiple of {2 * args.num_workers}")
    scale = {"scale": args.scale, "custom_scale": None} if args.scale else \
        {"scale": "proxy", "custom_scale": config.get("proxy_scale")}
    supernet = args.supernet or (run_supernet(run, config) if args.init == "supernet" else None)
    if args.init == "supernet" and supernet is None:
        raise UserError(f"--init supernet: no supernet checkpoint found for {path} (no search run folder with supernet.pt); "
                        "pass --supernet PATH")
    if supernet is not None and not Path(supernet).is_file():
        raise UserError(f"--supernet {supernet}: file does not exist")
    out = Path(args.out) if args.out else Path(new_out_dir("retrain", "-".join(sorted(spaces))))
    outs = [out] if len(found) == 1 else [out / c.label for c in found]
    if args.resume and not out.is_dir():
        raise UserError(f"--resume: {out} does not exist")
    if len(found) > 1 and not args.resume:
        held = [o for o in outs if (o / CHECKPOINT).exists()]
        if held:
            raise UserError(f"{held[0]} already holds a retrain checkpoint; pass --resume to continue it or choose another --out")
    cfgs = []
    for c, o in zip(found, outs):
        source = {"file": str(path), "run": str(run) if run else None, "trial": c.trial, "inherited_acc": c.inherited_acc}
        cfgs.append(RetrainConfig(
            space=c.arch.space, arch=c.arch.to_dict(), data=args.data or settings.get("data", "digits"),
            seed=args.seed if args.seed is not None else settings.get("seed", 0), **scale, recipe=args.recipe, **knobs,
            init=args.init, supernet=supernet, out=str(o), resume=args.resume and (len(found) == 1 or (o / CHECKPOINT).exists()),
            device=args.device, threads=args.threads, export=parse_formats(args.export), latency=not args.no_latency,
            space_file=space_file, source=source,
        ))
    for cfg in cfgs:
        cfg.check()
    return cfgs


def report(metrics: dict) -> None:
    inherited = metrics["inherited_val_acc"]
    print(f"retrained {metrics['out']}: {metrics['epochs']} epochs, {metrics['wall_time_s']:.0f}s, data {metrics['data']['name']}")
    print(f"validation accuracy {metrics['val_acc']:.4f}" + (f" (inherited supernet weights: {inherited:.4f})" if inherited is not None else "")
          + (f", test accuracy {metrics['test_acc']:.4f}" if metrics["test_acc"] is not None else "") + f", chance {metrics['chance']:.3f}")
    latency = f", latency {metrics['latency_ms']:.2f} ms on {metrics['latency']['device']}" if metrics["latency_ms"] is not None else ""
    print(f"target scale ({metrics['target_scale']['img_size']}x{metrics['target_scale']['img_size']}): "
          f"{metrics['target_macs'] / 1e9:.2f} G MACs, {metrics['target_params'] / 1e6:.1f} M params{latency}")
    for e in metrics["exports"]:
        print(f"exported {e['format']}: {e['path']} (max abs difference to torch {e['max_abs_diff']:.2g})")
    print(f"metrics: {Path(metrics['out']) / METRICS}", flush=True)


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfgs = plan(args)
    trainers: list[Retrainer] = []  # every check (data, scale, checkpoints) before anything is written
    for cfg in cfgs:  # one plan: the same data, seed and scale for every architecture, so the data is loaded once
        trainers.append(Retrainer(cfg, bundle=trainers[0].bundle if trainers else None))
    if args.num_workers > 1 or (args.parallel and len(cfgs) > 1):
        del trainers  # Ray workers build their own
        if args.num_workers > 1:
            results = [retrain_with_ray_train(cfg, args.num_workers, args.use_gpu, args.address) for cfg in cfgs]
        else:
            results = retrain_in_parallel(cfgs, args.cpus_per_trial, args.gpus_per_trial, args.address)
    else:
        results = []
        for k, trainer in enumerate(trainers):
            if len(trainers) > 1:
                print(f"[{k + 1}/{len(trainers)}] retraining {trainer.out}", flush=True)
            results.append(trainer.run())
    for metrics in results:
        report(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
