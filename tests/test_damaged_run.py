"""A run folder damaged by a crash, a full disk or a copy cut short: a damaged journal is one line (exit 2, nothing
written), `--resume RUN --repair` rebuilds it from what is on disk, and a trials table whose rows do not parse is one
line naming the file, the row and the column (nas.report, nas.audit)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest

from conftest import assert_user_error, run_main, run_module
from test_nb201 import _table
from nas import runs
from nas.runs import SearchSettings
from nas.searching.evaluators import make_evaluator
from nas.searching.repair import repair_run
from nas.searching.results import counts_as_trial, trials_frame
from nas.searching.trial import Proposer

TRIALS = 14


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "t.csv"
    _table(path, rows=None)  # every cell whose first edge is not `none`: the rest are told the table's worst costs
    return path


def make_run(folder, table, trials: int = TRIALS, record_arch: bool = True):
    """A finished nb201 search made in this process as the driver makes one (Proposer, tell, evaluation log), without
    Ray: config.json, optuna.journal, evaluations.jsonl and trials.csv."""
    settings = SearchSettings(space="nb201", evaluator=f"table:{table}", flops=60e6, trials=trials, references=False,
                              sampler="random", run_dir=str(folder))
    folder.mkdir()
    runs.write_config(settings, folder, {"status": "started"})
    evaluator = make_evaluator(settings)
    proposer = Proposer(settings, evaluator)
    study = optuna.create_study(study_name="search", storage=runs.journal(folder), directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(trials):
        trial = study.ask()
        config = proposer(trial)
        from search_spaces import Arch

        acc = evaluator.score(Arch.from_json(config["arch"]), None) if config["feasible"] else 0.0
        record = {"trial": trial.number, "evaluated": config["feasible"], "eval_time_s": 0.0, "acc": acc, "node": "here"}
        runs.append_evaluation(folder, {**record, "arch": config["arch"]} if record_arch else record)
        study.tell(trial, [acc, config["macs"]])
    trials_frame(folder, "random").to_csv(folder / "trials.csv", index=False)
    return settings


@pytest.fixture(scope="module")
def made(tmp_path_factory, table):
    """Two finished runs, made once: their evaluation logs with and without the architectures (as before --repair)."""
    root = tmp_path_factory.mktemp("made")
    for record_arch in (True, False):
        make_run(root / f"archs-{record_arch}", table, record_arch=record_arch)
    return root


def copy_run(made, tmp_path, record_arch: bool = True):
    """(a copy of a made run in tmp_path/run, its settings)."""
    run = tmp_path / "run"
    shutil.copytree(made / f"archs-{record_arch}", run)
    settings = runs.read_settings(run)
    settings.run_dir = str(run)
    return run, settings


def finished(folder) -> dict:
    """trial number -> (arch, state, values) of the trials that count."""
    return {t.number: (t.user_attrs["arch"], t.state, t.values) for t in runs.study_trials(folder) if counts_as_trial(t)}


def snapshot(folder) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def journal_lines(folder) -> list[bytes]:
    return (folder / runs.JOURNAL).read_bytes().split(b"\n")[:-1]


def cut_in_half(folder) -> None:
    path = folder / runs.JOURNAL
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def garble(folder, line: int, text: bytes = b'{"op_code":8,"worker_id":"\x01\x02"') -> None:
    lines = journal_lines(folder)
    lines[line - 1] = text
    (folder / runs.JOURNAL).write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("damage, line, fragment", [
    ("cut in half", None, "it has no line end: a write cut short by a full disk, a crash or a copy cut short"),
    ("garbled last line", -1, "it is not JSON: Invalid control character"),
    ("garbled middle line", 40, "it is not JSON"),
    ("middle line not an operation", 41, "JSON but not an Optuna journal operation"),
])
def test_a_damaged_journal_is_one_line_naming_file_and_line_and_nothing_is_written(tmp_path, made, damage, line, fragment):
    run, _ = copy_run(made, tmp_path)
    total = len(journal_lines(run))
    if line is None:
        cut_in_half(run)
        line = len(journal_lines(run)) + 1  # the torn line has no line end
        total = line
    elif damage == "middle line not an operation":
        garble(run, line, b'[1, 2, 3]')
    else:
        line = total if line == -1 else line
        garble(run, line)
    before = snapshot(run)
    proc = run_main("nas.search", "--resume", str(run), "--trials", str(TRIALS + 5), cwd=tmp_path)
    assert_user_error(proc, f"{run / runs.JOURNAL}: line {line} of {total} is damaged", fragment, "nothing was changed",
                      f"--resume {run} --repair", f"keeps the {line - 1} lines before it")
    assert snapshot(run) == before and not (tmp_path / "results").exists()


@pytest.mark.parametrize("damage", ["cut in half", "garbled middle line", "garbled first line"])
@pytest.mark.parametrize("record_arch", [True, False], ids=["log-with-archs", "log-without-archs"])
def test_repair_keeps_the_valid_lines_and_rebuilds_every_finished_trial(tmp_path, made, damage, record_arch):
    run, settings = copy_run(made, tmp_path, record_arch)
    want = finished(run)
    original = journal_lines(run)
    if damage == "cut in half":
        cut_in_half(run)
        bad = len(journal_lines(run)) + 1
    else:
        bad = 1 if damage == "garbled first line" else len(original) // 2
        garble(run, bad)
    damaged_bytes = (run / runs.JOURNAL).read_bytes()
    logged = []
    counts = repair_run(settings, run, make_evaluator(settings), log=logged.append)
    assert counts["repaired"] and counts["lost"] == 0 and counts["kept"] + counts["rebuilt"] == TRIALS, counts
    assert finished(run) == want  # same numbers, architectures, states and told values
    assert journal_lines(run)[:bad - 1] == original[:bad - 1]  # the valid lines before the damage, byte for byte
    kept = [p for p in run.iterdir() if p.name.startswith(f"{runs.JOURNAL}.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes() == damaged_bytes
    assert len(logged) == 1 and f"line {bad} of" in logged[0] and f"kept its first {bad - 1} lines" in logged[0]
    # what the sampler resumes from: each trial's parameters, costs and constraints as when it was proposed
    fresh = {t.number: t for t in runs.study_trials(run)}
    for t in runs.study_trials(made / f"archs-{record_arch}"):
        assert (fresh[t.number].params, fresh[t.number].user_attrs, fresh[t.number].constraints) == (t.params, t.user_attrs, t.constraints)
    assert repair_run(settings, run, make_evaluator(settings), log=logged.append) == {"repaired": False}  # nothing left to repair
    assert "nothing to repair" in logged[-1]


def test_a_lost_journal_with_results_on_disk_is_refused_then_rebuilt(tmp_path, made):
    run, settings = copy_run(made, tmp_path)
    want = finished(run)
    (run / runs.JOURNAL).write_bytes(b"")  # a copy cut short at zero bytes
    proc = run_main("nas.search", "--resume", str(run), "--trials", str(TRIALS + 1), cwd=tmp_path)
    assert_user_error(proc, f"{run / runs.JOURNAL}: empty while evaluations.jsonl holds {TRIALS} trial results", "--repair")
    repair_run(settings, run, make_evaluator(settings), log=lambda line: None)
    assert finished(run) == want


@pytest.mark.parametrize("target", ["the journal", "a relative path"])
def test_a_lock_a_killed_writer_left_is_taken_over(tmp_path, made, monkeypatch, target):
    """A kill during a journal write leaves Optuna's lock (a symbolic link to the journal): the next writer takes it
    over after the grace period instead of waiting, or spinning, for ever (a link to a relative path dangles)."""
    import threading

    monkeypatch.setattr("nas.journal.LOCK_GRACE_S", 1)
    run, _ = copy_run(made, tmp_path)
    lock = run / f"{runs.JOURNAL}.lock"
    os.symlink(str((run / runs.JOURNAL).resolve()) if target == "the journal" else f"{run.name}/{runs.JOURNAL}", lock)
    os.utime(lock, (time.time() - 60, time.time() - 60), follow_symlinks=False)
    wrote = []
    writer = threading.Thread(target=lambda: wrote.append(
        optuna.load_study(study_name="search", storage=runs.journal(run)).enqueue_trial({"s0_l0_block": "none"})), daemon=True)
    t0 = time.time()
    writer.start()
    writer.join(timeout=30)
    assert wrote and time.time() - t0 < 10 and not lock.is_symlink()
    assert len(runs.study_trials(run)) == TRIALS + 1


def test_repair_goes_with_resume(tmp_path):
    assert_user_error(run_main("nas.search", "--space", "nb201", "--repair", cwd=tmp_path), "--repair goes with --resume RUN")


def _damaged_table(run, column, value):
    df = pd.read_csv(run / "trials.csv")
    row = df.index[df["status"].eq("ok") & df["feasible"] & df["evaluated"]][1]  # an evaluated trial: its accuracy is required
    df[column] = df[column].astype(object)
    df.loc[row, column] = value
    df.to_csv(run / "trials.csv", index=False)
    return row


@pytest.mark.parametrize("column, value, fragment", [
    ("status", "nan", "column status holds nothing; allowed: ok, failed"),  # pandas reads the text nan as missing
    ("status", "done", "column status holds 'done'; allowed: ok, failed"),
    ("acc", "nan", "has acc nan; allowed: an accuracy between 0 and 1"),
    ("acc", "1.5", "has acc 1.5; allowed: an accuracy between 0 and 1"),
    ("trial", "1e30", "column trial holds 1e+30; allowed: a whole number from 0 to 1,000,000,000"),
    ("trial", "2.5", "column trial holds 2.5; allowed: a whole number from 0 to 1,000,000,000"),
    ("trial", "-1", "column trial holds -1.0; allowed: a whole number from 0 to 1,000,000,000"),
])
def test_report_and_audit_name_the_file_row_and_column_of_a_row_that_does_not_parse(tmp_path, made, column, value, fragment):
    run, _ = copy_run(made, tmp_path)
    row = _damaged_table(run, column, value)
    (run / "supernet.pt").write_bytes(b"")  # the audit looks for a checkpoint first; it never gets to read this one
    where = f"{run / 'trials.csv'}: row {row + 1} (line {row + 2})"
    for module in ("nas.report", "nas.audit"):
        before = snapshot(run)
        assert_user_error(run_main(module, str(run), cwd=tmp_path), where, fragment)
        assert snapshot(run) == before


def test_an_empty_trials_table_is_one_line(tmp_path, made):
    run, _ = copy_run(made, tmp_path)
    (run / "trials.csv").write_bytes(b"")
    assert_user_error(run_main("nas.report", str(run), cwd=tmp_path), "trials.csv: empty file (zero bytes)")


def _search(table, out, trials, *extra):
    return ["nas.search", "--space", "nb201", "--evaluator", f"table:{table}", "--flops", "60M", "--trials", str(trials),
            "--no-references", "--out", str(out), *extra]


@pytest.mark.slow
def test_a_torn_journal_is_refused_then_repaired_and_resumed_with_nothing_lost_or_evaluated_again(tmp_path, table):
    run = tmp_path / "run"
    assert run_module(*_search(table, run, 12), cwd=tmp_path).returncode == 0
    before = pd.read_csv(run / "trials.csv")
    garble(run, len(journal_lines(run)) // 3)
    assert_user_error(run_module("nas.search", "--resume", str(run), "--trials", "16", cwd=tmp_path), "is damaged", "--repair")
    proc = run_module("nas.search", "--resume", str(run), "--trials", "16", "--repair", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"repaired {run / runs.JOURNAL}: line ")
    after = pd.read_csv(run / "trials.csv")
    assert len(after) == 16 and after["arch"].is_unique
    assert after.set_index("trial").loc[before["trial"], ["arch", "status"]].equals(before.set_index("trial")[["arch", "status"]])
    records = [json.loads(line) for line in (run / runs.EVALUATIONS).read_text().splitlines()]
    assert len({r["arch"] for r in records}) == len(records) == 16  # none evaluated twice


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_says_how_to_resume_and_resumes(tmp_path, table):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", *_search(table, run, 30)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    for line in proc.stdout:
        if line.startswith("trial 5/30"):
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground process group
            break
        assert time.time() < deadline
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    done = len(pd.read_csv(run / "trials.csv"))
    assert 5 <= done < 30
    assert err.splitlines()[-1] == (f"interrupted: {done} of 30 trials are done and kept (results so far in {run}/); continue with: "
                                    f"python -m nas.search --resume {run}")
    assert "Traceback" not in err and "Tuner.restore" not in err
    resumed = run_module("nas.search", "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = pd.read_csv(run / "trials.csv")
    assert len(after) == 30 and after["arch"].is_unique
