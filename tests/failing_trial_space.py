"""tiny_ext (tests/tiny_space.py) with a trial evaluation that raises for trial 2: loaded by nas.search
through --space-file, in the driver and in every Ray worker."""
from pathlib import Path

import nas.search

nas.search.load_space_file(str(Path(__file__).with_name("tiny_space.py")))
_evaluate_trial = nas.search.evaluate_trial


def _raise_on_trial_2(config, *args, **kwargs):
    if config["trial"] == 2:
        raise RuntimeError("injected failure of trial 2")
    return _evaluate_trial(config, *args, **kwargs)


nas.search.evaluate_trial = _raise_on_trial_2
