"""A search run's result files: trials.csv/.parquet, pareto.csv, best.json (+ results/best.json), report.md."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from search_spaces.atomic import write_bytes_atomic, write_text_atomic

from nas import runs
from nas.reporting.pareto import pareto_mask
from nas.reporting.document import transfer_lines_of_run, write_report

COLUMNS = ["trial", "status", "feasible", "evaluated", "acc", "macs", "params", "latency_ms", "latency_measured_ms", "is_pareto",
           "eval_time_s", "duration_s", "node", "proposed_by", "arch"]


def counts_as_trial(t) -> bool:
    """A trial of the run's budget and tables: completed or failed with an architecture, neither interrupted by a kill
    nor a repeat of an evaluated architecture (told its earlier result without a Ray Tune trial: `repeat_of`)."""
    from optuna.trial import TrialState

    return (t.state in (TrialState.COMPLETE, TrialState.FAIL) and "arch" in t.user_attrs and not t.user_attrs.get("interrupted")
            and "repeat_of" not in t.user_attrs)


def trials_frame(run_dir: Path, sampler: str = "") -> pd.DataFrame:
    """One row per finished trial of the run's Optuna journal; `proposed_by` says whether the sampler proposed it
    (sampler:<name>) or it is a reference member of the space enqueued first (reference:<name>)."""
    from optuna.trial import TrialState

    evaluations = runs.read_evaluations(run_dir)
    rows = []
    for t in runs.study_trials(run_dir):
        if not counts_as_trial(t):
            continue
        feasible = bool(t.user_attrs["feasible"])
        ok = t.state == TrialState.COMPLETE
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else np.nan
        rows.append({
            "trial": t.number, "status": "ok" if ok else "failed", "feasible": feasible,
            "acc": t.values[0] if ok and feasible else np.nan,
            "macs": np.nan if t.user_attrs["macs"] is None else t.user_attrs["macs"],
            "params": np.nan if t.user_attrs["params"] is None else t.user_attrs["params"],
            "latency_ms": t.user_attrs.get("latency_ms") if t.user_attrs.get("latency_ms") is not None else np.nan,
            "proposed_by": f"reference:{t.user_attrs['reference']}" if t.user_attrs.get("reference") else f"sampler:{sampler}",
            "latency_measured_ms": np.nan,
            "is_pareto": False, "duration_s": duration, "arch": t.user_attrs["arch"],
            "evaluated": bool(evaluations.get(t.number, {}).get("evaluated", False)),
            "eval_time_s": evaluations.get(t.number, {}).get("eval_time_s", np.nan),
            "node": evaluations.get(t.number, {}).get("node"),  # the Ray node that evaluated it (first 12 hex digits)
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({"feasible": bool, "is_pareto": bool, "evaluated": bool})


def mark_pareto(df: pd.DataFrame, cost: str = "macs") -> pd.DataFrame:
    df = df.copy()
    df["is_pareto"] = False
    ok = (df["status"] == "ok") & df["feasible"] & df["acc"].notna()
    df.loc[ok, "is_pareto"] = pareto_mask(df[ok], ["acc"], [cost])
    return df


def measure_pareto_latency(df: pd.DataFrame, settings, rows) -> pd.DataFrame:
    """Measured latency (target scale, the search's device; the rows' models timed round-robin in rounds)
    of the given rows, in latency_measured_ms; latency_over_limit flags the ones the predictor let through
    over --latency."""
    from search_spaces import Arch, get_space
    from supernet import ArchNet

    from nas.measure.latency import measure_models

    df = df.copy()
    space = get_space(settings.space)
    models = [ArchNet(Arch.from_json(df.at[i, "arch"]), space.target) for i in rows]
    measured = measure_models(models, space.target.img_size, settings.latency_batch, settings.device,
                              settings.latency_threads or None, progress="measuring latency")
    for i, lat in zip(rows, measured):
        df.at[i, "latency_measured_ms"] = lat.median_ms
    if settings.latency_ms is not None:
        df["latency_over_limit"] = df["latency_measured_ms"] > settings.latency_ms
    return df


def _write_table(df: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, df.to_csv(index=False))


def write_results(settings, run_dir: Path, seconds: float) -> dict:
    cost = settings.cost_column()
    df = mark_pareto(trials_frame(run_dir, settings.sampler), cost)
    evaluated = df[(df["status"] == "ok") & df["feasible"]]
    best_row = evaluated.sort_values(["acc", "macs"], ascending=[False, True]).index[0] if len(evaluated) else None
    table = settings.evaluator != "supernet"
    if settings.uses_latency and table:  # a table's latencies are measured ones
        df["latency_measured_ms"] = df["latency_ms"]
        if settings.latency_ms is not None:
            df["latency_over_limit"] = df["latency_measured_ms"] > settings.latency_ms
    elif settings.uses_latency:
        members = sorted(set(df.index[df["is_pareto"]]) | ({best_row} if best_row is not None else set()))
        print(f"measuring the latency of {len(members)} architectures (Pareto front and best) on {settings.device}", flush=True)
        df = measure_pareto_latency(df, settings, members)
    _write_table(df, run_dir / "trials.csv")
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes_atomic(run_dir / "trials.parquet", buf.getvalue())
    pareto = df[df["is_pareto"]].sort_values(cost)
    _write_table(pareto, run_dir / "pareto.csv")
    summary = {"run": str(run_dir), "trials": int(len(df)), "feasible": int(df["feasible"].sum()),
               "failed": int((df["status"] == "failed").sum()), "pareto": int(len(pareto)), "seconds": seconds, "best": None}
    if best_row is not None:
        row = df.loc[best_row]
        best = {"space": settings.space, "arch": json.loads(row["arch"]), "accuracy": float(row["acc"]), "macs": int(row["macs"]),
                "params": int(row["params"]), "trial": int(row["trial"]), "run": str(run_dir), "limits": settings.limits(),
                "split": f"the table's {settings.score} ({settings.evaluator})" if table else "validation (inherited supernet weights)"}
        if settings.uses_latency:
            best["latency_ms"] = {"predicted": float(row["latency_ms"]), "measured": float(row["latency_measured_ms"]),
                                  "device": settings.device, "batch_size": settings.latency_batch}
        text = json.dumps(best, indent=2) + "\n"
        write_text_atomic(run_dir / "best.json", text)
        write_text_atomic(runs.RESULTS_ROOT / "best.json", text)
        summary["best"] = best
        summary["transfer"] = transfer_lines_of_run(run_dir, df)
    try:
        write_report(run_dir)
    except Exception as e:  # the results above are written; a report that fails must not fail the search
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"warning: report.md was not written ({reason[:200]}); the results are; try python -m nas.report {run_dir}",
              file=sys.stderr, flush=True)
    return summary
