"""The Optuna samplers the search proposes with, and the Ray Tune searcher that asks them, in the driver only (a worker
that scores a trial never imports Optuna). TPE, NSGA-II and GP read the limits from the constraints each trial sets."""
from __future__ import annotations

import threading

import optuna
from ray.tune.search.optuna import OptunaSearch

MAX_REPEATS = 100  # consecutive repeats told before one is let through (a sampler that keeps to an exhausted region)


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable: since Optuna 5.1 it holds a threading.Lock, and Ray Tune pickles the searcher
    (and with it the sampler) into its experiment state. Pickled without the lock, given a new one when loaded."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def make_sampler(name: str, seed: int):
    """The sampler `--sampler name` names, seeded."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
    if name == "nsga2":
        return NSGAIISampler(seed=seed, population_size=16)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)  # unscrambled, every seed is one sequence
    return optuna.samplers.RandomSampler(seed=seed)


class DistinctOptunaSearch(OptunaSearch):
    """Ray Tune's Optuna searcher, where a proposal that repeats an evaluated architecture costs no trial: the study is
    told the earlier result at once (the Optuna trial marked `repeat_of`, which trials.csv and the budget leave out)
    and the sampler asked again. TPE and NSGA-II converge onto cells they already hold (on NAS-Bench-201, 12-19% and
    18-34% of 300 trials were repeats); each such trial was a Ray Tune trial spent on nothing new.

    `told` maps an architecture (JSON) to (trial number, objective values) for the run's completed trials."""

    def __init__(self, *args, told: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.told = dict(told)
        self.proposed: dict[str, str] = {}  # Ray Tune trial id -> architecture (JSON)
        self.repeats = 0

    def suggest(self, trial_id: str):
        for _ in range(MAX_REPEATS):
            config = super().suggest(trial_id)
            known = self.told.get(config["arch"])
            if known is None:
                break
            ot_trial = self._ot_trials.pop(trial_id)
            ot_trial.set_user_attr("repeat_of", known[0])
            self._ot_study.tell(ot_trial, known[1])
            self.repeats += 1
        else:
            config = super().suggest(trial_id)
        self.proposed[trial_id] = config["arch"]
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        ot_trial = self._ot_trials.get(trial_id)
        super().on_trial_complete(trial_id, result, error)
        arch = self.proposed.pop(trial_id, None)
        if ot_trial is not None and arch is not None and result and not error:
            values = [result.get(m) for m in (self.metric if isinstance(self.metric, list) else [self.metric])]
            if None not in values:
                self.told[arch] = (ot_trial.number, values)
