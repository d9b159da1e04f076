"""Reports of search runs: report.md with the Pareto table (pandas markdown)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from search_spaces.atomic import write_text_atomic


def _arch_summary(arch_json: str) -> str:
    import json

    a = json.loads(arch_json)
    stages = " | ".join(",".join(l["block"] + str(l.get("strip_width") or l.get("grid") or l.get("mlp_ratio") or "") for l in s) for s in a["stages"])
    return f"[{'/'.join(a['merges'])}] {stages}"


def write_report(run_dir: Path, df: pd.DataFrame, settings, summary: dict) -> None:
    lines = [f"# Search report: {run_dir.name}", ""]
    limits = ", ".join(f"{k} <= {v:g}" for k, v in settings.limits().items()) or "none"
    lines += [f"Space `{settings.space}`, sampler `{settings.sampler}`, objectives `{','.join(settings.objectives)}`, limits: {limits}.",
              f"{summary['trials']} trials: {summary['feasible']} feasible, {summary['failed']} failed, {summary['pareto']} on the Pareto front "
              f"({summary['seconds'] / 60:.1f} min). Accuracies are top-1 on the validation split with inherited supernet weights.", ""]
    if summary["best"] is None:
        lines += ["**No feasible architecture was evaluated**: every proposal exceeded a limit. Loosen the limits or run more trials.", ""]
    else:
        b = summary["best"]
        lines += [f"Best feasible: accuracy {b['accuracy']:.4f}, {b['macs'] / 1e9:.3f} G MACs, {b['params'] / 1e6:.2f} M params (trial {b['trial']}).", ""]
        pareto = df[df["is_pareto"]].sort_values("macs")
        table = pd.DataFrame({
            "trial": pareto["trial"], "acc": pareto["acc"].round(4), "MACs (G)": (pareto["macs"] / 1e9).round(3),
            "params (M)": (pareto["params"] / 1e6).round(2), "architecture [merges] stages": pareto["arch"].map(_arch_summary),
        })
        lines += ["## Pareto front (feasible trials)", "", table.to_markdown(index=False), ""]
    write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")
