"""Local search as an Optuna sampler (`--sampler local`): on NAS-Bench-201 the state of the art among black-box
searches (White et al. 2020, "Local search is state of the art for NAS benchmarks").

From the best feasible architecture so far (the centre), each proposal is one of its neighbours not yet proposed,
in a random order: the centre's parameters with exactly one changed (a categorical one to another of its choices, an
integer one a step up or down). A parameter the change brings into being (a layer a deeper stage adds) is drawn at
random, one the change removes is dropped: the walk's own define-by-run rule. As soon as a neighbour is better it is
the best, so the next proposal is from it (the search moves); when every neighbour of the best has been proposed (a
local optimum), the search restarts from the second best whose neighbourhood is not exhausted, and so on. An
infeasible neighbour is proposed and told as such through Optuna's constraints (the driver's Proposer sets them):
it is never a centre, and it is not proposed again. With more than one objective the centres are the feasible Pareto
set (nondominated sorting; a member drawn at random among those with neighbours left), then the next front.

The sampler keeps no state of its own: each proposal is worked out from the study's trials (their parameters,
values, constraints and the move each one made, a system attribute), with a generator seeded by the sampler's seed
and the trial number, so Ray Tune's pickling, the journal and `--resume` need nothing more. Before the first
`n_startup_trials` completed trials, or while no completed trial is feasible, proposals are random.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

MOVE = "local_search:move"  # system attribute: {"centre": the centre's parameters, "param": name, "value": new value}


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def alternatives(distribution: BaseDistribution, value) -> list:
    """The values one step from `value`: a categorical parameter's other choices, an integer's neighbours on its grid;
    none for a float (it keeps the centre's value)."""
    if isinstance(distribution, CategoricalDistribution):
        return [c for c in distribution.choices if c != value]
    if isinstance(distribution, IntDistribution):
        return [v for v in (value - distribution.step, value + distribution.step) if distribution.low <= v <= distribution.high]
    return []


def fronts(losses: np.ndarray) -> list[np.ndarray]:
    """Nondominated sorting of rows to minimise: index arrays, the Pareto set first."""
    left = np.arange(len(losses))
    out = []
    while len(left):
        sub = losses[left]
        dominated = ((sub[None, :, :] <= sub[:, None, :]).all(-1) & (sub[None, :, :] < sub[:, None, :]).any(-1)).any(1)
        out.append(left[~dominated])
        left = left[dominated]
    return out


class LocalSearchSampler(BaseSampler):
    def __init__(self, seed: int | None = None, n_startup_trials: int = 10, restart: str = "random"):
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        self._n_startup_trials = n_startup_trials
        self._restart = restart
        self._random = RandomSampler(seed=self._seed)

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def before_trial(self, study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:  # an enqueued trial (a reference member): its parameters are given
            return
        move = self.next_move(study, trial.number)
        if move is None and self._restart == "random" and self._started(study):
            move = {"restart": True}
        if move is not None:
            study._storage.set_trial_system_attr(trial._trial_id, MOVE, move)
            trial.system_attrs[MOVE] = move  # the frozen trial sample_independent is given is this one

    def sample_independent(self, study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        move = trial.system_attrs.get(MOVE)
        if move is not None and "param" in move:
            target = {**dict(move["centre"]), move["param"]: move["value"]}
            if param_name in target:
                value = target[param_name]
                try:
                    if param_distribution._contains(param_distribution.to_internal_repr(value)):
                        return value
                except (ValueError, TypeError):
                    pass
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def next_move(self, study, number: int) -> dict | None:
        """The move trial `number` makes: a neighbour of a centre not yet proposed, or None (random)."""
        trials = study.get_trials(deepcopy=False)
        seen, tried, start = set(), set(), 0
        for t in trials:
            if t.number != number and t.system_attrs.get(MOVE, {}).get("restart"):
                start = max(start, t.number)
            params = t.params or t.system_attrs.get("fixed_params") or {}
            if params:
                seen.add(_key(params))
            move = t.system_attrs.get(MOVE)
            if move is not None and t.number != number and "param" in move:
                tried.add((_key(dict(move["centre"])), move["param"], move["value"]))
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None and feasible(t) and t.number >= start]
        if not self._started(study) or not done:
            return None
        rng = np.random.default_rng([self._seed, number])
        unique = {}
        for t in done:
            unique.setdefault(_key(t.params), t)
        centres = list(unique.values())
        signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])
        losses = np.array([t.values for t in centres], dtype=float) * signs
        for front in fronts(losses):
            candidates = []
            for i in front:
                moves = self._untried(centres[i], seen, tried)
                if moves:
                    candidates.append((i, moves))
            if candidates:
                i, moves = candidates[rng.integers(len(candidates))]
                param, value = moves[rng.integers(len(moves))]
                return {"centre": [list(kv) for kv in _key(centres[i].params)], "param": param, "value": value}
            if self._restart == "random":
                break  # a local optimum (its Pareto set's neighbourhood exhausted): a random restart
        return None  # every neighbour of every feasible architecture proposed: random

    def _started(self, study) -> bool:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= self._n_startup_trials

    @staticmethod
    def _untried(centre: FrozenTrial, seen: set, tried: set) -> list[tuple[str, Any]]:
        key = _key(centre.params)
        moves = []
        for name, distribution in centre.distributions.items():
            for value in alternatives(distribution, centre.params[name]):
                if (key, name, value) in tried or _key({**centre.params, name: value}) in seen:
                    continue
                moves.append((name, value))
        return moves

