"""python -m nas.search --space psvit_ext --flops 4.5G [--params 22M] [--latency 8ms [--device cpu|cuda]]
    [--sampler tpe|nsga2|random|gp|qmc] [--objectives acc,flops|acc,latency] [--trials N] [--seed S]
    [--data ...] [--supernet results/<run>/supernet.pt] [--address auto] [--gpus-per-trial 0.25]
python -m nas.search --resume results/<run>

Trains the supernet if none is given, then searches it: Ray Tune runs the trials, an Optuna sampler
proposes them (define-by-run over the space's choices). Limits are checked with the analytic cost
model (MACs, params) and the device's latency predictor at the target scale before a trial touches
the supernet; the sampler learns the boundary through Optuna's constraints. A trial evaluates one architecture with inherited weights (BatchNorm
recalibrated) on the validation split. Results go to results/<run>/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from search_spaces import Arch, get_space, load_space_file
from search_spaces.atomic import write_text_atomic

from nas.cli import Parser, run_cli

from nas.errors import UserError
from nas.measure.costs import arch_costs, extreme_arch
from nas.measure.latency import resolve_device
from nas.units import parse_count, parse_latency_ms

SAMPLERS = ("tpe", "nsga2", "random", "gp", "qmc")
OBJECTIVES = {"acc": ("acc", "max"), "flops": ("macs", "min"), "params": ("params", "min"), "latency": ("latency_ms", "min")}
RUN_KIND = "psvit-nas search"
EVALUATIONS = "evaluations.jsonl"


@dataclass
class SearchSettings:
    space: str = "psvit_ext"
    flops: float | None = None  # MAC limit at the target scale
    params: float | None = None
    latency_ms: float | None = None
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("acc", "flops")
    trials: int = 100
    seed: int = 0
    data: str = "digits"
    scale: str = "proxy"
    supernet: str | None = None
    epochs: int = 8
    strategy: str = "sandwich"
    calib_batches: int = 10
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrency: int = 0  # 0: as many as the resources allow
    run_dir: str = ""
    space_file: str | None = None
    device: str = "auto"  # where latency is measured and predicted
    latency_batch: int = 1
    latency_threads: int = 0  # 0: torch's default

    @property
    def uses_latency(self) -> bool:
        return self.latency_ms is not None or "latency" in self.objectives

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in (("macs", self.flops), ("params", self.params), ("latency_ms", self.latency_ms)) if v is not None}


# ------------------------------------------------------------------ argument checking
def build_parser() -> argparse.ArgumentParser:
    d = SearchSettings()
    p = Parser(prog="python -m nas.search", description=__doc__.split("\n\n")[1])
    p.add_argument("--space", default=d.space)
    p.add_argument("--flops", default=None, help="MAC limit at the target scale: 4.5G, 4500M, 4.5e9")
    p.add_argument("--params", default=None, help="parameter limit: 22M")
    p.add_argument("--latency", default=None, help="latency limit at the target scale on --device: 8ms")
    p.add_argument("--device", default=d.device, help="device whose latency is predicted and measured: auto (cuda if present), cpu, cuda")
    p.add_argument("--latency-batch", type=int, default=d.latency_batch, help="batch size of the latency figures (default 1)")
    p.add_argument("--latency-threads", type=int, default=d.latency_threads, help="CPU threads of the latency figures (default: torch's)")
    p.add_argument("--sampler", default=d.sampler, help=f"Optuna sampler: {', '.join(SAMPLERS)}")
    p.add_argument("--objectives", default=",".join(d.objectives), help="acc,flops (default), acc,latency, acc,params or acc")
    p.add_argument("--trials", type=int, default=d.trials, help="architectures proposed (infeasible ones included)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--data", default=d.data, help="digits (default), npz:PATH, folder:PATH or a timm data set name")
    p.add_argument("--scale", default=d.scale, help="scale the supernet is trained at: proxy (default) or target")
    p.add_argument("--supernet", default=None, help="a trained supernet.pt (default: train one in the run folder)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="supernet training epochs when none is given")
    p.add_argument("--strategy", default=d.strategy, help="supernet path sampling: sandwich, uniform, stratified")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto); default: a private local instance")
    p.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    p.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial)
    p.add_argument("--concurrency", type=int, default=0, help="trials at once (default: what the resources allow)")
    p.add_argument("--out", default=None, help="run folder (default results/<space>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the search in this run folder")
    p.add_argument("--space-file", default=None, help="a Python file that registers extra spaces")
    return p


def settings_from_args(args) -> SearchSettings:
    load_space_file(args.space_file)
    space = get_space(args.space)
    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler {args.sampler!r} is not known; allowed: {', '.join(SAMPLERS)}")
    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    if not objectives or objectives[0] != "acc" or any(o not in OBJECTIVES for o in objectives) or len(set(objectives)) != len(objectives):
        raise UserError(f"--objectives {args.objectives!r}: start with acc, then any of flops, params, latency (e.g. acc,flops)")
    flops = parse_count(args.flops, "--flops", "4.5G") if args.flops is not None else None
    params = parse_count(args.params, "--params", "22M") if args.params is not None else None
    latency = parse_latency_ms(args.latency) if args.latency is not None else None
    if args.latency_batch < 1 or args.latency_threads < 0:
        raise UserError("--latency-batch must be at least 1 and --latency-threads at least 0")
    resolve_device(args.device)
    if args.scale not in ("proxy", "target"):
        raise UserError(f"--scale {args.scale!r} is not known; allowed: proxy, target")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UserError("--cpus-per-trial must be positive and --gpus-per-trial at least 0")
    if args.gpus_per_trial > 0 and not args.address and not torch.cuda.is_available():
        raise UserError(f"--gpus-per-trial {args.gpus_per_trial}: no GPU is visible here; leave it at 0 or join a cluster with --address")
    if args.supernet and not Path(args.supernet).is_file():
        raise UserError(f"--supernet {args.supernet}: file does not exist")
    settings = SearchSettings(
        space=space.name, flops=flops, params=params, latency_ms=latency, sampler=args.sampler, objectives=objectives,
        trials=args.trials, seed=args.seed, data=args.data, scale=args.scale, supernet=args.supernet, epochs=args.epochs,
        strategy=args.strategy, address=args.address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        concurrency=args.concurrency, space_file=str(Path(args.space_file).resolve()) if args.space_file else None,
        device=args.device, latency_batch=args.latency_batch, latency_threads=args.latency_threads,
    )
    check_reachable(settings)
    if settings.address:
        from nas.cluster import check_address

        check_address(settings.address)
    return settings


def latency_predictor(settings: SearchSettings):
    """The device's latency predictor for the space (built and cached on first use), or None if unused."""
    if not settings.uses_latency:
        return None
    from nas.measure.latency import load_predictor

    return load_predictor(get_space(settings.space), device=settings.device, batch_size=settings.latency_batch,
                          threads=settings.latency_threads or None)


def check_reachable(settings: SearchSettings) -> None:
    """A limit below the space's cheapest architecture is reported now, not after a fruitless search."""
    space = get_space(settings.space)
    target = space.target
    for key, limit, flag, unit, scale in (("macs", settings.flops, "--flops", "G MACs", 1e9), ("params", settings.params, "--params", "M params", 1e6)):
        if limit is None:
            continue
        cheapest = arch_costs(extreme_arch(space, target, largest=False, key=key), target)
        least = getattr(cheapest, key)
        if least > limit:
            raise UserError(f"{flag} {limit / scale:g}{unit[0]}: no architecture of {space.name} fits; the smallest has "
                            f"{least / scale:.2f}{unit} at the target scale ({target.img_size}x{target.img_size})")
    if settings.latency_ms is not None:
        predictor = latency_predictor(settings)
        fastest = predictor.predict(predictor.fastest(space))
        if fastest > settings.latency_ms:
            raise UserError(f"--latency {settings.latency_ms:g}ms: no architecture of {space.name} is predicted to fit on "
                            f"{predictor.key}; the fastest is predicted at {fastest:.2f} ms ({target.img_size}x{target.img_size}, "
                            f"batch {settings.latency_batch})")


# ------------------------------------------------------------------ trial evaluation (runs in Ray workers)
_WORKER_CACHE: dict = {}


def _trial_payload(supernet_state: dict, bundle, settings: dict):
    """The supernet and loaders of this worker, built once per worker from the object store."""
    key = settings["run_dir"]
    if key not in _WORKER_CACHE:
        from search_spaces import Scale

        from supernet import Supernet

        from nas.data import make_loader

        load_space_file(settings.get("space_file"))
        space = get_space(settings["space"])
        net = Supernet(space, Scale.from_dict(supernet_state["scale"]))
        net.load_state_dict(supernet_state["model"])
        gpu = settings["gpus_per_trial"] > 0 and torch.cuda.is_available()
        net.eval().to("cuda" if gpu else "cpu")
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = (net, make_loader(bundle, "val", 256), make_loader(bundle, "train", 32, seed=settings["seed"] + 7, train=True))
    return _WORKER_CACHE[key]


def evaluate_trial(config: dict, supernet_state: dict, bundle, settings: dict) -> None:
    from ray import tune

    from nas.measure.evaluate import evaluate

    result = {"macs": config["macs"], "params": config["params"], "latency_ms": config["latency_ms"], "feasible": config["feasible"],
              "acc": 0.0, "eval_time_s": 0.0,
              "evaluated": False, "trial": config["trial"]}
    if config["feasible"]:
        t0 = time.time()
        torch.set_num_threads(max(1, int(settings["cpus_per_trial"])))
        net, val_loader, calib_loader = _trial_payload(supernet_state, bundle, settings)
        arch = Arch.from_json(config["arch"])
        result["acc"] = evaluate(net, arch, val_loader, calib_loader, settings["calib_batches"])
        result["eval_time_s"] = time.time() - t0
        result["evaluated"] = True
    tune.report(result)


# ------------------------------------------------------------------ the search
def make_sampler(name: str, seed: int):
    """The Optuna sampler; TPE, NSGA-II and GP read the limits from the constraints each trial sets."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)


class Proposer:
    """Optuna define-by-run function: an Arch from the trial, its target-scale costs (predicted latency
    included when a predictor is given) and feasibility.

    A class rather than a closure because Ray Tune pickles the searcher for its experiment state.
    """

    def __init__(self, settings: SearchSettings, predictor=None):
        self.space_name, self.limits, self.space_file = settings.space, settings.limits(), settings.space_file
        self.predictor = predictor

    def __call__(self, trial):
        load_space_file(self.space_file)
        space = get_space(self.space_name)
        arch = space.suggest(trial)
        costs = arch_costs(arch, space.target)
        values = {"macs": costs.macs, "params": costs.params,
                  "latency_ms": self.predictor.predict(arch) if self.predictor is not None else None}
        constraints = {k: values[k] / v - 1.0 for k, v in self.limits.items()}
        feasible = all(c <= 0 for c in constraints.values())
        for key, value in (("arch", arch.to_json()), *values.items(), ("feasible", feasible)):
            trial.set_user_attr(key, value)
        for key, value in constraints.items():
            trial.set_constraint(key, value)
        return {"arch": arch.to_json(), **values, "feasible": feasible, "trial": trial.number}


class Progress:
    """One line per finished trial (errored ones included): done/total, feasible count, best feasible
    accuracy, trials per minute."""

    def __init__(self, total: int, done: int, feasible: int, best: float | None, log_path: Path):
        from ray.tune import Callback

        outer = self

        class _Callback(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                outer.report(result)

            def on_trial_error(self, iteration, trials, trial, **info):
                outer.line(trial.config, "failed (its error is printed above; the search goes on)")

        self.callback = _Callback()
        self.total, self.done, self.feasible, self.best, self.t0, self.start_done = total, done, feasible, best, time.time(), done
        self.log_path = log_path

    def report(self, result: dict) -> None:
        with open(self.log_path, "a") as f:  # the driver's record of what each trial cost
            f.write(json.dumps({k: result[k] for k in ("trial", "evaluated", "eval_time_s", "acc")}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if result.get("feasible"):
            self.feasible += 1
            self.best = max(self.best or 0.0, result["acc"])
        self.line(result, f"acc {result['acc']:.3f}" if result.get("feasible") else "infeasible, not evaluated")

    def line(self, costs: dict, status: str) -> None:
        self.done += 1
        rate = (self.done - self.start_done) / max((time.time() - self.t0) / 60, 1e-9)
        latency = f", {costs['latency_ms']:.1f} ms predicted" if costs.get("latency_ms") is not None else ""
        best = f"{self.best:.3f}" if self.best is not None else "-"
        print(f"trial {self.done}/{self.total}: {costs['macs'] / 1e9:.2f}G MACs{latency}, {status} | feasible {self.feasible} | "
              f"best feasible acc {best} | {rate:.1f} trials/min", flush=True)


def _journal(run_dir: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))


def study_trials(run_dir: Path):
    storage = _journal(run_dir)
    studies = storage.get_all_studies()
    if not studies:
        return []
    return storage.get_all_trials(studies[0]._study_id)


def read_evaluations(run_dir: Path) -> dict[int, dict]:
    """The driver's durable record of every trial result it received, by Optuna trial number."""
    path = run_dir / EVALUATIONS
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            records[record["trial"]] = record
    return records


def _close_interrupted(run_dir: Path, objectives: tuple[str, ...]) -> None:
    """Settle trials a killed process left RUNNING: one whose result reached the driver is completed
    with that result (it is not evaluated again); the others are marked interrupted and proposed anew."""
    from optuna.trial import TrialState

    storage = _journal(run_dir)
    evaluations = read_evaluations(run_dir)
    for t in study_trials(run_dir):
        if t.state != TrialState.RUNNING:
            continue
        record = evaluations.get(t.number)
        if record is not None and "arch" in t.user_attrs:
            measured = {"acc": record["acc"], "flops": t.user_attrs["macs"], "params": t.user_attrs["params"],
                        "latency": t.user_attrs.get("latency_ms")}
            storage.set_trial_state_values(t._trial_id, TrialState.COMPLETE, [measured[o] for o in objectives])
        else:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def run_trials(settings: SearchSettings, run_dir: Path, supernet_state: dict, bundle) -> None:
    import optuna
    from optuna.trial import TrialState
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from nas.cluster import start_ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _close_interrupted(run_dir, settings.objectives)
    finished = [t for t in study_trials(run_dir) if t.state in (TrialState.COMPLETE, TrialState.FAIL)
                and "arch" in t.user_attrs and not t.user_attrs.get("interrupted")]
    completed = [t for t in finished if t.state == TrialState.COMPLETE]
    remaining = settings.trials - len(finished)
    if remaining <= 0:
        return
    metrics = [OBJECTIVES[o] for o in settings.objectives]
    metric = [m for m, _ in metrics] if len(metrics) > 1 else metrics[0][0]
    mode = [m for _, m in metrics] if len(metrics) > 1 else metrics[0][1]
    # Ask-and-tell bookkeeping goes through the journal, so a killed search keeps every told trial.
    sampler = make_sampler(settings.sampler, settings.seed + len(finished))
    searcher = OptunaSearch(space=Proposer(settings, latency_predictor(settings)), metric=metric, mode=mode, sampler=sampler,
                            study_name="search", storage=_journal(run_dir))
    start_ray(settings.address, num_gpus=None)
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    concurrency = settings.concurrency or max(1, int(cpus // settings.cpus_per_trial))
    if settings.gpus_per_trial > 0:
        concurrency = min(concurrency, max(1, int(ray.cluster_resources().get("GPU", 0) // settings.gpus_per_trial)))
    feasible = [t for t in completed if t.user_attrs.get("feasible")]
    best = max((t.values[0] for t in feasible), default=None)
    progress = Progress(settings.trials, len(finished), len(feasible), best, run_dir / EVALUATIONS)
    trainable = tune.with_resources(
        tune.with_parameters(evaluate_trial, supernet_state=supernet_state, bundle=bundle, settings=asdict(settings)),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency), num_samples=remaining,
                                    reuse_actors=True,
                                    trial_dirname_creator=_trial_dirname),
        # One result per trial: stopping on it saves the round trip of waiting for the function to return.
        run_config=tune.RunConfig(name="tune", storage_path=str((run_dir / "ray").resolve()), verbose=0, stop={"training_iteration": 1},
                                  callbacks=[progress.callback], failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    tuner.fit()


# ------------------------------------------------------------------ the whole run
def new_run_dir(space: str) -> Path:
    base = Path("results") / f"{space}-{time.strftime('%Y%m%d-%H%M%S')}"
    run, k = base, 1
    while run.exists():
        k += 1
        run = base.with_name(f"{base.name}-{k}")
    return run


def _versions() -> dict:
    import optuna
    import ray
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "optuna": optuna.__version__, "ray": ray.__version__, "python": sys.version.split()[0]}


def write_config(settings: SearchSettings, run_dir: Path, extra: dict) -> None:
    space = get_space(settings.space)
    config = {"kind": RUN_KIND, "settings": asdict(settings), "target_scale": space.target.to_dict(), "versions": _versions(), **extra}
    write_text_atomic(run_dir / "config.json", json.dumps(config, indent=2, default=str) + "\n")


def read_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: directory does not exist")
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: not a search run (no config.json); runs are the folders under results/ that nas.search wrote")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"--resume {run_dir}: config.json is not valid JSON") from None
    if config.get("kind") != RUN_KIND:
        raise UserError(f"--resume {run_dir}: config.json is not a nas.search configuration")
    return config


def _file_hash(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_supernet(settings: SearchSettings, run_dir: Path):
    """(supernet state for the trials, data bundle, checkpoint path): the given one, or one trained in the run folder."""
    from nas.training.checkpoint import check_compatible, load_checkpoint
    from nas.training.supernet_trainer import TrainConfig, Trainer, resolve_scale
    from nas.data import load_data

    space = get_space(settings.space)
    if settings.supernet:
        path = Path(settings.supernet)
        ckpt = load_checkpoint(path)
        if ckpt["space"] != space.name:
            raise UserError(f"--supernet {path}: checkpoint is for space {ckpt['space']!r}, not {space.name!r}")
        data_cfg = ckpt.get("config", {})
        bundle = load_data(settings.data, img_size=ckpt["scale"]["img_size"], seed=data_cfg.get("seed", settings.seed),
                           val_fraction=data_cfg.get("val_fraction", 0.1))
        tc = TrainConfig(space=space.name, data=settings.data, scale=settings.scale, custom_scale=ckpt["scale"])
        check_compatible(ckpt, path, space.name, resolve_scale(tc, bundle))
        return {"scale": ckpt["scale"], "model": ckpt["model"]}, bundle, path
    path = run_dir / "supernet.pt"
    tc = TrainConfig(space=space.name, data=settings.data, scale=settings.scale, epochs=settings.epochs, strategy=settings.strategy,
                     seed=settings.seed, out=str(run_dir))
    done = False
    if path.exists():
        from nas.training.checkpoint import load_checkpoint as _load

        done = int(_load(path)["epoch"]) >= settings.epochs
        tc.resume = True
    trainer = Trainer(tc)
    if not done:
        print(f"training the supernet ({settings.epochs} epochs, {settings.strategy} sampling, {settings.scale} scale) into {path}", flush=True)
        trainer.run()
    return {"scale": trainer.scale.to_dict(), "model": trainer.net.cpu().state_dict()}, trainer.bundle, path


def search(settings: SearchSettings, run_dir: Path) -> dict:
    from nas.searching.results import write_results

    t0 = time.time()
    supernet_state, bundle, ckpt_path = prepare_supernet(settings, run_dir)
    predictor = latency_predictor(settings)
    write_config(settings, run_dir, {"supernet": str(ckpt_path), "supernet_sha256": _file_hash(ckpt_path),
                                     "proxy_scale": supernet_state["scale"], "data": bundle.describe(),
                                     "latency_predictor": None if predictor is None else
                                     {"key": predictor.key, "slope": predictor.slope, "intercept_ms": predictor.intercept}})
    print(f"searching {settings.space}: {settings.trials} trials, sampler {settings.sampler}, objectives {','.join(settings.objectives)}, "
          f"limits {', '.join(f'{k} <= {v:g}' for k, v in settings.limits().items()) or 'none'}", flush=True)
    run_trials(settings, run_dir, supernet_state, bundle)
    return write_results(settings, run_dir, time.time() - t0)


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume:
        run_dir = Path(args.resume)
        config = read_config(run_dir)
        values = config["settings"]
        values["objectives"] = tuple(values["objectives"])
        settings = SearchSettings(**{f.name: values[f.name] for f in fields(SearchSettings) if f.name in values})
        load_space_file(settings.space_file)
        print(f"resuming {run_dir}", flush=True)
    else:
        settings = settings_from_args(args)
        run_dir = Path(args.out) if args.out else new_run_dir(settings.space)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"--out {run_dir} already exists and is not empty; use --resume {run_dir} to continue it")
        settings.run_dir = str(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(settings, run_dir, {"status": "started"})
    summary = search(settings, run_dir)
    best = summary.get("best")
    if best:
        print(f"best feasible architecture: acc {best['accuracy']:.3f}, {best['macs'] / 1e9:.2f}G MACs, {best['params'] / 1e6:.1f}M params "
              f"-> {run_dir / 'best.json'} (copied to results/best.json)")
    else:
        print("no feasible architecture was evaluated; see report.md")
    print(f"results: {run_dir}/ (trials.csv, pareto.csv, best.json, report.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
