"""Local search as an Optuna sampler (`--sampler local`): on NAS-Bench-201 the state of the art among black-box
searches (White et al. 2020, "Local search is state of the art for NAS benchmarks").

From the best feasible architecture so far (the centre), each proposal is one of its neighbours not yet proposed,
in a random order: the centre's parameters with exactly one changed (a categorical one to another of its choices, an
integer one a step up or down). A parameter the change brings into being (a layer a deeper stage adds) is drawn at
random, one the change removes is dropped: the walk's own define-by-run rule. As soon as a neighbour is better it is
the best, so the next proposal is from it (the search moves). With more than one objective the centres are the
feasible Pareto set (nondominated sorting), then the next front.

The limits. The driver's Proposer sets them as Optuna constraints, so an infeasible proposal is told as such: it is
never a centre and not proposed again. Given a `screen` (the Proposer's `feasible_params`: the architecture's costs
are known before any evaluation), a neighbour over the limits is not proposed at all, so it costs no trial. A limit
cuts the one-change graph of the feasible set into pieces: the best feasible architecture usually sits on the limit,
its better neighbours over it, and the walk stops at many local optima along the limit (on NAS-Bench-201 at raspi4
<= 20 ms, 131). So when every one-change neighbour of a centre has been proposed or screened out, the walk crosses
the limit from it: a neighbour of its neighbour over the limits (screened so, or without a screen told infeasible),
two changes away, not yet proposed and not screened out. Only when the centres' crossings are exhausted too does the
search restart from a random architecture (at a local optimum of this walk: 33 at raspi4 <= 20 ms).

The sampler keeps no state of its own beyond a cache of the screen: each proposal is worked out from the study's
trials (their parameters, values, constraints and the move each one made, a system attribute), with a generator
seeded by the sampler's seed and the trial number, so Ray Tune's pickling, the journal and `--resume` need nothing
more. Before the first `n_startup_trials` completed trials, or while no completed trial is feasible, proposals are
random.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

MOVE = "local_search:move"  # system attribute: {"centre": the centre's parameters, "changes": [[name, new value], ...]}
MAX_SCREENS = 5000  # screen calls one proposal may make (each a cost model call) before it restarts instead


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


def steps(trial: FrozenTrial) -> list[tuple]:
    """Every (parameter, value) one change from the trial's parameters: its one-change neighbourhood."""
    return [(name, value) for name, d in trial.distributions.items() for value in alternatives(d, trial.params[name])]


def losses(study, trials: list[FrozenTrial]) -> np.ndarray:
    """The trials' objective values as rows to minimise (a maximised objective negated), for `fronts`."""
    signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])
    return np.array([t.values for t in trials], dtype=float) * signs


def fronts(rows: np.ndarray):
    """Nondominated sorting of rows to minimise, lazily: index arrays, the Pareto set first."""
    left = np.arange(len(rows))
    while len(left):
        sub = rows[left]
        dominated = ((sub[None, :, :] <= sub[:, None, :]).all(-1) & (sub[None, :, :] < sub[:, None, :]).any(-1)).any(1)
        yield left[~dominated]
        left = left[dominated]




def changes_of(move: dict) -> list[list]:
    """A move's changes, [[name, value], ...] (a run journalled before crossing moves holds one "param" and "value")."""
    if "changes" in move:
        return [list(c) for c in move["changes"]]
    return [[move["param"], move["value"]]] if "param" in move else []


class LocalSearchSampler(BaseSampler):
    def __init__(self, seed: int | None = None, n_startup_trials: int = 10, restart: str = "random", screen=None):
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        self._n_startup_trials = n_startup_trials
        self._restart = restart
        self._random = RandomSampler(seed=self._seed)
        self._screen = screen  # parameters -> True (within the limits), False (over them), None (cannot tell)
        self._screened: dict[tuple, bool | None] = {}

    def __getstate__(self):
        """Pickled (Ray Tune saves the searcher with its experiment state, again and again) without the screen's cache."""
        return {**self.__dict__, "_screened": {}}

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
        if move is not None and "centre" in move:
            target = {**dict(move["centre"]), **dict(changes_of(move))}
            if param_name in target:
                value = target[param_name]
                try:
                    if param_distribution._contains(param_distribution.to_internal_repr(value)):
                        return value
                except (ValueError, TypeError):
                    pass
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def next_move(self, study, number: int) -> dict | None:
        """The move trial `number` makes: a neighbour of a centre not yet proposed (one change, else a crossing of the
        limit), or None (random)."""
        trials = study.get_trials(deepcopy=False)
        seen, tried, told_infeasible, done = set(), set(), set(), []
        for t in trials:
            move = t.system_attrs.get(MOVE)
            if move is not None and t.number != number:
                if move.get("restart"):
                    done = []  # trials come in number order: the centres are those since the restart
                elif "centre" in move:
                    tried.add((_key(dict(move["centre"])), _key(dict(changes_of(move)))))
            params = t.params or t.system_attrs.get("fixed_params") or {}
            if params:
                seen.add(_key(params))
            if t.state == TrialState.COMPLETE and t.values is not None:
                if feasible(t):
                    done.append(t)
                elif params:
                    told_infeasible.add(_key(params))
        if not self._started(study) or not done:
            return None
        rng = np.random.default_rng([self._seed, number])
        unique = {}
        for t in done:
            unique.setdefault(_key(t.params), t)
        centres = list(unique.values())
        budget = [MAX_SCREENS]
        for front in fronts(losses(study, centres)):
            order = [centres[i] for i in rng.permutation(front)]
            for centre in order:
                for crossing in (False, True):
                    changes = self._untried(centre, seen, tried, told_infeasible, rng, crossing, budget)
                    if changes:
                        return {"centre": [list(kv) for kv in _key(centre.params)], "changes": changes}
            if self._restart == "random":
                break  # a local optimum (its Pareto set's neighbourhood exhausted): a random restart
        return None  # every neighbour of every feasible architecture proposed: random

    def _started(self, study) -> bool:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= self._n_startup_trials

    def _over_limits(self, params: dict, budget: list) -> bool:
        """Whether the screen says these parameters are over the limits (False where there is no screen or it cannot tell)."""
        if self._screen is None:
            return False
        key = _key(params)
        if key not in self._screened:
            budget[0] -= 1
            verdict = self._screen(params)
            self._screened[key] = None if verdict is None else bool(verdict)
        return self._screened[key] is False

    def _untried(self, centre: FrozenTrial, seen: set, tried: set, told_infeasible: set, rng, crossing: bool, budget: list) -> list | None:
        """The changes of a move from `centre` not yet proposed and not screened out, in a random order: one change, or
        with `crossing` two, through a neighbour over the limits (screened so, or told infeasible)."""
        params = centre.params
        key = _key(params)
        moves = steps(centre)
        moves = [moves[i] for i in rng.permutation(len(moves))]
        for name, value in moves:
            if budget[0] <= 0:
                return None
            middle = {**params, name: value}
            if not crossing:
                if (key, ((name, value),)) in tried or _key(middle) in seen or self._over_limits(middle, budget):
                    continue
                return [[name, value]]
            if _key(middle) not in told_infeasible and not self._over_limits(middle, budget):
                continue
            for i in rng.permutation(len(moves)):
                other, value2 = moves[i]
                if budget[0] <= 0:
                    return None
                if other == name:
                    continue
                target = {**middle, other: value2}
                changes = sorted([(name, value), (other, value2)])
                if (key, tuple(changes)) in tried or _key(target) in seen or self._over_limits(target, budget):
                    continue
                return [list(c) for c in changes]
        return None
