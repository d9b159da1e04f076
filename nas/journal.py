"""A search run's Optuna journal (the sampler's history) and evaluation log (each trial result the driver received).

The journal is Optuna's JournalStorage over a JournalFileBackend: one JSON operation per line, appended. A crash,
a full disk or a copy cut short can leave a line cut short or garbled; Optuna then fails with a JSONDecodeError
traceback, or silently drops the line and writes the next operation onto it. So the journal is opened only when
every line parses; a damaged one is one line naming the file, the line and what to do (`--resume RUN --repair`,
nas.searching.repair), and nothing is written.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from nas.errors import UserError

JOURNAL = "optuna.journal"
EVALUATIONS = "evaluations.jsonl"
LOCK_GRACE_S = 5  # a lock file a killed process left is removed after this long unchanged (a live writer holds it for ms)
CUT_SHORT = "it has no line end: a write cut short by a full disk, a crash or a copy cut short"


class JournalDamaged(UserError):
    """A journal line that does not parse (or a journal Optuna cannot replay); its message says what to do."""


def line_problem(line: bytes) -> str | None:
    """What is wrong with one journal line, or None when it is an Optuna journal operation."""
    from optuna.storages.journal._storage import JournalOperation

    try:
        op = json.loads(line)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"it is not JSON: {(getattr(e, 'msg', None) or type(e).__name__).removesuffix(' at')}"
    if not isinstance(op, dict) or op.get("op_code") not in {int(o) for o in JournalOperation} or isinstance(op.get("op_code"), bool):
        return "it is JSON but not an Optuna journal operation"
    return None


def read_journal_lines(path: Path) -> tuple[list[bytes], int | None, str | None, int]:
    """(the lines before the first damaged one, that line's number from 1 or None, what is wrong with it, lines in all)."""
    lines = Path(path).read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a line end
    total = len(lines) + (1 if tail else 0)
    for number, line in enumerate(lines, 1):
        problem = line_problem(line)
        if problem:
            return lines[:number - 1], number, problem, total
    if tail:
        return lines, total, CUT_SHORT, total
    return lines, None, None, total


def damage_message(run_dir: Path, number: int, problem: str, total: int) -> str:
    path = Path(run_dir) / JOURNAL
    return (f"{path}: line {number} of {total} is damaged ({problem}); nothing was changed. Repair it with: python -m nas.search "
            f"--resume {run_dir} --repair (keeps the {number - 1} lines before it, rebuilds the trials after it from {EVALUATIONS} "
            f"and trials.csv, and keeps the damaged file as {JOURNAL}.damaged-<time>)")


def check_journal(run_dir: Path) -> None:
    """Raise JournalDamaged naming the first line of the run's journal that does not parse; a missing journal is fine."""
    path = Path(run_dir) / JOURNAL
    if not path.is_file() or path.stat().st_size == 0:
        results = len(read_evaluations(run_dir))
        if results:
            raise JournalDamaged(f"{path}: {'missing' if not path.is_file() else 'empty'} while {EVALUATIONS} holds {results} trial "
                                 f"results; nothing was changed. Repair it with: python -m nas.search --resume {run_dir} --repair "
                                 f"(rebuilds the trials from {EVALUATIONS} and trials.csv)")
        return
    _, number, problem, total = read_journal_lines(path)
    if number is not None:
        raise JournalDamaged(damage_message(run_dir, number, problem, total))


def journal_storage(path: Path):
    """Optuna's JournalStorage over a journal file, its lock released after LOCK_GRACE_S when a killed process left it.

    The path is made absolute: Optuna's lock is a symbolic link to the journal, and one to a relative path dangles,
    so its grace period (which reads the age of the link's target) never ends and the next writer spins for ever."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    path = Path(path).resolve()
    lock = Path(f"{path}.lock")
    try:
        if lock.is_symlink() and not lock.exists():  # a dangling lock, left by a killed process of an earlier version
            time.sleep(max(0.0, LOCK_GRACE_S - (time.time() - lock.lstat().st_mtime)))
            lock.unlink(missing_ok=True)
    except FileNotFoundError:  # released meanwhile
        pass
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)))


def journal(run_dir: Path):
    """The run's journal as Optuna storage, after checking that every line parses (JournalDamaged otherwise)."""
    check_journal(run_dir)
    try:
        return journal_storage(Path(run_dir) / JOURNAL)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise JournalDamaged(f"{Path(run_dir) / JOURNAL}: every line parses but Optuna cannot replay them ({type(e).__name__}: "
                             f"{str(e)[:100]}); nothing was changed. Repair it with: python -m nas.search --resume {run_dir} "
                             "--repair") from None


def study_trials(run_dir: Path):
    storage = journal(run_dir)
    studies = storage.get_all_studies()
    if not studies:
        return []
    return storage.get_all_trials(studies[0]._study_id)


def append_evaluation(run_dir: Path, record: dict) -> None:
    """Append one record durably; a line cut short by an earlier kill is ended first, so this one survives."""
    path = Path(run_dir) / EVALUATIONS
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def read_evaluations(run_dir: Path) -> dict[int, dict]:
    """The driver's durable record of every trial result it received, by Optuna trial number."""
    path = Path(run_dir) / EVALUATIONS
    records = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # a line cut short by a kill
                continue
            if isinstance(record, dict) and isinstance(record.get("trial"), int) and not isinstance(record.get("trial"), bool):
                records[record["trial"]] = record
    return records
