"""tiny_ext (tests/tiny_space.py) with a trial evaluation that raises for trial 2, for nas.search --space-file.

The driver looks the trial function up in nas.searching.trial when it starts the trials, so the wrapper
replaces it there; this module is pickled by value so the wrapper reaches the Ray workers without their
importing it.
"""
import sys
from pathlib import Path

import ray.cloudpickle

import nas.searching.trial
import search_spaces

search_spaces.load_space_file(str(Path(__file__).with_name("tiny_space.py")))
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _raising_on_trial_2(evaluate_trial):
    def wrapper(config, *args, **kwargs):
        if config["trial"] == 2:
            raise RuntimeError("injected failure of trial 2")
        return evaluate_trial(config, *args, **kwargs)

    return wrapper


nas.searching.trial.evaluate_trial = _raising_on_trial_2(nas.searching.trial.evaluate_trial)
