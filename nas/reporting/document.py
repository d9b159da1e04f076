"""report.md with its PNG plots and CSV tables, for one run or a comparison of several."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from search_spaces.atomic import write_bytes_atomic, write_text_atomic

from nas import runs
from nas.measure.transfer import transfer_lines
from nas.reporting.analysis import (LATENCY, MACS, CostAxis, best_per_bin, evaluated_feasible, has_cost, hypervolume_curve,
                                   pareto_front, reference_cost, runs_of, runs_with, stored_pareto_mismatch)
from nas.reporting.choices import arch_summary, choice_statistics
from nas.reporting.load import load_runs
from nas.reporting.pareto import pareto_mask

FILES_DIR = "report"


def _display(rows: pd.DataFrame, multi: bool, latency: bool) -> pd.DataFrame:
    """Trials as a markdown-ready table: rounded values in report units and a compact architecture."""
    table = pd.DataFrame({"trial": rows["trial"], "acc": rows["acc"].round(4), "MACs (G)": (rows["macs"] / 1e9).round(3),
                          "params (M)": (rows["params"] / 1e6).round(2)})
    if latency:
        table["latency (ms, predicted)"] = rows["latency_ms"].round(2)
        if "latency_measured_ms" in rows.columns and rows["latency_measured_ms"].notna().any():
            table["latency (ms, measured)"] = rows["latency_measured_ms"].round(2)
    table["architecture: [merges] stages (; between stages)"] = rows["arch"].map(arch_summary)
    if multi:
        table.insert(0, "run", rows["run"].astype(str))
    return table


def _markdown(table: pd.DataFrame) -> str:
    """A pandas markdown table; missing values (NaN, None) show as –."""
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, missingval="–")


def _csv(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


@dataclass
class Report:
    """report.md's text and the files it refers to (path relative to the output folder -> content)."""

    markdown: str
    files: dict[str, bytes]


def _summary_table(trials: pd.DataFrame, settings: pd.DataFrame, curves: dict[str, pd.DataFrame],
                   fronts: dict[str, pd.DataFrame], axes: list[CostAxis]) -> pd.DataFrame:
    """One row per run: counts, the best trial, front sizes, hypervolume at the end and at half the trials,
    and (comparing runs) how many of the run's trials are on the front of all runs' trials together."""
    rows = []
    joint = trials[evaluated_feasible(trials, "macs")]
    joint = joint[pareto_mask(joint, ["acc"], ["macs"])]
    for run in runs_of(trials):
        name = run["run"].iloc[0]
        ok = run[evaluated_feasible(run, "macs")]
        best = ok.sort_values(["acc", "macs"], ascending=[False, True]).head(1)
        row = {"run": settings.at[name, "label"], "trials": len(run), "feasible": int(run["feasible"].sum()), "evaluated feasible": len(ok),
               "failed": int(run["status"].ne("ok").sum()),
               "best acc": round(float(best["acc"].iloc[0]), 4) if len(best) else np.nan,
               "MACs of best (G)": round(float(best["macs"].iloc[0]) / 1e9, 3) if len(best) else np.nan}
        for axis in axes:
            hv = curves[axis.column]
            hv = hv.loc[hv["run"] == name, "hypervolume"].to_numpy() / axis.scale
            known = len(hv) > 0
            row[f"Pareto size ({axis.name})"] = int((fronts[axis.column]["run"] == name).sum()) if known else np.nan
            row[f"HV {axis.name} (acc × {axis.unit})"] = round(float(hv[-1]), 4) if known else np.nan
            row[f"HV {axis.name} at half the trials"] = round(float(hv[(len(hv) + 1) // 2 - 1]), 4) if known else np.nan
            row[f"trials to final HV {axis.name}"] = int(np.argmax(hv >= hv[-1]) + 1) if known and hv[-1] > 0 else np.nan
        if len(settings) > 1:
            row["on the joint MAC front"] = f"{int((joint['run'] == name).sum())} of {len(joint)}"
        rows.append(row)
    return pd.DataFrame(rows)


def _reference_text(settings: pd.DataFrame, axis: CostAxis, ref_cost: float) -> str:
    why = "the largest limit among the runs" if settings[axis.limit_setting].notna().any() else "no limit: the largest cost among the trials"
    return f"accuracy 0 and {ref_cost / axis.scale:g} {axis.unit} ({why})"


def build_report(trials: pd.DataFrame, settings: pd.DataFrame) -> Report:
    """report.md and its PNG plots and CSV tables, in memory (written by report_runs).

    The MAC front and hypervolume are always drawn (every trial has MACs; with no feasible trial they are
    empty and the report says so); latency ones only when some evaluated feasible trial has a latency.
    """
    from nas.reporting import plots

    names = list(settings.index)
    multi = len(names) > 1
    labels = {name: settings.at[name, "label"] for name in names}
    axes = [MACS] + ([LATENCY] if has_cost(trials, LATENCY) else [])
    with_cost = {axis.column: runs_with(trials, axis) for axis in axes}
    fronts = {axis.column: pareto_front(trials, axis.column) for axis in axes}
    refs = {axis.column: reference_cost(trials, settings, axis) for axis in axes}
    curves = {axis.column: hypervolume_curve(trials, axis.column, refs[axis.column]) for axis in axes}
    if LATENCY in axes:
        curves[LATENCY.column] = curves[LATENCY.column][curves[LATENCY.column]["run"].isin(with_cost[LATENCY.column])]
    summary = _summary_table(trials, settings, curves, fronts, axes)
    files: dict[str, bytes] = {"summary.csv": _csv(summary)}

    title = f"Search report: {names[0]}" if not multi else f"Comparison of {len(names)} search runs"
    md = [f"# {title}", "",
          "Accuracies are top-1 on the validation split with inherited supernet weights (never the test split); MACs and "
          f"params are counted at the target scale (224x224). The plots (PNG) and tables (CSV) are in [`{FILES_DIR}/`]({FILES_DIR}/).", "",
          "## Runs", "", _markdown(settings.reset_index()[["run", "space", "sampler", "objectives", "limits", "trials requested", "folder"]]), "",
          "## Summary", "", _markdown(summary[[c for c in summary.columns if not c.startswith(("HV ", "trials to final HV"))]]), ""]
    for name in names:
        run = trials[trials["run"] == name]
        if not evaluated_feasible(run, "macs").any():
            where = f" in run {name}" if multi else ""
            md += [f"**No feasible architecture was evaluated{where}**: of {len(run)} trials, {int((~run['feasible']).sum())} exceeded "
                   f"a limit and {int(run['status'].ne('ok').sum())} failed, so {'it has' if multi else 'there is'} no Pareto front and "
                   "no hypervolume. Loosen the limits or run more trials.", ""]
    for name, wrong in stored_pareto_mismatch(trials, settings).items():
        md += [f"Note: the stored is_pareto of run {name} differs from the recomputed front for trials "
               f"{', '.join(map(str, wrong))}; this report uses the recomputed front.", ""]
    if multi:
        final = summary.set_index("run")[f"HV {MACS.name} (acc × {MACS.unit})"].sort_values(ascending=False)
        md += [f"Largest final MAC hypervolume: **{final.index[0]}** ({final.iloc[0]:g} acc × G MACs; "
               + ", ".join(f"{run}: {value:g}" for run, value in final.iloc[1:].items())
               + "). The last column counts each run's trials on the front of all runs' trials together (accuracy vs MACs).", ""]

    for axis in axes:
        slug = "macs" if axis is MACS else "latency"
        front = fronts[axis.column]
        infeasible = trials[~trials["feasible"] & trials[axis.column].notna()]
        limits = list(settings[axis.limit_setting].dropna())
        plot_labels = {name: label for name, label in labels.items() if axis is MACS or name in with_cost[axis.column]}
        files[f"pareto_{slug}.png"] = plots.png_bytes(plots.pareto_figure(
            trials[evaluated_feasible(trials, axis.column)], front, infeasible, axis, plot_labels, limits))
        files[f"pareto_{slug}.csv"] = _csv(front.assign(arch_summary=front["arch"].map(arch_summary)))
        md += [f"## Pareto front: accuracy vs {axis.name}", "",
               f"Evaluated feasible trials that no other trial of the same run beats on both accuracy and {axis.name}, cheapest first"
               + (" (runs without a latency have no latency front)" if axis is LATENCY and multi else "") + ".", "",
               f"![Pareto front: accuracy vs {axis.name}]({FILES_DIR}/pareto_{slug}.png)", "",
               _markdown(_display(front, multi, LATENCY in axes)) if len(front) else "No feasible architecture was evaluated: the front is empty.", ""]

    best = best_per_bin(trials, MACS)
    files["best_per_mac_bin.csv"] = _csv(best.assign(arch_summary=best["arch"].map(arch_summary)))
    md += ["## Best architecture per MAC bin", "",
           "The most accurate evaluated feasible trial in each MAC interval (G MACs)" + (", per run" if multi else "") + ".", "",
           _markdown(pd.concat([best["bin"].astype(str).rename("MACs bin (G)"), _display(best, multi, LATENCY in axes)], axis=1))
           if len(best) else "No feasible architecture was evaluated.", ""]

    files["hypervolume.png"] = plots.png_bytes(plots.hypervolume_figure(
        [(axis, curves[axis.column], refs[axis.column]) for axis in axes], labels))
    hv_table = curves[MACS.column].rename(columns={"hypervolume": "hypervolume_macs"})
    if LATENCY in axes:
        hv_table = hv_table.merge(curves[LATENCY.column].rename(columns={"hypervolume": "hypervolume_latency_ms"}), how="left", on=["run", "trials"])
    files["hypervolume.csv"] = _csv(hv_table)
    md += ["## Hypervolume over trials", "",
           "The area that the evaluated feasible trials among the first k trials dominate (accuracy up, cost down), bounded by the "
           "reference point, for k = 1..n in proposal order; a curve that stops rising means the search stopped finding better "
           "trade-offs. Reference point: " + "; ".join(f"{axis.name}: {_reference_text(settings, axis, refs[axis.column])}" for axis in axes)
           + ". Every run is measured against the same point, so the values compare. The table gives each run's final value, the value "
           "at half its trials and how many trials it took to reach its final value.", "",
           f"![hypervolume over trials]({FILES_DIR}/hypervolume.png)", "",
           _markdown(summary[[c for c in summary.columns if c == "run" or c.startswith(("HV ", "trials to final HV"))]]), ""]

    pareto_rows = fronts[MACS.column].index
    groups = {"all trials (%)": trials.index, "feasible (%)": trials.index[trials["feasible"]], "Pareto (%)": pareto_rows}
    choices = choice_statistics(trials, groups)
    files["choices.csv"] = _csv(choices)
    files["choices.png"] = plots.png_bytes(plots.choices_figure(
        choices, {"all trials": "all trials (%)", "Pareto members (accuracy vs MACs)": "Pareto (%)"},
        f"Choice frequencies: {len(pareto_rows)} Pareto members vs all {len(trials)} trials"))
    md += ["## Choices: Pareto members vs all trials", "",
           f"How often each value of a choice occurs, in percent of that choice's occurrences, among all {len(trials)} trials "
           f"({'of all runs, ' if multi else ''}infeasible ones included), the {int(trials['feasible'].sum())} feasible ones and the "
           f"{len(pareto_rows)} members of the accuracy-vs-MACs front{'s' if multi else ''}. Per-layer choices (blocks, strip width, "
           "super-token grid, MLP ratio, and the shared-attention position: where a layer reuses the previous layer's attention map) "
           "count once per layer, the others (depths, merges) once per architecture. –: the group never makes that choice.", "",
           f"![choice frequencies]({FILES_DIR}/choices.png)", "",
           _markdown(choices.round(1)), ""]
    md += ["## Files", "", ", ".join(f"[`{name}`]({FILES_DIR}/{name})" for name in sorted(files) if name.endswith(".csv")), ""]
    return Report("\n".join(md), {f"{FILES_DIR}/{name}": data for name, data in files.items()})


REPORT_FILES = tuple(f"{FILES_DIR}/{name}" for name in (
    "summary.csv", "pareto_macs.png", "pareto_macs.csv", "pareto_latency.png", "pareto_latency.csv", "best_per_mac_bin.csv",
    "hypervolume.png", "hypervolume.csv", "choices.csv", "choices.png"))


def report_runs(run_dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """Write report.md and report/ (plots, CSV tables) for one or several runs; returns report.md's path.

    Default output: the run's own folder for one run, results/compare-<time>/ for several. All inputs are
    read and checked before anything is written; each file is written atomically.
    """
    if out is not None:
        runs.check_folder_path(Path(out))
    trials, settings = load_runs(*run_dirs)
    if out is None:
        out = Path(run_dirs[0]) if len(run_dirs) == 1 else runs.RESULTS_ROOT / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    report = build_report(trials, settings)
    for name, data in report.files.items():
        write_bytes_atomic(out / name, data)
    for stale in (name for name in REPORT_FILES if name not in report.files):
        (out / stale).unlink(missing_ok=True)
    own = len(run_dirs) == 1 and out.resolve() == Path(run_dirs[0]).resolve()
    sections = [s for s in (transfer_section(run_dirs[0], trials), runs.selection_section(run_dirs[0]), runs.audit_section(run_dirs[0]))
                if s] if own else []
    write_text_atomic(out / "report.md", report.markdown + "".join(f"\n{s}" for s in sections))
    return out / "report.md"


def transfer_lines_of_run(run_dir: str | Path, trials: pd.DataFrame) -> list[str]:
    """What the run's accuracies mean (nas.measure.transfer): chance, the supernet's largest and smallest path as its
    training validated them (train_summary.json in the run folder) and the median evaluated trial; none for a run
    without its own supernet summary (a table search, or --supernet given)."""
    path = Path(run_dir) / "train_summary.json"
    try:
        summary = json.loads(path.read_text())
        chance, largest, smallest = (float(summary[k]) for k in ("chance", "val_acc_largest", "val_acc_smallest"))
    except (OSError, ValueError, KeyError, TypeError):
        return []
    evaluated = trials["acc"][trials["evaluated"] & trials["status"].eq("ok")].dropna()
    return transfer_lines(chance, largest, smallest, float(evaluated.median()) if len(evaluated) else None)


def transfer_section(run_dir: str | Path, trials: pd.DataFrame) -> str | None:
    lines = transfer_lines_of_run(run_dir, trials)
    return "## What the accuracies mean\n\n" + "\n\n".join(lines) + "\n" if lines else None


def write_report(run_dir: str | Path) -> Path:
    """report.md (and report/) of one finished run, in its folder: what nas.search writes at the end of a search."""
    return report_runs([run_dir], out=run_dir)
