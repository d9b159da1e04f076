"""Runs read for a report: the trials table of each run folder, checked column by column, and the run's
settings (through the run store) for labels and limits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from search_spaces import Arch, ArchError

from nas import runs
from nas.errors import UserError

REQUIRED_COLUMNS = ("trial", "status", "feasible", "acc", "macs", "params", "arch")


NUMERIC_COLUMNS = ("trial", "acc", "macs", "params", "latency_ms", "latency_measured_ms", "eval_time_s", "duration_s")


BOOL_COLUMNS = ("feasible", "evaluated", "is_pareto")


STATUSES = ("ok", "failed")  # what nas.searching.results writes
MAX_TRIAL_NUMBER = 10**9  # Optuna numbers every proposal; a run takes at most 100,000 trials


_BOOLS = {True: True, False: False, "True": True, "False": False, "true": True, "false": False, "1": True, "0": False}


def _read_table(run_dir: Path) -> tuple[pd.DataFrame, Path]:
    if not run_dir.exists():
        raise UserError(f"{run_dir}: does not exist; give a run folder written by nas.search (results/<run>)")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder; give a run folder written by nas.search (results/<run>)")
    path = next((p for p in (run_dir / "trials.parquet", run_dir / "trials.csv") if p.is_file()), None)
    if path is None:
        raise UserError(f"{run_dir}: not a search run (no trials.csv or trials.parquet); runs are the folders nas.search writes under results/")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (zero bytes); a trials table has a header and one row per trial")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: empty file (no header); a trials table has a header and one row per trial") from None
    except (ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot be read as a trials table ({reason})") from None
    return df, path


def _row(path: Path, i) -> str:
    """Where the i-th trial row (from 0) of a table is: its row, and for a CSV file its line (the header is line 1)."""
    return f"row {i + 1} (line {i + 2})" if path.suffix == ".csv" else f"row {i + 1}"


def _clean(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The trials table with checked columns and types, in proposal order; a user error names the first problem, with its
    row and column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: columns missing: {', '.join(missing)} (a trials table needs {', '.join(REQUIRED_COLUMNS)})")
    if df.empty:
        raise UserError(f"{path}: has a header but no trials")
    df = df.reset_index(drop=True).copy()
    for column in (c for c in NUMERIC_COLUMNS if c in df.columns):
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() & df[column].notna()
        if bad.any():
            i = bad.idxmax()
            raise UserError(f"{path}: {_row(path, i)}, column {column} holds {df[column][i]!r}; it must hold numbers")
        df[column] = values
    for column in (c for c in NUMERIC_COLUMNS if c in df.columns and c not in ("trial", "acc")):
        bad = np.isinf(df[column]) | (df[column] < 0)
        if bad.any():
            i = bad.idxmax()
            raise UserError(f"{path}: {_row(path, i)}: trial {df['trial'][i]} has {column} {float(df[column][i])!r}; "
                            "allowed: a finite value >= 0 (or empty)")
    if df["trial"].isna().any():
        raise UserError(f"{path}: {_row(path, df['trial'].isna().idxmax())} has no trial number; column trial must number each trial once")
    bad = (df["trial"] % 1 != 0) | ~df["trial"].between(0, MAX_TRIAL_NUMBER)
    if bad.any():
        i = bad.idxmax()
        raise UserError(f"{path}: {_row(path, i)}, column trial holds {float(df['trial'][i])!r}; allowed: a whole number from 0 to "
                        f"{MAX_TRIAL_NUMBER:,}")
    if df["trial"].duplicated().any():
        i = df["trial"].duplicated().idxmax()
        raise UserError(f"{path}: {_row(path, i)} repeats trial {int(df['trial'][i])}; column trial must number each trial once")
    df["trial"] = df["trial"].astype(int)
    for column in (c for c in BOOL_COLUMNS if c in df.columns):
        values = df[column].map(_BOOLS)
        if values.isna().any():
            i = values.isna().idxmax()
            raise UserError(f"{path}: {_row(path, i)}, column {column} holds {df[column][i]!r}; it must hold True or False")
        df[column] = values.astype(bool)
    bad = ~df["status"].isin(STATUSES)
    if bad.any():
        i = bad.idxmax()
        value = "nothing" if pd.isna(df["status"][i]) else repr(df["status"][i])
        raise UserError(f"{path}: {_row(path, i)}, column status holds {value}; allowed: {', '.join(STATUSES)}")
    if "evaluated" not in df.columns:
        df["evaluated"] = df["status"].eq("ok") & df["feasible"] & df["acc"].notna()
    counted = df["status"].eq("ok") & df["feasible"] & df["evaluated"]
    bad = counted & ~df["acc"].between(0, 1)  # failed and infeasible rows never count, whatever they hold
    if bad.any():
        i = bad.idxmax()
        raise UserError(f"{path}: {_row(path, i)}: trial {df['trial'][i]} has acc {float(df['acc'][i])!r}; allowed: an accuracy between "
                        "0 and 1 (the trial is ok, feasible and evaluated)")
    for i, (trial, text) in enumerate(zip(df["trial"], df["arch"])):
        if not isinstance(text, str):
            raise UserError(f"{path}: {_row(path, i)}: trial {trial} has no architecture in column arch")
        try:
            Arch.from_json(text)
        except ArchError as e:
            raise UserError(f"{path}: {_row(path, i)}: trial {trial}: arch: {e}") from None
    return df.sort_values("trial").reset_index(drop=True)


def _limits_text(settings: dict) -> str:
    parts = [f"{name} <= {settings[key] / scale:g} {unit}" for key, name, scale, unit in
             (("flops", "MACs", 1e9, "G"), ("params", "params", 1e6, "M"), ("latency_ms", "latency", 1.0, "ms")) if settings.get(key) is not None]
    return ", ".join(parts) or "none"


def load_runs(*run_dirs: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the trials of every run in one table with a `run` column, one row of settings per run indexed by run name).

    A run is named after its folder; when two folders share a name, runs are named by their paths.
    Everything is checked before anything is returned: a bad input raises UserError naming it.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise UserError("no run given; give one or more run folders written by nas.search (results/<run>)")
    resolved = [p.resolve() for p in paths]
    for k, r in enumerate(resolved):
        if r in resolved[:k]:
            raise UserError(f"{paths[k]}: given twice; give each run once")
    names = [r.name for r in resolved]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    tables, settings_rows = [], []
    for name, path in zip(names, paths):
        df, table_path = _read_table(path)
        tables.append(_clean(df, table_path).assign(run=name))
        settings = runs.stored_settings(path)
        sampler = settings.get("sampler")
        settings_rows.append({
            "run": name, "label": f"{name} ({sampler})" if sampler else name, "folder": str(path),
            "space": settings.get("space"), "sampler": sampler, "objectives": ",".join(settings.get("objectives") or []) or None,
            "limits": _limits_text(settings), "trials requested": settings.get("trials"),
            "flops": settings.get("flops"), "params": settings.get("params"), "latency_ms": settings.get("latency_ms"),
        })
    trials = pd.concat(tables, ignore_index=True)
    trials["run"] = pd.Categorical(trials["run"], categories=names)
    trials = trials[["run", *(c for c in trials.columns if c != "run")]]
    return trials, pd.DataFrame(settings_rows).set_index("run")


def load_trials(*run_dirs: str | Path) -> pd.DataFrame:
    """The trials of one or several runs in one DataFrame, with a `run` column (see load_runs)."""
    return load_runs(*run_dirs)[0]
