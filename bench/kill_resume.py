"""Fault injection: searches killed with SIGKILL at random moments, each resumed; and one stopped with Ctrl-C.

    python bench/kill_resume.py --table ../shared/data/nb201/nb201_cifar10.csv [--kills 20] [--trials 40] [--seed 0]
        [--out results/bench/kill_resume]

Each kill is its own run: `python -m nas.search --space nb201 --evaluator table:TABLE --flops 50M --trials N --seed k`
(seconds per run: the table is the evaluation) in its own process group, SIGKILLed whole (the driver and the Ray
processes it started, as a crash or an OOM kill would) at a random moment. Every other kill comes right after a
trial's progress line is read, that is while the driver tells Optuna that trial's result and appends it to the
journal; the others at a random time from the start to the length of an unkilled run (Ray's start, the trials,
the result files). Then `python -m nas.search --resume RUN` (with `--repair` when that says so; the original
command again when the kill came before the run folder held a config.json) until it exits 0.

A kill counts as resumed when the run ends with its N trials in trials.csv, each architecture once, every result
the evaluation log held at the kill in trials.csv with the same architecture and accuracy (nothing lost), and no
architecture evaluated twice (the evaluation log holds one trial per architecture: nothing repeated).

Then --tears runs are killed the same way and their journal cut at a random byte of its second half (what a full disk
or a copy cut short leaves): the resume must refuse it in one line naming --repair, and --repair must bring the run
to its N trials with nothing lost or repeated (the results after the cut come back from the evaluation log).

Then one run gets SIGINT (what Ctrl-C sends to the foreground process group) after a random trial: it must exit
130 with a last line that says how to resume, and resume to its N trials the same way.

The last line: "N of K kills resumed to the requested trials with no trial lost or repeated".
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

MARKER = "KILL_RESUME_BENCH"


def search_args(table: str, out: Path, trials: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "nas.search", "--space", "nb201", "--evaluator", f"table:{table}", "--flops", "50M",
            "--trials", str(trials), "--seed", str(seed), "--out", str(out)]


def end_leftovers(marker: str) -> int:
    """End the processes a killed run left (Ray's, reparented); how many there were."""
    left = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(MARKER) == marker:
                left.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=10)
    return len(left)


def run_until(args: list[str], marker: str, after_line: int | None = None, after_s: float | None = None,
              sig=signal.SIGKILL) -> dict:
    """Run a search in its own process group and send it `sig` after its `after_line`-th trial line or after `after_s`."""
    env = {**os.environ, MARKER: marker, "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    errors = tempfile.TemporaryFile("w+")  # read after the end: a pipe nobody reads could fill and stall the run
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True, env=env, start_new_session=True)
    seen, sent = 0, None
    if after_line is not None:
        for line in proc.stdout:
            if line.startswith("trial "):
                seen += 1
                if seen == after_line:
                    os.killpg(proc.pid, sig)
                    sent = time.time() - t0
                    break
    else:
        try:
            proc.wait(timeout=after_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, sig)
            sent = time.time() - t0
    out, _ = proc.communicate(timeout=300)
    errors.seek(0)
    err = errors.read()
    if sig == signal.SIGKILL:
        end_leftovers(marker)
    return {"code": proc.returncode, "sent_s": sent, "trial_lines": seen, "stderr": err, "stdout": out}


def resume(run: Path, first: list[str], marker: str) -> tuple[str, int]:
    """Resume a killed run until it exits 0: (how, exit status of the last command)."""
    cmd = [sys.executable, "-m", "nas.search", "--resume", str(run)]
    if not (run / "config.json").is_file():  # killed before the run folder held anything to resume: the same command again
        how, cmd = "rerun", first
        if run.exists() and not any(run.iterdir()):
            run.rmdir()
    else:
        how = "resume"
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, MARKER: marker})
    end_leftovers(marker)
    if proc.returncode == 2 and "--repair" in proc.stderr:
        print(f"    resume: {proc.stderr.strip().splitlines()[-1][:160]}", flush=True)
        how = "repair"
        proc = subprocess.run([*cmd, "--repair"], capture_output=True, text=True, env={**os.environ, MARKER: marker})
        end_leftovers(marker)
    if proc.returncode != 0:
        print(f"    {how} failed, exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else ''}")
    return how, proc.returncode


def records(run: Path) -> list[dict]:
    path = run / "evaluations.jsonl"
    found = []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def verdict(run: Path, before: list[dict], trials: int) -> tuple[bool, str]:
    """Whether the resumed run holds its trials with nothing lost or repeated, and what is wrong if not."""
    if not (run / "trials.csv").is_file():
        return False, "no trials.csv"
    df = pd.read_csv(run / "trials.csv")
    if len(df) != trials or not df["arch"].is_unique or not df["trial"].is_unique:
        return False, f"{len(df)} trials, {df['arch'].nunique()} distinct"
    by_trial = df.set_index("trial")
    for r in before:
        if r["trial"] not in by_trial.index or by_trial.at[r["trial"], "arch"] != r["arch"]:
            return False, f"trial {r['trial']} recorded before the kill is lost"
        acc = by_trial.at[r["trial"], "acc"]
        if r["evaluated"] and not math.isclose(acc, r["acc"]):
            return False, f"trial {r['trial']}: acc {acc} after, {r['acc']} before"
    after = records(run)
    trials_of = {}
    for r in after:
        trials_of.setdefault(r["arch"], set()).add(r["trial"])
    repeated = [a for a, t in trials_of.items() if len(t) > 1]
    if repeated or len(after) != len({r["trial"] for r in after}):
        return False, f"{len(repeated)} architectures evaluated twice"
    return True, "ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default="../shared/data/nb201/nb201_cifar10.csv")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--tears", type=int, default=3, help="runs whose journal is also cut short after the kill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/bench/kill_resume")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    marker = f"{os.getpid()}-{time.time_ns()}"
    t0 = time.time()
    calib = run_until(search_args(args.table, out / "unkilled", args.trials, args.seed), marker, after_s=600)
    full_s = time.time() - t0
    assert calib["code"] == 0, calib["stderr"][-2000:]
    print(f"an unkilled run of {args.trials} trials: {full_s:.1f} s", flush=True)
    good, hows, rows, latest = 0, {}, [], full_s
    for k in range(args.kills):
        run = out / f"kill{k:02d}"
        first = search_args(args.table, run, args.trials, args.seed + 1 + k)
        if k % 2 == 0:
            line = rng.randint(1, args.trials - 1)
            killed = run_until(first, marker, after_line=line)
            moment = f"after trial line {line}"
        else:
            for _ in range(10):  # a run that ends before its kill is no kill: again, before the end seen
                at = rng.uniform(0.5, 0.95 * latest)
                t1 = time.time()
                killed = run_until(first, marker, after_s=at)
                if killed["code"] == -signal.SIGKILL:
                    break
                latest = min(latest, time.time() - t1)
                print(f"    (the run ended before {at:.1f} s, in {time.time() - t1:.1f} s: not a kill; again)", flush=True)
                shutil.rmtree(run)
            moment = f"at {at:.1f} s"
        before = records(run)
        lock = (run / "optuna.journal.lock").exists()
        how, code = resume(run, first, marker)
        ok, why = verdict(run, before, args.trials) if code == 0 else (False, f"exit {code}")
        ok = ok and killed["code"] == -signal.SIGKILL
        good += ok
        hows[how] = hows.get(how, 0) + 1
        rows.append({"kill": k, "moment": moment, "exit": killed["code"], "results_at_kill": len(before), "lock_left": lock,
                     "resumed_by": how, "ok": ok, "why": why})
        state = "killed" if killed["code"] == -signal.SIGKILL else f"NOT killed (it ended first, exit {killed['code']})"
        print(f"kill {k + 1:2d}/{args.kills} {moment:>20}: {state}, {len(before):2d} results on disk"
              f"{', journal lock left' if lock else ''}; {how} -> {why}", flush=True)
    pd.DataFrame(rows).to_csv(out / "kills.csv", index=False)

    torn = 0
    for k in range(args.tears):
        run = out / f"torn{k}"
        first = search_args(args.table, run, args.trials, args.seed + 500 + k)
        line = rng.randint(args.trials // 2, args.trials - 1)
        run_until(first, marker, after_line=line)
        journal = run / "optuna.journal"
        data = journal.read_bytes()
        cut = rng.randint(len(data) // 2, len(data) - 2)
        journal.write_bytes(data[:cut])
        before = records(run)
        how, code = resume(run, first, marker)
        ok, why = verdict(run, before, args.trials) if code == 0 else (False, f"exit {code}")
        torn += ok and how == "repair"
        print(f"torn journal {k + 1}/{args.tears}: killed after trial line {line}, cut at byte {cut} of {len(data)}; {how} -> {why}",
              flush=True)

    run = out / "ctrl_c"
    line = rng.randint(2, args.trials - 2)
    first = search_args(args.table, run, args.trials, args.seed + 1000)
    stopped = run_until(first, marker, after_line=line, sig=signal.SIGINT)
    last = stopped["stderr"].strip().splitlines()[-1] if stopped["stderr"].strip() else ""
    says = last.startswith("interrupted: ") and f"python -m nas.search --resume {run}" in last
    before = records(run)
    how, code = resume(run, first, marker)
    ok, why = verdict(run, before, args.trials) if code == 0 else (False, f"exit {code}")
    print(f"Ctrl-C after trial line {line}: exit {stopped['code']}, last line: {last!r}", flush=True)
    print(f"Ctrl-C: {'stopped cleanly (exit 130), said how to resume' if stopped['code'] == 130 and says else 'NOT clean'}; "
          f"{how} -> {why}", flush=True)
    print(f"{torn} of {args.tears} torn journals refused in one line and repaired with nothing lost or repeated", flush=True)
    print(f"kills resumed by: {', '.join(f'{h} {n}' for h, n in sorted(hows.items()))}; {time.time() - t0:.0f} s in all", flush=True)
    print(f"{good} of {args.kills} kills resumed to the requested trials with no trial lost or repeated")


if __name__ == "__main__":
    main()
