"""python -m nas.spaces [NAME ...] [--samples 1000] [--flops 4.5G]

Describes search spaces as markdown: every choice and its allowed values, the rules, the cardinality,
the MAC and parameter range at the target scale over uniformly sampled architectures with the fraction
of samples within the FLOP budget, the reference members with their costs, and what each per-side
choice becomes at the proxy and the target scale. docs/search_spaces.md holds this command's output.
"""
from __future__ import annotations

import math
import statistics
import sys

from search_spaces import get_reference, get_space, list_spaces, reference_doc, reference_names
from search_spaces.vocabulary import BLOCKS, CHOICE_FIELDS, cells_per_side
from supernet.blocks.registry import has_modules

from nas.cli import Parser, run_cli
from nas.errors import UserError
from nas.measure.costs import Costs, arch_costs
from nas.units import parse_count


def _fmt(values) -> str:
    return ", ".join(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values)


def partition_rows(space) -> list[dict]:
    """For every per-side choice (super tokens, MAF windows) and each of its values in each stage: the stage's
    token grid, the cell (or window) side in tokens and the parts per side it gives, at the proxy and the
    target scale."""
    rows = []
    for f in (f for f in CHOICE_FIELDS.values() if f.per_side):
        blocks = [b for b in BLOCKS.values() if f.name in b.fields]
        for i, rule in enumerate(space.stages):
            if not any(b.name in rule.blocks for b in blocks):
                continue
            for value in rule.values_of(f.name):
                row = {"block": "/".join(b.name for b in blocks if b.name in rule.blocks), "field": f.name, "value": value, "stage": i}
                for scale in (space.proxy, space.target):
                    side = scale.grids()[i]
                    cell = cells_per_side(side, value)
                    row[scale.name] = {"side": side, "cell": cell, "parts": math.ceil(side / cell), "padded": math.ceil(side / cell) * cell - side}
                rows.append(row)
    return rows


def partition_table(space) -> list[str]:
    p, t = space.proxy, space.target
    header = ["block", "choice", "value", "stage", f"proxy grid ({p.img_size}x{p.img_size})", "proxy cell -> per side",
              f"target grid ({t.img_size}x{t.img_size})", "target cell -> per side"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in partition_rows(space):
        cells = []
        for name in ("proxy", "target"):
            c = r[name]
            pad = f" (padded +{c['padded']})" if c["padded"] else ""
            cells += [f"{c['side']}x{c['side']}", f"{c['cell']} -> {c['parts']}x{c['parts']}{pad}"]
        lines.append("| " + " | ".join([r["block"], r["field"], f"{r['value']:g}", str(r["stage"]), *cells]) + " |")
    return lines


def reference_rows(space) -> list[tuple[str, Costs, Costs, str]]:
    """(name, costs at the target, costs at the proxy, the model it follows: its docstring's opening words) of each
    reference member."""
    rows = []
    for name in reference_names(space.name):
        arch = get_reference(space.name, name)
        first = reference_doc(space.name, name).split("\n\n")[0].replace("\n", " ")
        rows.append((name, arch_costs(arch, space.target), arch_costs(arch, space.proxy), first.split(" (")[0]))
    return rows


def describe(name: str, samples: int, budget: float) -> str:
    space = get_space(name)
    t = space.target
    lines = [f"## `{name}`", "", space.description + ".", ""]
    fields = [f for f in CHOICE_FIELDS.values() if any(f.name in BLOCKS[b].fields for rule in space.stages for b in rule.blocks)]
    header = ["stage", f"grid at {t.img_size}", "width", "heads", "depths", "block types"] + [f.header or f.name for f in fields]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, (rule, side) in enumerate(zip(space.stages, t.grids())):
        values = [_fmt(rule.values_of(f.name)) if any(f.name in BLOCKS[b].fields for b in rule.blocks) else "-" for f in fields]
        row = [str(i), f"{side}x{side}", str(t.embed_dims[i]), str(t.num_heads[i]), _fmt(rule.depths), ", ".join(rule.blocks)] + values
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if space.merges:
        lines.append("Merge operators per stage boundary: " + "; ".join(f"{i}->{i + 1}: {', '.join(ops)}" for i, ops in enumerate(space.merges)) + ".")
    else:
        lines.append("One stage: no merges.")
    if space.total_depths:
        lines.append(f"Allowed total depths: {_fmt(space.total_depths)}.")
    lines += ["", "Rules:", ""] + [f"- {r}" for r in space.rules] + [""]
    card = space.cardinality()
    lines.append(f"Cardinality: {card:,} architectures ({card:.3e}).")
    if not has_modules(space):
        lines += ["", "Its operations have no modules, so it has no supernet and no cost model: an architecture's costs and score "
                  f"come from a benchmark table (`python -m nas.search --space {name} --evaluator table:PATH`; "
                  "`--device NAME` picks the table's latency column `lat_NAME`, `--score COLUMN` its score).", ""]
        return "\n".join(lines)
    costs = [arch_costs(space.sample(seed), t) for seed in range(samples)]
    macs = sorted(c.macs / 1e9 for c in costs)
    params = sorted(c.params / 1e6 for c in costs)
    within = sum(m <= budget / 1e9 for m in macs) / len(macs)
    lines += [
        "",
        f"Target scale: {t.img_size}x{t.img_size}, stem stride {t.stem_stride}, {t.num_classes} classes. Over {samples} uniform samples (seeds 0..{samples - 1}):",
        "",
        "| | min | median | max |",
        "|---|---|---|---|",
        f"| MACs (G) | {macs[0]:.2f} | {statistics.median(macs):.2f} | {macs[-1]:.2f} |",
        f"| params (M) | {params[0]:.1f} | {statistics.median(params):.1f} | {params[-1]:.1f} |",
        "",
        f"Within {budget / 1e9:g}G MACs: {within:.1%} of samples.",
        "",
        f"Proxy scale: {space.proxy.img_size}x{space.proxy.img_size}, stem stride {space.proxy.stem_stride}, widths {_fmt(space.proxy.embed_dims)}, {space.proxy.num_classes} classes.",
        "",
    ]
    refs = reference_rows(space)
    if refs:
        lines += [f"Reference members (`{name}:<name>` wherever an architecture file is accepted; each one's docstring cites "
                  "the paper's configuration and says where it differs):", "",
                  "| reference | MACs at target (G) | params at target (M) | MACs at proxy (M) | after |", "|---|---|---|---|---|"]
        lines += [f"| `{name}:{ref}` | {t_costs.macs / 1e9:.2f} | {t_costs.params / 1e6:.1f} | {p_costs.macs / 1e6:.1f} | {paper} |"
                  for ref, t_costs, p_costs, paper in refs]
        lines.append("")
    if partition_rows(space):
        lines += ["Per-side choices at the two scales (cell or window side in tokens -> parts per side; "
                  "`search_spaces.vocabulary.cells_per_side`):", ""] + partition_table(space) + [""]
    return "\n".join(lines)


@run_cli
def main(argv=None) -> int:
    p = Parser(prog="python -m nas.spaces", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="spaces to describe (default: all)")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--flops", default="4.5G", help="MAC budget for the fraction within (default 4.5G)")
    args = p.parse_args(argv)
    budget = parse_count(args.flops, "--flops", "4.5G")
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1 (architectures sampled for the MAC and parameter ranges), got {args.samples}")
    for name in args.names:
        get_space(name)
    for name in args.names or list_spaces():
        print(describe(name, args.samples, budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
