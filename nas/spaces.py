"""python -m nas.spaces [NAME ...] [--samples 1000] [--flops 4.5G]

Describes search spaces as markdown: every choice and its allowed values, the rules, the cardinality,
and the MAC and parameter range at the target scale over uniformly sampled architectures, with the
fraction of samples within the FLOP budget. docs/search_spaces.md is this command's output.
"""
from __future__ import annotations

import statistics
import sys

from search_spaces import get_space, list_spaces
from search_spaces.vocabulary import BLOCKS, CHOICE_FIELDS

from nas.cli import Parser, run_cli
from nas.errors import UserError
from nas.measure.costs import arch_costs
from nas.units import parse_count


def _fmt(values) -> str:
    return ", ".join(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values)


def describe(name: str, samples: int, budget: float) -> str:
    space = get_space(name)
    t = space.target
    lines = [f"## `{name}`", "", space.description + ".", ""]
    fields = [f for f in CHOICE_FIELDS.values() if any(f.name in b.fields for b in BLOCKS.values())]
    header = ["stage", "grid at 224", "width", "heads", "depths", "block types"] + [f.header or f.name for f in fields]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, (rule, side) in enumerate(zip(space.stages, t.grids())):
        values = [_fmt(rule.values_of(f.name)) if any(f.name in BLOCKS[b].fields for b in rule.blocks) else "-" for f in fields]
        row = [str(i), f"{side}x{side}", str(t.embed_dims[i]), str(t.num_heads[i]), _fmt(rule.depths), ", ".join(rule.blocks)] + values
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Merge operators per stage boundary: " + "; ".join(f"{i}->{i + 1}: {', '.join(ops)}" for i, ops in enumerate(space.merges)) + ".")
    if space.total_depths:
        lines.append(f"Allowed total depths: {_fmt(space.total_depths)}.")
    lines += ["", "Rules:", ""] + [f"- {r}" for r in space.rules] + [""]
    card = space.cardinality()
    lines.append(f"Cardinality: {card:,} architectures ({card:.3e}).")
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
