"""What runs in a Ray worker for one trial, and what proposes the trials.

`evaluate_trial` scores one proposed architecture with inherited supernet weights (BatchNorm
recalibrated) on the validation split; the worker builds its supernet and loaders once and keeps them
for the trials that follow. `Proposer` is Optuna's define-by-run function: it turns a trial into an
Arch, its target-scale costs and its feasibility, before any supernet time is spent.
"""
from __future__ import annotations

import time

import torch

from search_spaces import Arch, get_space, load_space_file

from nas.measure.costs import arch_costs

_WORKER_CACHE: dict = {}


def trial_payload(supernet_state: dict, bundle, settings: dict):
    """The supernet and loaders of this worker, built once per worker from the object store."""
    key = settings["run_dir"]
    if key not in _WORKER_CACHE:
        from search_spaces import Scale

        from supernet import Supernet

        from nas.data import make_loader
        from nas.measure.evaluate import calibration_loader

        load_space_file(settings.get("space_file"), settings.get("space_file_sha256"))
        space = get_space(settings["space"])
        net = Supernet(space, Scale.from_dict(supernet_state["scale"]))
        net.load_state_dict(supernet_state["model"])
        gpu = bool(settings["gpus_per_trial"]) and torch.cuda.is_available()
        net.eval().to("cuda" if gpu else "cpu")
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = (net, make_loader(bundle, "val", 256), calibration_loader(bundle))
    return _WORKER_CACHE[key]


def evaluate_trial(config: dict, supernet_state: dict, bundle, settings: dict) -> None:
    import ray
    from ray import tune

    from nas.measure.evaluate import evaluate

    result = {"macs": config["macs"], "params": config["params"], "latency_ms": config["latency_ms"], "feasible": config["feasible"],
              "acc": 0.0, "eval_time_s": 0.0, "evaluated": False, "trial": config["trial"],
              "node": ray.get_runtime_context().get_node_id()[:12]}
    if config["feasible"]:
        t0 = time.time()
        torch.set_num_threads(max(1, int(settings["cpus_per_trial"])))
        net, val_loader, calib_loader = trial_payload(supernet_state, bundle, settings)
        arch = Arch.from_json(config["arch"])
        result["acc"] = evaluate(net, arch, val_loader, calib_loader, settings["calib_batches"])
        result["eval_time_s"] = time.time() - t0
        result["evaluated"] = True
    tune.report(result)


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

    def __init__(self, settings, predictor=None):
        self.space_name, self.limits = settings.space, settings.limits()
        self.space_file, self.space_file_sha256 = settings.space_file, settings.space_file_sha256
        self.predictor = predictor

    def __call__(self, trial):
        load_space_file(self.space_file, self.space_file_sha256)
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
