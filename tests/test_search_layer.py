"""The search layer (issue 33): TPE's settings, the local-search sampler's neighbours, moves, restarts and resume, repeats
of a trial still running, and a resume of a run started with the largest seed."""
import json

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import run_module
from nas.searching.evolution import EvolutionSampler
from nas.searching.local_search import MOVE, LocalSearchSampler, changes_of, fronts
from nas.searching.samplers import MAX_REPEATS, DistinctOptunaSearch, make_sampler, sampler_seed, startup_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
OPS = ["none", "skip", "conv1", "conv3", "pool"]
RNG = np.random.default_rng(0)
ACC = RNG.uniform(0, 1, (6, 5))  # additive accuracy and cost per edge and operation: a landscape with structure
COST = RNG.uniform(0, 1, (6, 5))


def _cell(trial):
    """NB201-like: six edges of five operations; a cost limit set as an Optuna constraint, as the driver's Proposer does."""
    ops = [OPS.index(trial.suggest_categorical(f"e{i}", OPS)) for i in range(6)]
    cost = sum(COST[i, o] for i, o in enumerate(ops))
    trial.set_constraint("cost", cost / 2.6 - 1.0)
    return float(sum(ACC[i, o] for i, o in enumerate(ops))), cost


def _conditional(trial):
    """A conditional space: how many layers, then each layer's operation."""
    depth = trial.suggest_categorical("depth", [1, 2, 3])
    ops = [OPS.index(trial.suggest_categorical(f"l{i}", OPS)) for i in range(depth)]
    trial.set_constraint("cost", 0.0)
    return float(sum(ACC[i, o] for i, o in enumerate(ops)))


def _moves(study, changes: int | None = 1):
    """The trials that moved from a centre (with `changes` changes; None: any)."""
    return [t for t in study.trials if changes_of(t.system_attrs.get(MOVE, {})) and changes in (None, len(changes_of(t.system_attrs[MOVE])))]


def _screen(params):
    """The driver's screen for _cell: whether the parameters are within the cost limit (None where one is missing)."""
    if any(f"e{i}" not in params for i in range(6)):
        return None
    return sum(COST[i, OPS.index(params[f"e{i}"])] for i in range(6)) <= 2.6


def _changed(centre: dict, params: dict) -> list:
    return sorted(k for k in centre if k in params and centre[k] != params[k])


def test_tpe_is_configured_for_a_conditional_space():
    for concurrency, startup in ((1, 10), (64, 64)):
        s = make_sampler("tpe", 0, concurrency)
        assert s._multivariate and s._group and s._constant_liar and s._n_startup_trials == startup == startup_trials(concurrency)
    study = optuna.create_study(sampler=make_sampler("tpe", 0), direction="maximize")
    study.optimize(_conditional, n_trials=20)  # group=True: every parameter of a conditional space is modelled, no failure
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_local_search_neighbours_differ_in_one_choice_never_repeat_and_infeasible_ones_are_told():
    study = optuna.create_study(sampler=LocalSearchSampler(seed=1, n_startup_trials=5), direction="maximize")
    study.optimize(lambda t: _cell(t)[0], n_trials=150)
    moves = _moves(study)
    assert len(moves) > 40 and len(_moves(study, changes=None)) > 120  # after the start, moves (one change or two)
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(keys[5:])) == len(keys[5:])  # after the random start no architecture is proposed twice
    infeasible = [t for t in moves if t.constraints["cost"] > 0]
    assert infeasible  # the limit cuts the landscape: some neighbours are over it and are proposed and told as such
    by_key = {k: t for k, t in zip(keys, study.trials)}
    for t in moves:
        move = t.system_attrs[MOVE]
        centre = dict(move["centre"])
        [[name, value]] = move["changes"]
        assert _changed(centre, t.params) == [name] and t.params[name] == value
        assert by_key[tuple(sorted(centre.items()))].constraints["cost"] <= 0  # a centre is never infeasible
    # a move to a better feasible neighbour is followed: the next proposal starts from it
    for a, b in zip(study.trials, study.trials[1:]):
        if a in moves and b in moves and a.constraints["cost"] <= 0:
            centre = by_key[tuple(sorted(dict(a.system_attrs[MOVE]["centre"]).items()))]
            if a.value > centre.value:
                assert dict(b.system_attrs[MOVE]["centre"]) == a.params


def _crossings_checked(study, screen) -> int:
    """Asserts what a crossing move is: two changes through a neighbour over the limit (screened so, or told
    infeasible before), made only once every one-change neighbour of its centre was proposed or screened out.
    Returns how many there were."""
    trials = study.trials
    crossings = _moves(study, changes=2)
    for t in crossings:
        centre = dict(t.system_attrs[MOVE]["centre"])
        (a, va), (b, vb) = t.system_attrs[MOVE]["changes"]
        assert _changed(centre, t.params) == sorted([a, b]) and (t.params[a], t.params[b]) == (va, vb)
        before = {tuple(sorted(u.params.items())): u for u in trials[:t.number]}
        over = [m for m in ({**centre, a: va}, {**centre, b: vb})
                if (screen is not None and screen(m) is not None and not screen(m)) or before.get(tuple(sorted(m.items())), None) is not None
                and before[tuple(sorted(m.items()))].constraints["cost"] > 0]
        assert over  # one of the two middles is over the limit
        for name in centre:
            for op in OPS:
                neighbour = {**centre, name: op}
                if op != centre[name] and (screen is None or screen(neighbour)):
                    assert tuple(sorted(neighbour.items())) in before  # the one-change neighbourhood came first
    return len(crossings)


def test_local_search_crosses_the_limit_through_neighbours_told_infeasible():
    study = optuna.create_study(sampler=LocalSearchSampler(seed=1, n_startup_trials=5), direction="maximize")
    study.optimize(lambda t: _cell(t)[0], n_trials=200)
    assert _crossings_checked(study, screen=None) > 10


def test_local_search_with_a_screen_proposes_no_neighbour_over_the_limit_and_crosses_it():
    screened = []

    def screen(params):
        screened.append(params)
        return _screen(params)

    def run(sampler):
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(lambda t: _cell(t)[0], n_trials=150)
        return study

    study = run(LocalSearchSampler(seed=1, n_startup_trials=5, screen=screen))
    moves = _moves(study, changes=None)
    assert len(moves) > 100 and all(t.constraints["cost"] <= 0 for t in moves)  # no move is spent over the limit
    assert len(screened) == len({tuple(sorted(p.items())) for p in screened})  # each architecture screened once
    import pickle

    sampler = LocalSearchSampler(seed=1, screen=_screen)
    costliest = {f"e{i}": OPS[int(np.argmax(COST[i]))] for i in range(6)}  # over the limit
    assert sampler._over_limits(costliest, [1]) and len(sampler._screened) == 1
    assert pickle.loads(pickle.dumps(sampler))._screened == {}  # Ray Tune's saved searcher holds no cache
    assert _crossings_checked(study, screen=_screen) > 10
    unscreened = run(LocalSearchSampler(seed=1, n_startup_trials=5))
    assert sum(t.constraints["cost"] > 0 for t in _moves(unscreened, changes=None)) > 10


@pytest.mark.parametrize("sampler", [LocalSearchSampler, EvolutionSampler])
def test_a_proposal_screens_at_most_max_screens_architectures(monkeypatch, sampler):
    """A screen that rejects everything (limits nothing meets) must not make one proposal screen the whole space."""
    import nas.searching.evolution as evolution
    import nas.searching.local_search as local_search

    monkeypatch.setattr(local_search, "MAX_SCREENS", 7)
    monkeypatch.setattr(evolution, "MAX_SCREENS", 7)
    calls = []
    study = optuna.create_study(sampler=sampler(seed=0, n_startup_trials=3, screen=lambda p: calls.append(p) or False),
                                direction="maximize")
    per_trial = []
    for _ in range(30):
        before = len(calls)
        trial = study.ask()
        study.tell(trial, _cell(trial)[0])
        per_trial.append(len(calls) - before)
    assert max(per_trial) <= 7 and sum(per_trial) > 7
    assert all(t.state == TrialState.COMPLETE for t in study.trials)  # and the search goes on (random proposals)


def test_the_proposers_screen_agrees_with_its_trials(tmp_path):
    from test_nb201 import _table

    from nas.runs import SearchSettings
    from nas.searching.evaluators import make_evaluator
    from nas.searching.trial import Proposer

    _table(tmp_path / "t.csv", rows=None)  # cells whose first edge is `none` are not in the table: infeasible
    settings = SearchSettings(space="nb201", evaluator=f"table:{tmp_path / 't.csv'}", flops=60e6, references=False)
    proposer = Proposer(settings, make_evaluator(settings))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), directions=["maximize", "minimize"])
    verdicts = []
    for _ in range(60):
        trial = study.ask()
        config = proposer(trial)
        verdicts.append(config["feasible"])
        assert proposer.feasible_params(trial.params) is config["feasible"]
        study.tell(trial, [0.0, config["macs"]])
    assert True in verdicts and False in verdicts
    params = dict(study.trials[0].params)
    params.pop(next(iter(params)))
    assert proposer.feasible_params(params) is None  # an edge missing: no architecture, no verdict


def test_local_search_restarts_when_the_neighbourhood_is_exhausted_and_beats_random():
    def best(sampler):
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(lambda t: _cell(t)[0], n_trials=200)
        return study, max(t.value for t in study.trials if t.constraints["cost"] <= 0)

    local, found = best(LocalSearchSampler(seed=0, n_startup_trials=5))
    assert any(t.system_attrs.get(MOVE, {}).get("restart") for t in local.trials)  # a local optimum was left for a restart
    randoms = [best(optuna.samplers.RandomSampler(seed=s))[1] for s in range(3)]
    assert found > max(randoms)


def test_local_search_in_a_conditional_space_changes_one_choice_of_its_centre():
    study = optuna.create_study(sampler=LocalSearchSampler(seed=0, n_startup_trials=3), direction="maximize")
    study.optimize(_conditional, n_trials=60)
    for t in _moves(study):
        centre, [[name, _]] = dict(t.system_attrs[MOVE]["centre"]), t.system_attrs[MOVE]["changes"]
        assert _changed(centre, t.params) == [name]
        if name != "depth":  # only a depth change adds or removes parameters (a new layer's are drawn)
            assert set(t.params) == set(centre)


def test_local_search_with_two_objectives_moves_from_the_pareto_set():
    study = optuna.create_study(sampler=LocalSearchSampler(seed=0, n_startup_trials=5), directions=["maximize", "minimize"])
    study.optimize(_cell, n_trials=120)
    restarts = [t.number for t in study.trials if t.system_attrs.get(MOVE, {}).get("restart")]
    for t in _moves(study):
        start = max([r for r in restarts if r < t.number], default=0)
        before = [u for u in study.trials[start:t.number] if u.state == TrialState.COMPLETE and u.constraints["cost"] <= 0]
        losses = np.array([[-u.values[0], u.values[1]] for u in before])
        pareto = {tuple(sorted(before[i].params.items())) for i in next(fronts(losses))}
        assert tuple(sorted(dict(t.system_attrs[MOVE]["centre"]).items())) in pareto


@pytest.mark.parametrize("sampler", [LocalSearchSampler, EvolutionSampler])
def test_local_search_and_evolution_resume_from_the_journal(tmp_path, sampler):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    def study(seed):
        storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
        return optuna.create_study(study_name="s", storage=storage, sampler=sampler(seed=seed, n_startup_trials=5),
                                   direction="maximize", load_if_exists=True)

    first = study(3)
    first.optimize(lambda t: _cell(t)[0], n_trials=40)
    reloaded = study(3)  # another process: a new sampler reads the moves back from the journal
    assert reloaded.sampler.next_move(reloaded, 40) == first.sampler.next_move(first, 40)
    reloaded.optimize(lambda t: _cell(t)[0], n_trials=40)
    trials = reloaded.trials
    moves = [(json.dumps(t.system_attrs[MOVE]["centre"]), json.dumps(t.system_attrs[MOVE]["changes"]))
             for t in trials if "changes" in t.system_attrs.get(MOVE, {})]
    assert len(moves) == len(set(moves)) and len(trials) == 80
    keys = [tuple(sorted(t.params.items())) for t in trials[5:]]
    assert len(keys) == len(set(keys))
    # a run journalled before crossing moves recorded one "param" and "value": read as its one change
    assert changes_of({"centre": [["e0", "none"]], "param": "e0", "value": "conv3"}) == [["e0", "conv3"]]


def test_evolution_mutates_one_choice_of_a_member_of_its_population_and_never_repeats():
    screened = []

    def screen(params):
        screened.append(params)
        return _screen(params)

    study = optuna.create_study(sampler=EvolutionSampler(seed=2, n_startup_trials=5, population=12, sample=4, screen=screen),
                                direction="maximize")
    study.optimize(lambda t: _cell(t)[0], n_trials=150)
    moves = _moves(study)
    assert len(moves) > 120 and len(_moves(study, changes=None)) == len(moves)  # mutations: one change each
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(keys)) == len(keys)
    assert all(t.constraints["cost"] <= 0 for t in moves)  # screened: no mutation proposed over the limit
    for t in moves:
        centre, [[name, value]] = dict(t.system_attrs[MOVE]["centre"]), t.system_attrs[MOVE]["changes"]
        assert _changed(centre, t.params) == [name] and t.params[name] == value
        alive = [u for u in study.trials[:t.number] if u.state == TrialState.COMPLETE and u.constraints["cost"] <= 0]
        assert tuple(sorted(centre.items())) in {tuple(sorted(u.params.items())) for u in alive[-12:]}  # aging: the last 12
    best = max(t.value for t in study.trials)
    randoms = []
    for seed in range(3):
        r = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
        r.optimize(lambda t: _cell(t)[0], n_trials=150)
        randoms.append(max(t.value for t in r.trials if t.constraints["cost"] <= 0))
    assert best > max(randoms)
    assert make_sampler("evolution", 0, 64)._n_startup_trials == 64


def _four_letter_searcher():
    return DistinctOptunaSearch(space=lambda t: {"arch": t.suggest_categorical("x", list("abcd"))}, metric="acc", mode="max",
                                sampler=make_sampler("random", 0), told={})


def test_a_proposal_of_an_architecture_still_running_costs_no_trial():
    from nas.searching.results import counts_as_trial

    searcher = _four_letter_searcher()
    proposed = [searcher.suggest(f"t{i}")["arch"] for i in range(4)]  # four at once, none finished
    assert sorted(proposed) == ["a", "b", "c", "d"]
    trials = searcher._ot_study.trials
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    assert repeats and len(repeats) == searcher.repeats  # random over four letters repeats itself (seed 0: it did)
    running = {t.number: t for t in trials if t.state == TrialState.RUNNING}
    for t in repeats:  # failed at once, naming the running trial of the same architecture; not a trial of the budget
        assert t.state == TrialState.FAIL and t.params == running[t.user_attrs["repeat_of"]].params
        t.user_attrs["arch"] = t.params["x"]
        assert not counts_as_trial(t)
    config = searcher.suggest("t4")  # every architecture running: after MAX_REPEATS repeats one is let through
    assert config["arch"] in "abcd" and searcher.repeats == len(repeats) + MAX_REPEATS


@pytest.mark.parametrize("name", ["tpe", "local", "evolution", "nsga2", "qmc", "random"])
def test_the_sampler_of_a_resumed_run_takes_the_largest_seed(name):
    seeds = [sampler_seed(2**32 - 1, done) for done in (0, 1, 3, 300)]
    assert seeds[0] == 2**32 - 1 and all(0 <= s < 2**32 for s in seeds) and len(set(seeds)) == 4
    study = optuna.create_study(sampler=make_sampler(name, seeds[2]), directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_int("a", 0, 9), t.suggest_int("b", 0, 9)), n_trials=3)
    assert len(study.trials) == 3


@pytest.mark.slow
def test_a_run_started_with_the_largest_seed_resumes(tmp_path):
    from test_nb201 import _table

    _table(tmp_path / "t.csv", rows=None)
    run = tmp_path / "run"
    args = ["--space", "nb201", "--evaluator", f"table:{tmp_path / 't.csv'}", "--flops", "60M", "--trials", "3", "--no-references"]
    first = run_module("nas.search", *args, "--seed", "4294967295", "--out", str(run), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_module("nas.search", "--resume", str(run), "--trials", "6", cwd=tmp_path)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr[-2000:]
    assert len(pd.read_csv(run / "trials.csv")) == 6
