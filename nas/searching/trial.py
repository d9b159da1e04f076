"""What runs in a Ray worker for one trial, and what proposes the trials.

`evaluate_trial` scores one proposed architecture with the search's evaluator (nas.searching.evaluators:
inherited accuracy from the supernet by default) on the validation split. `Proposer` is Optuna's
define-by-run function: it turns a trial into an Arch, its target-scale costs (the evaluator's) and its
feasibility, before any evaluation time is spent.
"""
from __future__ import annotations

import time

from search_spaces import Arch, get_space, load_space_file


def evaluate_trial(config: dict, evaluator, payload) -> None:
    import ray
    from ray import tune

    result = {"macs": config["macs"], "params": config["params"], "latency_ms": config["latency_ms"], "feasible": config["feasible"],
              "acc": 0.0, "eval_time_s": 0.0, "evaluated": False, "trial": config["trial"], "unknown": config.get("unknown", False),
              "node": ray.get_runtime_context().get_node_id()[:12]}
    if config["feasible"]:
        t0 = time.time()
        result["acc"] = evaluator.score(Arch.from_json(config["arch"]), payload)
        result["eval_time_s"] = time.time() - t0
        result["evaluated"] = True
    tune.report(result)


class Proposer:
    """Optuna define-by-run function: an Arch from the trial, its target-scale costs (the evaluator's: the cost
    model and latency predictor, or a table) and feasibility. An architecture the evaluator has no costs for (a
    table that does not hold it) is infeasible, with the constraint `in_table` telling the sampler.

    A class rather than a closure because Ray Tune pickles the searcher for its experiment state.
    """

    def __init__(self, settings, evaluator):
        self.space_name, self.limits = settings.space, settings.limits()
        self.space_file, self.space_file_sha256 = settings.space_file, settings.space_file_sha256
        self.evaluator = evaluator

    def _costs(self, trial) -> tuple:
        """(the Arch, its costs, its constraints: <= 0 within the limits)."""
        load_space_file(self.space_file, self.space_file_sha256)
        arch = get_space(self.space_name).suggest(trial)
        values = self.evaluator.costs(arch)
        if values["macs"] is None:
            return arch, values, {"in_table": 1.0}
        return arch, values, {k: values[k] / v - 1.0 for k, v in self.limits.items()}

    def feasible_params(self, params: dict) -> bool | None:
        """Whether the architecture Optuna parameters make is within the limits, known before a trial is spent on it
        (the local-search sampler's screen); None where they make no architecture (one the walk needs is missing)."""
        from optuna.trial import FixedTrial  # here: a worker that scores a trial never imports Optuna

        try:
            _, _, constraints = self._costs(FixedTrial(params))
        except ValueError:
            return None
        return all(c <= 0 for c in constraints.values())

    def __call__(self, trial):
        arch, values, constraints = self._costs(trial)
        feasible = all(c <= 0 for c in constraints.values())
        for key, value in (("arch", arch.to_json()), *values.items(), ("feasible", feasible)):
            trial.set_user_attr(key, value)
        for key, value in constraints.items():
            trial.set_constraint(key, value)
        # what the sampler is told for an architecture with no costs: the evaluator's worst (Optuna refuses NaN)
        told = values if values["macs"] is not None else {**values, **self.evaluator.worst_costs(), "unknown": True}
        reference = {"reference": trial.user_attrs["reference"]} if trial.user_attrs.get("reference") else {}
        return {"arch": arch.to_json(), **told, "feasible": feasible, "trial": trial.number, **reference}
