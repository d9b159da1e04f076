"""PNG plots of search runs for report.md, drawn with matplotlib's object API (no pyplot, no screen)."""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from nas.reporting.analysis import CostAxis

ACC_LABEL = "validation top-1 accuracy (inherited weights)"


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _run_color(k: int) -> str:
    return f"C{k % 10}"


def pareto_figure(candidates: pd.DataFrame, front: pd.DataFrame, infeasible: pd.DataFrame, axis: CostAxis,
                  labels: dict[str, str], limits: list[float]) -> Figure:
    """Evaluated feasible trials as dots, each run's front as a step line (with the front members' measured cost as
    hollow diamonds where the trials have one), infeasible trials as ticks along the bottom (they have no accuracy),
    limits as dashed lines. Frames hold a `run` column."""
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for k, (run, label) in enumerate(labels.items()):
        color = _run_color(k)
        points = candidates[candidates["run"] == run]
        if len(points):
            ax.scatter(points[axis.column] / axis.scale, points["acc"], s=16, alpha=0.35, color=color,
                       label=f"{label}: feasible trials ({len(points)})")
        members = front[front["run"] == run].sort_values(axis.column)
        if len(members):
            ax.step(members[axis.column] / axis.scale, members["acc"], where="post", color=color, lw=2, marker="o", ms=5,
                    label=f"{label}: Pareto front ({len(members)})")
        measured = members[axis.measured_column].dropna() if axis.measured_column in members.columns else []
        if len(measured):
            ax.scatter(measured / axis.scale, members.loc[measured.index, "acc"], marker="D", s=30, facecolors="none", edgecolors=color,
                       label=f"{label}: measured {axis.name} of front members ({len(measured)})")
        rejected = infeasible[infeasible["run"] == run]
        if len(rejected):
            ax.plot(rejected[axis.column] / axis.scale, np.full(len(rejected), 0.02), ls="none", marker="|", ms=12, alpha=0.5,
                    color=color, transform=ax.get_xaxis_transform(), label=f"{label}: infeasible, not evaluated ({len(rejected)})")
    for limit in sorted(set(limits)):
        ax.axvline(limit / axis.scale, color="0.3", ls="--", lw=1, label=f"limit: {limit / axis.scale:g} {axis.unit}")
    ax.set(xlabel=axis.label, ylabel=ACC_LABEL, title=f"Pareto front: accuracy vs {axis.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def hypervolume_figure(curves: list[tuple[CostAxis, pd.DataFrame, float]], labels: dict[str, str]) -> Figure:
    """One panel per cost: hypervolume after each trial (columns run, trials, hypervolume) of each run the curve holds."""
    fig = Figure(figsize=(10, 4.5 * len(curves)), layout="constrained")
    for ax, (axis, curve, ref_cost) in zip(fig.subplots(len(curves), 1, squeeze=False)[:, 0], curves):
        for k, (run, label) in enumerate(labels.items()):
            mine = curve[curve["run"] == run]
            if len(mine):
                ax.step(mine["trials"], mine["hypervolume"] / axis.scale, where="post", color=_run_color(k), lw=2, label=label)
        ax.set(xlabel="trials (proposals in order, infeasible ones included)", ylabel=f"hypervolume (accuracy × {axis.unit})",
               title=f"Hypervolume of accuracy vs {axis.name} over trials (reference point: accuracy 0, {ref_cost / axis.scale:g} {axis.unit})")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    return fig


def choices_figure(table: pd.DataFrame, bars: dict[str, str], title: str) -> Figure:
    """One panel per choice: horizontal bars of each value's share, one bar per group (bars: legend label -> column)."""
    choices = list(dict.fromkeys(table["choice"]))
    ncols = 3
    nrows = math.ceil(len(choices) / ncols)
    sizes = [table["choice"].eq(c).sum() for c in choices]
    row_heights = [max(sizes[r * ncols:(r + 1) * ncols]) for r in range(nrows)]
    fig = Figure(figsize=(15, 1.2 + sum(0.9 + 0.32 * len(bars) * h for h in row_heights)), layout="constrained")
    grid = fig.add_gridspec(nrows, ncols, height_ratios=[0.9 + 0.32 * len(bars) * h for h in row_heights])
    width = 0.8 / len(bars)
    for k, choice in enumerate(choices):
        ax = fig.add_subplot(grid[k // ncols, k % ncols])
        rows = table[table["choice"] == choice]
        y = np.arange(len(rows))
        for b, (label, column) in enumerate(bars.items()):
            ax.barh(y - 0.4 + width * (b + 0.5), rows[column].fillna(0), height=width, color=["0.65", "C3", "C0"][b % 3], label=label)
        ax.set_yticks(y, rows["value"].astype(str))
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_title(choice, fontsize="medium")
        ax.set_xlabel("share of the choice's occurrences (%)", fontsize="small")
        ax.grid(axis="x", alpha=0.3)
    handles, names = fig.axes[0].get_legend_handles_labels() if fig.axes else ([], [])
    fig.legend(handles, names, loc="outside upper right")
    fig.suptitle(title)
    return fig


def audit_figure(rows: pd.DataFrame, tau: float, macs_tau: float) -> Figure:
    """One point per audited architecture: inherited (supernet) accuracy against standalone accuracy, the run's
    Pareto members marked, seed-to-seed spread as error bars where an architecture has several seeds."""
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for pareto, style in ((False, dict(marker="o", color="C0", label="stratified over MACs")),
                          (True, dict(marker="*", s=140, color="C3", label="Pareto members of the run"))):
        part = rows[rows["is_pareto"] == pareto]
        if len(part):
            ax.errorbar(part["inherited_acc"], part["standalone_acc"], yerr=part["standalone_std"].fillna(0), ls="none", color=style["color"],
                        alpha=0.5, capsize=2)
            ax.scatter(part["inherited_acc"], part["standalone_acc"], zorder=3, **style)
    ax.set(xlabel="inherited accuracy (supernet weights, BN recalibrated)", ylabel="standalone accuracy (trained alone)",
           title=f"Ranking audit: Kendall tau {tau:.2f} (MACs alone: {macs_tau:.2f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig
