"""The search driver: the supernet the trials share, then Ray Tune running trials that an Optuna sampler
proposes, with a progress line per trial and the journal repaired after a kill.

Ask-and-tell bookkeeping goes through the run's Optuna journal, so a killed search keeps every trial
it was told; `close_interrupted` settles the ones a kill left running.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from search_spaces import get_space

from nas import runs
from nas.errors import UserError
from nas.runs import OBJECTIVES, SearchSettings
from nas.searching import trial as trial_side


class Progress:
    """One line per finished trial (errored ones included): done/total, feasible count, best feasible
    accuracy, trials per minute; each result is also appended to the run's evaluation log."""

    def __init__(self, total: int, done: int, feasible: int, best: float | None, run_dir: Path, latency_source: str = "predicted"):
        from ray.tune import Callback

        outer = self

        class _Callback(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                outer.report(result, trial.config)

            def on_trial_error(self, iteration, trials, trial, **info):
                outer.line(trial.config, "failed (its error is printed above; the search goes on)")

        self.callback = _Callback()
        self.total, self.done, self.feasible, self.best, self.t0, self.start_done = total, done, feasible, best, time.time(), done
        self.run_dir, self.latency_source = run_dir, latency_source

    def report(self, result: dict, config: dict | None = None) -> None:
        # the architecture too, so that --repair can rebuild a trial whose journal lines a crash or a full disk lost
        record = {k: result.get(k) for k in ("trial", "evaluated", "eval_time_s", "acc", "node")}
        record.update({k: (config or {}).get(k) for k in ("arch", "reference") if (config or {}).get(k) is not None})
        runs.append_evaluation(self.run_dir, record)
        if result.get("feasible"):
            self.feasible += 1
            self.best = max(self.best or 0.0, result["acc"])
        status = f"acc {result['acc']:.3f}" if result.get("feasible") else "infeasible, not evaluated"
        self.line(result, status if not result.get("unknown") else "not in the evaluator's table: infeasible")

    def line(self, costs: dict, status: str) -> None:
        self.done += 1
        rate = (self.done - self.start_done) / max((time.time() - self.t0) / 60, 1e-9)
        if costs.get("unknown"):
            print(f"trial {self.done}/{self.total}: {status} | feasible {self.feasible} | "
                  f"best feasible acc {f'{self.best:.3f}' if self.best is not None else '-'} | {rate:.1f} trials/min", flush=True)
            return
        latency = f", {costs['latency_ms']:.1f} ms {self.latency_source}" if costs.get("latency_ms") is not None else ""
        best = f"{self.best:.3f}" if self.best is not None else "-"
        print(f"trial {self.done}/{self.total}: {costs['macs'] / 1e9:.2f}G MACs{latency}, {status} | feasible {self.feasible} | "
              f"best feasible acc {best} | {rate:.1f} trials/min", flush=True)


def close_interrupted(run_dir: Path, objectives: tuple[str, ...]) -> None:
    """Settle trials a killed process left RUNNING: one whose result reached the driver is completed
    with that result (it is not evaluated again); the others are marked interrupted and proposed anew."""
    from optuna.trial import TrialState

    storage = runs.journal(run_dir)
    evaluations = runs.read_evaluations(run_dir)
    for t in runs.study_trials(run_dir):
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


def finished_trials(run_dir: Path) -> list:
    """The run's trials that count (results.counts_as_trial)."""
    from nas.searching.results import counts_as_trial

    return [t for t in runs.study_trials(run_dir) if counts_as_trial(t)]


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def feasible_references(settings: SearchSettings, evaluator, log=print) -> list[tuple[str, object]]:
    """(name, Arch) of the space's reference members that the evaluator finds within the search's limits; the others
    are named with the limit they break."""
    from search_spaces import get_reference, reference_names

    fits = []
    for name in reference_names(settings.space):
        arch = get_reference(settings.space, name)
        costs = evaluator.costs(arch)
        over = [(key, costs[key], limit) for key, limit in settings.limits().items() if costs[key] is None or costs[key] > limit]
        if over:
            key, value, limit = over[0]
            log(f"reference {name} is not proposed: its {key} {value if value is None else f'{value:.4g}'} is over the limit {limit:.4g}")
        else:
            fits.append((name, arch))
    return fits


def enqueue_references(settings: SearchSettings, run_dir: Path, evaluator, log=print) -> int:
    """Put the feasible reference members first in the run's Optuna study (enqueue_trial, user attribute
    `reference`), so the sampler starts from the known designs and the search's best is never worse than them by
    its own measure. A reference already evaluated, or waiting, is not enqueued again (a resumed run re-enqueues one
    a kill interrupted). Returns how many were enqueued."""
    import optuna
    from optuna.trial import TrialState

    directions = ["maximize" if OBJECTIVES[o][1] == "max" else "minimize" for o in settings.objectives]
    study = optuna.create_study(study_name="search", storage=runs.journal(run_dir), directions=directions, load_if_exists=True)
    space = get_space(settings.space)
    done = {t.user_attrs.get("arch") for t in finished_trials(run_dir)}
    waiting = {t.user_attrs.get("reference") for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    count = 0
    for name, arch in feasible_references(settings, evaluator, log):
        if arch.to_json() in done or name in waiting:
            continue
        study.enqueue_trial(space.optuna_params(arch), user_attrs={"reference": name})
        count += 1
    if count:
        log(f"the first {count} trials are the space's reference members within the limits")
    return count


def run_trials(settings: SearchSettings, run_dir: Path, evaluator, gpus_per_trial: float = 0.0) -> str:
    """Run the trials the run still lacks (settings.trials minus those finished), each on `gpus_per_trial` of a GPU
    (what devices.plan_trial_devices decided when the settings leave it open), scored by `evaluator`. Returns "" or, when
    the search stopped short of them (Ctrl-C: Ray Tune ends the trials in flight, the finished ones are kept), how to go on."""
    import optuna
    from optuna.trial import TrialState
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from nas.cluster import start_ray
    from nas.searching.samplers import DistinctOptunaSearch, make_sampler, sampler_seed

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    close_interrupted(run_dir, settings.objectives)
    finished = finished_trials(run_dir)
    remaining = settings.trials - len(finished)
    if remaining <= 0:
        return ""
    if settings.references:
        enqueue_references(settings, run_dir, evaluator)
    metrics = [OBJECTIVES[o] for o in settings.objectives]
    metric = [m for m, _ in metrics] if len(metrics) > 1 else metrics[0][0]
    mode = [m for _, m in metrics] if len(metrics) > 1 else metrics[0][1]
    ray = start_ray(settings.address, num_gpus=None)
    cpus = ray.cluster_resources().get("CPU", 1)
    concurrency = settings.concurrency or max(1, int(cpus // settings.cpus_per_trial))
    if gpus_per_trial > 0:
        concurrency = min(concurrency, max(1, int(ray.cluster_resources().get("GPU", 0) // gpus_per_trial)))
    proposer = trial_side.Proposer(settings, evaluator)
    sampler = make_sampler(settings.sampler, sampler_seed(settings.seed, len(finished)), concurrency, screen=proposer.feasible_params)
    told = {t.user_attrs["arch"]: (t.number, list(t.values)) for t in finished if t.state == TrialState.COMPLETE}
    searcher = DistinctOptunaSearch(space=proposer, metric=metric, mode=mode, sampler=sampler,
                                    study_name="search", storage=runs.journal(run_dir), told=told)
    feasible = [t for t in finished if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible")]
    best = max((t.values[0] for t in feasible), default=None)
    progress = Progress(settings.trials, len(finished), len(feasible), best, run_dir,
                        "predicted" if evaluator.kind == "supernet" else "in the table")
    trainable = tune.with_resources(
        tune.with_parameters(trial_side.evaluate_trial, evaluator=evaluator, payload=evaluator.payload()),
        {"cpu": settings.cpus_per_trial, "gpu": gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency), num_samples=remaining,
                                    reuse_actors=True, trial_dirname_creator=_trial_dirname),
        # One result per trial: stopping on it saves the round trip of waiting for the function to return.
        run_config=tune.RunConfig(name="tune", storage_path=str((run_dir / "ray").resolve()), verbose=0, stop={"training_iteration": 1},
                                  callbacks=[progress.callback], failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    restore_hint = _DropRestoreHint()  # Ray Tune's "Tuner.restore(...)" after Ctrl-C; --resume is this run's way
    logging.getLogger("ray.tune.tune").addFilter(restore_hint)
    try:
        tuner.fit()
    finally:
        logging.getLogger("ray.tune.tune").removeFilter(restore_hint)
    if searcher.repeats:
        print(f"{searcher.repeats} proposals repeated an evaluated architecture: the sampler was told its result, no trial spent",
              flush=True)
    done = len(finished_trials(run_dir))
    if done >= settings.trials:
        return ""
    again = f" --space-file {settings.space_file}" if settings.space_file else ""
    return (f"interrupted: {done} of {settings.trials} trials are done and kept (results so far in {run_dir}/); continue with: "
            f"python -m nas.search --resume {run_dir}{again}")


class _DropRestoreHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage()


def check_inputs(settings: SearchSettings):
    """(data bundle, supernet state or None), every input loaded and checked before a run writes anything:
    the data (images, channels, labels, non-empty splits, a size the scale takes) and a given --supernet
    (its space, scale, and every key and shape of its weights against that space's supernet, strictly)."""
    from search_spaces import Scale

    from supernet import Supernet

    from nas.data import load_data
    from nas.training.checkpoint import check_compatible, load_checkpoint
    from nas.training.supernet_trainer import TrainConfig, data_img_size, resolve_scale

    space = get_space(settings.space)
    if not settings.supernet:
        tc = TrainConfig(space=space.name, data=settings.data, scale=settings.scale, seed=settings.seed, val_fraction=settings.val_fraction)
        bundle = load_data(settings.data, img_size=data_img_size(tc), seed=settings.seed, val_fraction=tc.val_fraction,
                           batch_size=tc.batch_size)
        resolve_scale(tc, bundle)
        return bundle, None
    path = Path(settings.supernet)
    ckpt = load_checkpoint(path)
    if ckpt["space"] != space.name:
        raise UserError(f"--supernet {path}: checkpoint is for space {ckpt['space']!r}, not {space.name!r}")
    data_cfg = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    bundle = load_data(settings.data, img_size=ckpt["scale"]["img_size"], seed=data_cfg.get("seed", settings.seed),
                       val_fraction=data_cfg.get("val_fraction", 0.1))
    tc = TrainConfig(space=space.name, data=settings.data, scale=settings.scale, custom_scale=ckpt["scale"])
    check_compatible(ckpt, path, space.name, resolve_scale(tc, bundle))
    try:
        Supernet(space, Scale.from_dict(ckpt["scale"])).load_state_dict(ckpt["model"], strict=True)
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        detail = " ".join(str(e).split())
        raise UserError(f"--supernet {path}: its weights do not fit the {space.name} supernet at its scale ({detail[:200]})") from None
    return bundle, {"scale": ckpt["scale"], "model": ckpt["model"]}


def prepare_supernet(settings: SearchSettings, run_dir: Path, bundle, supernet_state: dict | None):
    """(supernet state for the trials, checkpoint path): the given one, or one trained in the run folder."""
    from nas.training.supernet_trainer import TrainConfig, Trainer

    if supernet_state is not None:
        return supernet_state, Path(settings.supernet)
    path = run_dir / "supernet.pt"
    tc = TrainConfig(space=settings.space, data=settings.data, scale=settings.scale, epochs=settings.epochs,
                     merge_fit_epochs=settings.merge_fit_epochs, strategy=settings.strategy,
                     student_labels=settings.student_labels, seed=settings.seed, val_fraction=settings.val_fraction, out=str(run_dir))
    tc.resume = path.exists()
    trainer = Trainer(tc, bundle=bundle)
    if trainer.epoch < trainer.planned_epochs:
        fit = trainer.planned_epochs - settings.epochs
        print(f"training the supernet ({settings.epochs} epochs{f', then {fit} fitting the merges' if fit else ''}, {settings.strategy} "
              f"sampling, {settings.scale} scale) into {path}", flush=True)
        trainer.run()
    return {"scale": trainer.scale.to_dict(), "model": trainer.net.cpu().state_dict()}, path
