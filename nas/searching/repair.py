"""`nas.search --resume RUN --repair`: a run whose Optuna journal a crash, a full disk or a copy cut short damaged,
made whole again from what is still on disk, before the search resumes.

The journal's lines before the first damaged one are kept as they are (Optuna replays them). Every trial after them
is rebuilt from, in this order, the journal's later lines that still parse (each names its trial), the driver's
evaluation log (evaluations.jsonl: each result with its architecture) and the last trials.csv: its architecture
is proposed again to the run's own proposer on an Optuna FixedTrial (the same parameters, costs, feasibility and
constraints as when it was first proposed) and the study is told its recorded result. So the sampler keeps its
history and no evaluated architecture is evaluated again. A trial number with no result anywhere on disk is
marked interrupted (it costs no trial) and proposed anew. The damaged file is kept as optuna.journal.damaged-<time>.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import time
from pathlib import Path

from search_spaces import Arch, ArchError, get_space

from nas.errors import UserError
from nas.journal import EVALUATIONS, JOURNAL, line_problem, journal_storage, read_evaluations, read_journal_lines
from nas.runs import OBJECTIVES, SearchSettings
from nas.searching.trial import Proposer

KEPT_ATTRS = ("reference", "repeat_of", "interrupted")  # user attributes a trial's proposal does not set again


def _later_trials(lines: list[bytes]) -> dict[int, dict]:
    """What the journal lines after the damaged one still say about each trial (by trial id, the trial's number in a
    one-study journal): its user attributes (architecture, reference, repeat_of) and its final state and values."""
    from optuna.storages.journal._storage import JournalOperation as Op

    found: dict[int, dict] = {}
    for line in lines:
        if not line or line_problem(line):
            continue
        op = json.loads(line)
        trial_id = op.get("trial_id")
        if not isinstance(trial_id, int) or isinstance(trial_id, bool) or trial_id < 0:
            continue
        entry = found.setdefault(trial_id, {"user_attrs": {}})
        if op["op_code"] == Op.SET_TRIAL_USER_ATTR and isinstance(op.get("user_attr"), dict):
            entry["user_attrs"].update(op["user_attr"])
        elif op["op_code"] == Op.SET_TRIAL_STATE_VALUES and op.get("state") in (1, 3):  # COMPLETE, FAIL
            entry.update(state=op["state"], values=op.get("values"), datetime_complete=op.get("datetime_complete"))
    return found


def _table_rows(run_dir: Path, log) -> dict[int, dict]:
    """trial -> {arch, status, acc, reference} from the run's last trials.csv; a table that cannot be read is left out."""
    import pandas as pd

    path = run_dir / "trials.csv"
    if not path.is_file():
        return {}
    try:
        df = pd.read_csv(path)
        rows = {}
        for row in df.to_dict("records"):
            trial, arch, status = row.get("trial"), row.get("arch"), row.get("status")
            if isinstance(trial, (int, float)) and float(trial).is_integer() and 0 <= trial < 1e9 and isinstance(arch, str) \
                    and status in ("ok", "failed"):
                by = str(row.get("proposed_by", ""))
                rows[int(trial)] = {"arch": arch, "status": status, "acc": row.get("acc"),
                                    "reference": by[len("reference:"):] if by.startswith("reference:") else None}
        return rows
    except Exception as e:  # a damaged table adds nothing, whatever pandas says about it
        log(f"{path}: not used for the repair ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})")
        return {}


def _result(later: dict, record: dict | None, row: dict | None):
    """(state, values or None, acc or None) of a trial from the first source that holds its result, else None."""
    from optuna.trial import TrialState

    if "state" in later:
        return TrialState(later["state"]), later.get("values"), None
    if record is not None and isinstance(record.get("acc"), (int, float)):
        return TrialState.COMPLETE, None, float(record["acc"])
    if row is not None:
        if row["status"] == "failed":
            return TrialState.FAIL, None, None
        acc = row["acc"] if isinstance(row["acc"], (int, float)) and math.isfinite(row["acc"]) else 0.0  # infeasible: told 0
        return TrialState.COMPLETE, None, float(acc)
    return None


def _recover(number: int, attrs: dict, later: dict, record, row, settings: SearchSettings, proposer):
    """A FrozenTrial for trial `number` rebuilt from what is on disk, or None when its architecture or result is lost."""
    import optuna
    from optuna.trial import TrialState

    arch = attrs.get("arch") or later["user_attrs"].get("arch") or (record or {}).get("arch") or (row or {}).get("arch")
    result = _result(later, record, row)
    if not isinstance(arch, str) or result is None:
        return None
    state, values, acc = result
    space = get_space(settings.space)
    try:
        fixed = optuna.trial.FixedTrial(space.optuna_params(Arch.from_json(arch)), number=number)
    except (ArchError, ValueError, TypeError, KeyError):
        return None
    told = proposer(fixed)
    if state == TrialState.COMPLETE and values is None:
        values = [{**told, "acc": acc}.get(OBJECTIVES[o][0]) for o in settings.objectives]
    if state == TrialState.COMPLETE and (not isinstance(values, list) or len(values) != len(settings.objectives) or None in values):
        return None
    extra = {"reference": (record or {}).get("reference") or (row or {}).get("reference")}
    extra.update({k: later["user_attrs"][k] for k in KEPT_ATTRS if k in later["user_attrs"]})
    extra.update({k: attrs[k] for k in KEPT_ATTRS if k in attrs})
    now = datetime.datetime.now()
    done = later.get("datetime_complete")
    done = datetime.datetime.fromisoformat(done) if isinstance(done, str) else now
    return optuna.trial.FrozenTrial(
        number=number, state=state, value=None, values=values if state == TrialState.COMPLETE else None, datetime_start=done,
        datetime_complete=done, params=fixed.params, distributions=fixed.distributions,
        user_attrs={**fixed.user_attrs, **{k: v for k, v in extra.items() if v is not None}}, system_attrs=fixed.system_attrs,
        intermediate_values={}, trial_id=number)


def _placeholder(number: int):
    """A trial number whose result is nowhere on disk: interrupted, so it costs no trial and is proposed anew."""
    import optuna
    from optuna.trial import TrialState

    now = datetime.datetime.now()
    return optuna.trial.FrozenTrial(number=number, state=TrialState.FAIL, value=None, datetime_start=now, datetime_complete=now,
                                    params={}, distributions={}, user_attrs={"interrupted": True}, system_attrs={},
                                    intermediate_values={}, trial_id=number)


def _complete_in_place(storage, trial, recovered) -> None:
    """Finish a trial the kept lines left waiting or running, with what was recovered for it."""
    from optuna.trial import TrialState

    tid = trial._trial_id
    for name, value in recovered.params.items():
        if name not in trial.params:
            dist = recovered.distributions[name]
            storage.set_trial_param(tid, name, dist.to_internal_repr(value), dist)
    for key, value in recovered.user_attrs.items():
        if key not in trial.user_attrs:
            storage.set_trial_user_attr(tid, key, value)
    for key, value in recovered.system_attrs.items():
        if key not in trial.system_attrs:
            storage.set_trial_system_attr(tid, key, value)
    if trial.state == TrialState.WAITING:
        storage.set_trial_state_values(tid, TrialState.RUNNING)
    storage.set_trial_state_values(tid, recovered.state, recovered.values)


def repair_run(settings: SearchSettings, run_dir: Path, evaluator, log=print) -> dict:
    """Rebuild the run's journal from its valid lines, its evaluation log and trials.csv (see the module's text).
    Returns the counts it logged; an undamaged journal is left as it is."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir = Path(run_dir)
    path = run_dir / JOURNAL
    records = read_evaluations(run_dir)
    kept, number, problem, total = read_journal_lines(path) if path.is_file() else ([], None, None, 0)
    tmp = run_dir / f"{JOURNAL}.repairing"
    tmp.unlink(missing_ok=True)
    tmp.write_bytes(b"".join(line + b"\n" for line in kept))
    try:
        storage = journal_storage(tmp)
        replayed = True
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):  # lines that parse but do not replay: start afresh
        tmp.write_bytes(b"")
        storage, replayed, kept = journal_storage(tmp), False, []
    if number is None and replayed and (kept or not records):
        tmp.unlink()
        log(f"{path}: every line parses and replays; nothing to repair")
        return {"repaired": False}
    lines = path.read_bytes().split(b"\n") if path.is_file() else []
    later = _later_trials(lines[len(kept) + 1 if replayed else 0:])
    rows = _table_rows(run_dir, log)
    directions = ["maximize" if OBJECTIVES[o][1] == "max" else "minimize" for o in settings.objectives]
    study = optuna.create_study(study_name="search", storage=storage, directions=directions, load_if_exists=True)
    existing = {t.number: t for t in study.get_trials(deepcopy=False)}
    top = max([*existing, *later, *records, *rows], default=-1)
    proposer = Proposer(settings, evaluator)
    counts = {"kept": sum(t.state.is_finished() for t in existing.values()), "rebuilt": 0, "lost": 0}
    for n in range(top + 1):
        trial = existing.get(n)
        if trial is not None and trial.state.is_finished():
            continue
        recovered = _recover(n, trial.user_attrs if trial else {}, later.get(n, {"user_attrs": {}}), records.get(n), rows.get(n),
                             settings, proposer)
        if recovered is not None:
            counts["rebuilt"] += 1
            _complete_in_place(storage, trial, recovered) if trial is not None else study.add_trial(recovered)
        elif trial is None:
            counts["lost"] += 1
            study.add_trial(_placeholder(n))
    if len(study.get_trials(deepcopy=False)) != top + 1:  # a number taken twice would shift every later result
        tmp.unlink()
        raise UserError(f"{path}: the repair could not keep the trials' numbers; nothing was changed (the journal is left as it was)")
    damaged = run_dir / f"{JOURNAL}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    while damaged.exists():
        damaged = damaged.with_name(damaged.name + "+")
    if path.exists():
        os.replace(path, damaged)
    os.replace(tmp, path)
    where = f"line {number} of {total} ({problem})" if number is not None else "it does not replay" if not replayed else "it was missing"
    log(f"repaired {path}: {where}; kept its first {len(kept)} lines ({counts['kept']} finished trials), rebuilt {counts['rebuilt']} "
        f"trials from the journal's later lines, {EVALUATIONS} and trials.csv; {counts['lost']} trial number(s) had no result on "
        f"disk (proposed anew); the damaged journal is kept as {damaged.name if damaged.exists() else 'nothing (there was none)'}")
    return {"repaired": True, **counts, "damaged": str(damaged)}
