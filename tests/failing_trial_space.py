"""tiny_ext (tests/tiny_space.py) with a trial evaluation that raises for trial 2, for nas.search --space-file.

`python -m nas.search` runs as __main__, so the trial function is wrapped there; this module is pickled by
value so the wrapper reaches the Ray workers without their importing it.
"""
import sys
from pathlib import Path

import ray.cloudpickle

import nas.search
import search_spaces

search_spaces.load_space_file(str(Path(__file__).with_name("tiny_space.py")))
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _raising_on_trial_2(evaluate_trial):
    def wrapper(config, *args, **kwargs):
        if config["trial"] == 2:
            raise RuntimeError("injected failure of trial 2")
        return evaluate_trial(config, *args, **kwargs)

    return wrapper


for module in {id(m): m for m in (sys.modules.get("__main__"), nas.search) if hasattr(m, "evaluate_trial")}.values():
    module.evaluate_trial = _raising_on_trial_2(module.evaluate_trial)
