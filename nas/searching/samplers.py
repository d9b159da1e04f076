"""The Optuna samplers the search proposes with, in the driver only (a worker that scores a trial never imports
Optuna). TPE, NSGA-II and GP read the limits from the constraints each trial sets."""
from __future__ import annotations

import threading

import optuna


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
