"""Regularized evolution as an Optuna sampler (`--sampler evolution`): aging evolution (Real et al., AAAI 2019),
the evolutionary baseline NAS-Bench-101 and -201 report beside local search.

The population is the last `population` feasible architectures evaluated (by trial number: the oldest leaves as a
new one arrives, which is the aging). Each proposal draws `sample` of them at random (the tournament), takes the best
(with more than one objective, one of the tournament's nondominated set) as the parent, and proposes the parent with
one choice changed at random (a mutation, as local search's neighbours are made: `local_search.alternatives`), not yet
proposed and not screened out as over the limits. Until `n_startup_trials` trials are complete, or when no mutation of
the tournament's members is left, the proposal is random (Optuna's RandomSampler, not screened: a random
draw over the limits is told infeasible like any other trial).

Like local search it keeps no state: the move a trial made is a system attribute in local search's format, so Ray
Tune's pickling, the journal and `--resume` need nothing more.
"""
from __future__ import annotations

import numpy as np
from optuna.trial import TrialState

from nas.searching.local_search import MAX_SCREENS, LocalSearchSampler, _key, feasible, fronts, losses, steps

POPULATION, SAMPLE = 30, 10  # NASLib's settings for NAS-Bench-201


class EvolutionSampler(LocalSearchSampler):
    def __init__(self, seed: int | None = None, n_startup_trials: int = 10, population: int = POPULATION, sample: int = SAMPLE, screen=None):
        super().__init__(seed=seed, n_startup_trials=n_startup_trials, restart="none", screen=screen)
        self._population, self._sample = population, sample

    def next_move(self, study, number: int) -> dict | None:
        """The mutation trial `number` makes, or None (random)."""
        if not self._started(study):
            return None
        trials = study.get_trials(deepcopy=False)
        seen = {_key(t.params or t.system_attrs.get("fixed_params") or {}) for t in trials if t.number != number}
        alive = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None and feasible(t)]
        population = list({_key(t.params): t for t in alive}.values())[-self._population:]
        if not population:
            return None
        rng = np.random.default_rng([self._seed, number])
        tournament = [population[i] for i in rng.choice(len(population), min(self._sample, len(population)), replace=False)]
        budget = [MAX_SCREENS]
        for front in fronts(losses(study, tournament)):
            for i in rng.permutation(front):
                changes = self._mutation(tournament[i], seen, rng, budget)
                if changes:
                    return {"centre": [list(kv) for kv in _key(tournament[i].params)], "changes": changes}
        return None

    def _mutation(self, parent, seen: set, rng, budget: list) -> list | None:
        mutations = steps(parent)
        for i in rng.permutation(len(mutations)):
            if budget[0] <= 0:
                return None
            name, value = mutations[i]
            child = {**parent.params, name: value}
            if _key(child) in seen or self._over_limits(child, budget):
                continue
            return [[name, value]]
        return None

