"""python -m nas.report RUN [RUN ...] [--out DIR]

Reports of search runs: Pareto fronts (accuracy vs MACs, and vs latency when the trials have it), the
best architecture per MAC bin, hypervolume over trials and statistics of the choices, as pandas tables
(CSV and markdown) and matplotlib plots gathered in report.md. One run is reported in its own folder;
several runs are compared in --out (default results/compare-<time>/). nas.search writes its report.md
through write_report, the same code.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from search_spaces import Arch, ArchError
from search_spaces.atomic import write_bytes_atomic, write_text_atomic

from nas.cli import Parser, run_cli

from nas.errors import UserError
from nas.reporting.pareto import hypervolume_2d, pareto_mask

REQUIRED_COLUMNS = ("trial", "status", "feasible", "acc", "macs", "params", "arch")
NUMERIC_COLUMNS = ("trial", "acc", "macs", "params", "latency_ms", "latency_measured_ms", "eval_time_s", "duration_s")
BOOL_COLUMNS = ("feasible", "evaluated", "is_pareto")
FILES_DIR = "report"
OBJECTIVE_COST = {"flops": "macs", "params": "params", "latency": "latency_ms"}
_BOOLS = {True: True, False: False, "True": True, "False": False, "true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class CostAxis:
    """A cost that fronts are drawn against: its trials column, how it is shown, and the setting that limits it."""

    column: str
    name: str
    label: str
    unit: str
    scale: float
    limit_setting: str
    measured_column: str | None = None


MACS = CostAxis("macs", "MACs", "MACs at 224x224 (G)", "G MACs", 1e9, "flops")
LATENCY = CostAxis("latency_ms", "latency", "latency (ms)", "ms", 1.0, "latency_ms", measured_column="latency_measured_ms")


# ------------------------------------------------------------------ loading
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


def _clean(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The trials table with checked columns and types, in proposal order; a user error names the first problem."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: columns missing: {', '.join(missing)} (a trials table needs {', '.join(REQUIRED_COLUMNS)})")
    if df.empty:
        raise UserError(f"{path}: has a header but no trials")
    df = df.copy()
    for column in (c for c in NUMERIC_COLUMNS if c in df.columns):
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() & df[column].notna()
        if bad.any():
            raise UserError(f"{path}: column {column} holds {df[column][bad].iloc[0]!r}; it must hold numbers")
        df[column] = values
    if df["trial"].isna().any() or df["trial"].duplicated().any():
        raise UserError(f"{path}: column trial must number each trial once (a missing or repeated number was found)")
    df["trial"] = df["trial"].astype(int)
    for column in (c for c in BOOL_COLUMNS if c in df.columns):
        values = df[column].map(_BOOLS)
        if values.isna().any():
            raise UserError(f"{path}: column {column} holds {df[column][values.isna()].iloc[0]!r}; it must hold True or False")
        df[column] = values.astype(bool)
    df["status"] = df["status"].astype(str)
    if "evaluated" not in df.columns:
        df["evaluated"] = df["status"].eq("ok") & df["feasible"] & df["acc"].notna()
    for trial, text in zip(df["trial"], df["arch"]):
        if not isinstance(text, str):
            raise UserError(f"{path}: trial {trial} has no architecture in column arch")
        try:
            Arch.from_json(text)
        except ArchError as e:
            raise UserError(f"{path}: trial {trial}: arch: {e}") from None
    return df.sort_values("trial").reset_index(drop=True)


def _read_settings(run_dir: Path) -> dict:
    """The run's search settings from config.json; empty when the folder has none."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: not valid JSON; remove it or restore the one nas.search wrote") from None
    settings = config.get("settings") if isinstance(config, dict) else None
    return settings if isinstance(settings, dict) else {}


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
        settings = _read_settings(path)
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


# ------------------------------------------------------------------ analysis
def evaluated_feasible(trials: pd.DataFrame, cost: str = "macs") -> pd.Series:
    """The rows that count for fronts and hypervolume: status ok, feasible, evaluated, with an accuracy and a cost."""
    mask = trials["status"].eq("ok") & trials["feasible"] & trials["acc"].notna() & trials[cost].notna()
    if "evaluated" in trials.columns:
        mask &= trials["evaluated"]
    return mask


def _runs_of(trials: pd.DataFrame) -> list[pd.DataFrame]:
    if "run" not in trials.columns:
        return [trials]
    return [group for _, group in trials.groupby("run", observed=True, sort=False)]


def _order(trials: pd.DataFrame, *keys: str) -> list[str]:
    return ["run", *keys] if "run" in trials.columns else list(keys)


def has_cost(trials: pd.DataFrame, axis: CostAxis) -> bool:
    """Whether any evaluated feasible trial has this cost (latency is absent from searches without a predictor)."""
    return axis.column in trials.columns and bool(evaluated_feasible(trials, axis.column).any())


def pareto_front(trials: pd.DataFrame, cost: str = "macs") -> pd.DataFrame:
    """The evaluated feasible trials that no other trial of the same run dominates (accuracy up, cost down),
    with is_pareto set, sorted by run and cost. Trials with equal accuracy and cost are all kept."""
    fronts = [group[pareto_mask(group, ["acc"], [cost])] for group in _runs_of(trials[evaluated_feasible(trials, cost)])]
    front = pd.concat(fronts) if fronts else trials.iloc[:0]
    return front.assign(is_pareto=True).sort_values(_order(trials, cost, "trial"))


def stored_pareto_mismatch(trials: pd.DataFrame, settings: pd.DataFrame) -> dict[str, list[int]]:
    """Per run, the trials whose stored is_pareto differs from the front recomputed over accuracy and the run's
    cost objective (the search marks the front over its second objective, MACs when it has none)."""
    mismatches = {}
    if "is_pareto" not in trials.columns:
        return mismatches
    for run in _runs_of(trials):
        name = run["run"].iloc[0] if "run" in run.columns else ""
        objectives = str(settings["objectives"].get(name) or "acc,flops").split(",") if name in settings.index else ["acc", "flops"]
        cost = OBJECTIVE_COST.get(objectives[1], "macs") if len(objectives) > 1 else "macs"
        if cost not in run.columns:
            continue
        recomputed = set(pareto_front(run, cost)["trial"])
        stored = set(run.loc[run["is_pareto"], "trial"])
        if recomputed != stored:
            mismatches[name] = sorted(recomputed ^ stored)
    return mismatches


def best_per_bin(trials: pd.DataFrame, axis: CostAxis = MACS, bins: int = 8, edges: list[float] | None = None) -> pd.DataFrame:
    """The most accurate evaluated feasible trial (the cheaper, then the earlier one on ties) in each cost bin, per run.
    Bins are intervals (lo, hi] in axis units (the first one closed; trials outside given edges are left out); by
    default up to `bins` round intervals over the costs of all runs (matplotlib's tick values), so runs share them."""
    candidates = trials[evaluated_feasible(trials, axis.column)]
    values = candidates[axis.column] / axis.scale
    if candidates.empty:
        return candidates.assign(bin=pd.Series(dtype=str))
    if edges is None:
        from matplotlib.ticker import MaxNLocator

        edges = MaxNLocator(nbins=bins).tick_values(values.min(), values.max())
        edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
    edges = np.unique(edges)
    if len(edges) < 2:
        binned = candidates.assign(bin=f"{values.min():g}")
    else:
        labels = [f"{lo:g}–{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
        binned = candidates.assign(bin=pd.cut(values, edges, labels=labels, include_lowest=True))
    keys = _order(trials, "bin")
    best = binned.sort_values(["acc", axis.column, "trial"], ascending=[False, True, True]).groupby(keys, observed=True).head(1)
    return best.sort_values(keys)


def reference_cost(trials: pd.DataFrame, settings: pd.DataFrame, axis: CostAxis) -> float:
    """The cost of the hypervolume reference point (its accuracy is 0): the largest limit on this cost among the
    runs compared, so that every run is measured against the same point; without a limit, the largest cost among
    all trials compared (that trial then adds nothing: the reference point bounds the area)."""
    limits = settings[axis.limit_setting].dropna() if axis.limit_setting in settings.columns else pd.Series(dtype=float)
    return float(limits.max()) if len(limits) else float(trials[axis.column].max())


def hypervolume_curve(trials: pd.DataFrame, cost: str = "macs", ref_cost: float | None = None, ref_acc: float = 0.0) -> pd.DataFrame:
    """Hypervolume (accuracy up, cost down, in accuracy x cost-column units) of the evaluated feasible trials
    among the first k trials of each run, for k = 1..n in proposal order: columns run, trials (k), hypervolume.
    The reference point is (ref_acc, ref_cost); ref_cost defaults to the largest cost in the table."""
    ref_cost = float(trials[cost].max()) if ref_cost is None else ref_cost
    parts = []
    for run in _runs_of(trials):
        run = run.sort_values("trial")
        ok = evaluated_feasible(run, cost).to_numpy()
        acc, costs = run["acc"].to_numpy(float), run[cost].to_numpy(float)
        hv = [hypervolume_2d(acc[:k][ok[:k]], costs[:k][ok[:k]], ref_acc, ref_cost) for k in range(1, len(run) + 1)]
        part = pd.DataFrame({"trials": np.arange(1, len(run) + 1), "hypervolume": hv})
        if "run" in run.columns:
            part.insert(0, "run", run["run"].iloc[0])
        parts.append(part)
    curve = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_order(trials, "trials", "hypervolume"))
    if "run" in curve.columns:
        curve["run"] = curve["run"].astype(trials["run"].dtype)
    return curve


def arch_choices(arch: Arch) -> list[tuple[int, str, str]]:
    """(rank, choice, value) for every choice one architecture makes; rank orders the choices in tables.
    Per-layer choices occur once per layer that has them, the others once per architecture."""
    found = [(i, f"merge after stage {i}", m) for i, m in enumerate(arch.merges)]
    found += [(10 + s, f"depth of stage {s}", str(d)) for s, d in enumerate(arch.depths)]
    for s, l, layer in arch.layers():
        found.append((20 + s, f"blocks in stage {s}", layer.block))
        if layer.block == "shared":
            found.append((30, "shared-attention position", f"stage {s}, layer {l}"))
        if layer.strip_width is not None:
            found.append((31, "strip width", f"{layer.strip_width:g}"))
        if layer.grid is not None:
            found.append((32, "super-token grid", f"{layer.grid:g}"))
        if layer.mlp_ratio is not None:
            found.append((33, "MLP ratio", f"{layer.mlp_ratio:g}"))
    return found


def choice_statistics(trials: pd.DataFrame, groups: dict[str, pd.Index]) -> pd.DataFrame:
    """How often each value of each choice occurs, in percent of the choice's occurrences, within each group of
    rows (groups: column name -> row labels of trials). NaN where the group never makes that choice."""
    occurrences = pd.DataFrame([(row, *found) for row, text in trials["arch"].items() for found in arch_choices(Arch.from_json(text))],
                               columns=["row", "rank", "choice", "value"])
    keys = ["rank", "choice", "value"]
    every = occurrences.groupby(keys).size().index
    table = pd.DataFrame(index=every)
    for name, rows in groups.items():
        counts = occurrences[occurrences["row"].isin(rows)].groupby(keys).size().reindex(every, fill_value=0)
        totals = counts.groupby(level="choice").transform("sum")
        table[name] = 100 * counts / totals.where(totals > 0)
    table = table.reset_index()
    table["number"] = pd.to_numeric(table["value"], errors="coerce")
    return table.sort_values(["rank", "number", "value"]).drop(columns=["rank", "number"]).reset_index(drop=True)


# ------------------------------------------------------------------ the report
def _arch_summary(arch_json: str) -> str:
    """'[merges] blocks of stage 0; blocks of stage 1; ...', each block with its strip width, grid or MLP ratio."""
    arch = Arch.from_json(arch_json)
    stages = "; ".join(",".join(layer.block + (f"{v:g}" if (v := layer.strip_width or layer.grid or layer.mlp_ratio) else "")
                                 for layer in stage) for stage in arch.stages)
    return f"[{'/'.join(arch.merges)}] {stages}"


def _display(rows: pd.DataFrame, multi: bool, latency: bool) -> pd.DataFrame:
    """Trials as a markdown-ready table: rounded values in report units and a compact architecture."""
    table = pd.DataFrame({"trial": rows["trial"], "acc": rows["acc"].round(4), "MACs (G)": (rows["macs"] / 1e9).round(3),
                          "params (M)": (rows["params"] / 1e6).round(2)})
    if latency:
        table["latency (ms, predicted)"] = rows["latency_ms"].round(2)
        if "latency_measured_ms" in rows.columns and rows["latency_measured_ms"].notna().any():
            table["latency (ms, measured)"] = rows["latency_measured_ms"].round(2)
    table["architecture: [merges] stages (; between stages)"] = rows["arch"].map(_arch_summary)
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


def runs_with(trials: pd.DataFrame, axis: CostAxis) -> list[str]:
    """The runs with at least one evaluated feasible trial that has this cost."""
    return [run["run"].iloc[0] for run in _runs_of(trials) if has_cost(run, axis)]


def _summary_table(trials: pd.DataFrame, settings: pd.DataFrame, curves: dict[str, pd.DataFrame],
                   fronts: dict[str, pd.DataFrame], axes: list[CostAxis]) -> pd.DataFrame:
    """One row per run: counts, the best trial, front sizes, hypervolume at the end and at half the trials,
    and (comparing runs) how many of the run's trials are on the front of all runs' trials together."""
    rows = []
    joint = trials[evaluated_feasible(trials, "macs")]
    joint = joint[pareto_mask(joint, ["acc"], ["macs"])]
    for run in _runs_of(trials):
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
        files[f"pareto_{slug}.csv"] = _csv(front.assign(arch_summary=front["arch"].map(_arch_summary)))
        md += [f"## Pareto front: accuracy vs {axis.name}", "",
               f"Evaluated feasible trials that no other trial of the same run beats on both accuracy and {axis.name}, cheapest first"
               + (" (runs without a latency have no latency front)" if axis is LATENCY and multi else "") + ".", "",
               f"![Pareto front: accuracy vs {axis.name}]({FILES_DIR}/pareto_{slug}.png)", "",
               _markdown(_display(front, multi, LATENCY in axes)) if len(front) else "No feasible architecture was evaluated: the front is empty.", ""]

    best = best_per_bin(trials, MACS)
    files["best_per_mac_bin.csv"] = _csv(best.assign(arch_summary=best["arch"].map(_arch_summary)))
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
    trials, settings = load_runs(*run_dirs)
    if out is None:
        out = Path(run_dirs[0]) if len(run_dirs) == 1 else Path("results") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"--out {out}: {'is' if existing == out else f'{existing} is'} a file; give a folder (it is created when missing)")
    report = build_report(trials, settings)
    for name, data in report.files.items():
        write_bytes_atomic(out / name, data)
    for stale in (name for name in REPORT_FILES if name not in report.files):
        (out / stale).unlink(missing_ok=True)
    write_text_atomic(out / "report.md", report.markdown)
    return out / "report.md"


def write_report(run_dir: str | Path) -> Path:
    """report.md (and report/) of one finished run, in its folder: what nas.search writes at the end of a search."""
    return report_runs([run_dir], out=run_dir)


def build_parser() -> Parser:
    p = Parser(prog="python -m nas.report", description=__doc__.split("\n\n")[1])
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by nas.search (results/<run>)")
    p.add_argument("--out", default=None, help="output folder (default: the run's folder for one run, results/compare-<time> for several)")
    return p


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    path = report_runs(args.runs, args.out)
    plots_written = sorted(p.name for p in (path.parent / FILES_DIR).glob("*.png"))
    print(f"report: {path} (plots: {', '.join(plots_written)}; tables in {path.parent / FILES_DIR}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
