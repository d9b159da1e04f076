"""The Optuna samplers the search proposes with, and the Ray Tune searcher that asks them, in the driver only (a worker
that scores a trial never imports Optuna). TPE, NSGA-II and GP read the limits from the constraints each trial sets."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from nas.searching.evolution import EvolutionSampler
from nas.searching.local_search import LocalSearchSampler

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


def sampler_seed(seed: int, done: int) -> int:
    """The seed of a search's sampler after `done` trials (a resumed search does not replay the proposals it made):
    within the 0..2**32 - 1 every Optuna sampler takes, for every --seed in that range."""
    return int(np.random.SeedSequence([seed, done]).generate_state(1)[0]) if done else seed


def startup_trials(concurrency: int) -> int:
    """Random trials before TPE models: 10, or as many as run at once (the first `concurrency` proposals are made before
    any result is known, so they are random whatever the setting)."""
    return max(10, concurrency)


def make_sampler(name: str, seed: int, concurrency: int = 1, screen=None):
    """The sampler `--sampler name` names, seeded, for `concurrency` trials at once. `screen` (the Proposer's
    feasible_params) tells local search which neighbours are over the limits before it proposes them."""
    if name == "tpe":
        # As Optuna's AutoSampler configures TPE for a categorical, conditional space: a psvit_ext architecture has 28-52
        # parameters of 101, 17 in common, and without group=True multivariate TPE models those 17 jointly and draws the
        # rest independently. constant_liar (Optuna's default only since 5.1): a running trial counts as a poor one, so
        # concurrent proposals spread out.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                              n_startup_trials=startup_trials(concurrency))
    if name == "local":
        return LocalSearchSampler(seed=seed, n_startup_trials=startup_trials(concurrency), screen=screen)
    if name == "evolution":
        return EvolutionSampler(seed=seed, n_startup_trials=startup_trials(concurrency), screen=screen)
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
    18-34% of 300 trials were repeats); each such trial was a Ray Tune trial spent on nothing new. A proposal of an
    architecture still being evaluated (a concurrent trial's) costs no trial either: it is marked `repeat_of` that trial
    and failed at once (samplers leave failed trials out), and the sampler asked again.

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
            running = next((self._ot_trials[t].number for t, a in self.proposed.items() if a == config["arch"] and t in self._ot_trials), None)
            if known is None and running is None:
                break
            ot_trial = self._ot_trials.pop(trial_id)
            if known is not None:
                ot_trial.set_user_attr("repeat_of", known[0])
                self._ot_study.tell(ot_trial, known[1])
            else:
                ot_trial.set_user_attr("repeat_of", running)
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
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
