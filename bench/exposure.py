"""How often a supernet training strategy uses each option of each choice, and whether that bends its ranking.

    python bench/exposure.py [--strategy fair] [--steps 2000] [--space psvit_ext] [--seed 0] [--audit AUDIT_CSV ...]

Draws the paths of `--steps` training steps exactly as the supernet trainer does (nas.training.sampling.PathSampler,
no training) and counts, per step, how often each option of each choice is used: the merge at each stage
boundary, the block type of each layer, and each field of each layer's block type (mlp_ratio, strip_width,
grid, gld_ratio, windows: the weights a width slices are that type's). Prints the merges, the block types of
the layers the fixed sandwich's teacher favours most, and the most unequal choices; the option counts of a
choice are compared among the options legal there (a layer's depth is not a choice of this kind: the teacher
has the deepest stages by design).

With `--audit`, the teacher overlap of each audited architecture (the mean, over the merges and blocks it runs,
of how often the strategy's teacher ran that module per step) against its inherited-minus-standalone gap: a
strategy whose teacher decides which weights are trained shows a positive slope (architectures made of the
teacher's modules inherit more than they earn alone).

The last line: the largest ratio between two options of one choice, and whether every choice is within 1.5x.
"""
from __future__ import annotations

import argparse
import collections
import json

import numpy as np

from nas.training.sampling import STRATEGIES, PathSampler, choice_uses
from search_spaces import Arch, get_space

WITHIN = 1.5


def count_uses(space, strategy: str, steps: int, seed: int):
    """(uses per step, teacher uses per step): (choice, value) -> mean count over the steps."""
    sampler = PathSampler(space, space.proxy, strategy, seed=seed)
    uses, teacher = collections.Counter(), collections.Counter()
    for step in range(steps):
        paths = sampler.paths(0, step)
        for k, arch in enumerate(paths):
            for key in choice_uses(arch):
                uses[key] += 1
                if k == 0 and strategy in ("sandwich", "sandwich-mixed", "fair"):
                    teacher[key] += 1
    return {k: v / steps for k, v in uses.items()}, {k: v / steps for k, v in teacher.items()}


def legal_options(space, key: tuple) -> tuple:
    """The values a choice (a use key without its value) may take."""
    kind = key[0]
    if kind == "merge":
        return tuple(space.merges[key[1]])
    if kind == "block":
        return space.stages[key[1]].blocks_at(key[2])
    return tuple(space.stages[key[1]].values_of(kind))


def choices(space, uses: dict) -> dict[tuple, dict]:
    """Each choice that was used (depth aside) with every legal option's uses per step, unused ones at 0."""
    seen = {key[:-1] for key in uses if key[0] != "depth"}
    return {c: {v: uses.get((*c, v), 0.0) for v in legal_options(space, c)} for c in seen if len(legal_options(space, c)) > 1}


def ratio(options: dict) -> float:
    low, high = min(options.values()), max(options.values())
    return float("inf") if low == 0 else high / low


def describe(choice: tuple) -> str:
    if choice[0] == "merge":
        return f"merge {choice[1]}->{choice[1] + 1}"
    if choice[0] == "block":
        return f"stage {choice[1]} layer {choice[2]} block"
    return f"stage {choice[1]} layer {choice[2]} {choice[3]} {choice[0]}"


def teacher_overlap(arch: Arch, teacher: dict) -> float:
    """Mean teacher runs per step of the modules an architecture runs (its merges and its blocks)."""
    keys = [("merge", b, op) for b, op in enumerate(arch.merges)] + [("block", i, j, layer.block) for i, j, layer in arch.layers()]
    return float(np.mean([teacher.get(k, 0.0) for k in keys]))


def regression(path: str, teacher: dict) -> str:
    from scipy import stats

    import pandas as pd

    audit = pd.read_csv(path)
    overlap = audit["arch"].map(lambda a: teacher_overlap(Arch.from_dict(json.loads(a)), teacher))
    gap = (audit["inherited_acc"] - audit["standalone_acc"]) * 100
    fit = stats.linregress(overlap, gap)
    return (f"{path}: {len(audit)} architectures, teacher overlap {overlap.min():.2f}-{overlap.max():.2f} runs per step; "
            f"inherited minus standalone (points) = {fit.intercept:+.1f} {fit.slope:+.1f} x overlap, r {fit.rvalue:+.2f}, p {fit.pvalue:.3f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/exposure.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="fair", choices=STRATEGIES)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audit", nargs="*", default=[], help="audit.csv files whose gaps are regressed on the teacher overlap")
    args = p.parse_args(argv)
    space = get_space(args.space)
    uses, teacher = count_uses(space, args.strategy, args.steps, args.seed)
    table = choices(space, uses)
    print(f"{args.strategy}: uses per step over {args.steps} steps ({args.space}, seed {args.seed}); teacher runs per step in brackets")
    shown = [c for c in sorted(table) if c[0] == "merge"]
    blocks = [c for c in table if c[0] == "block"]
    deepest = {i: max(c[2] for c in blocks if c[1] == i) for i in {c[1] for c in blocks}}
    shown += [("block", i, j) for i, j in sorted(deepest.items())] + [c for c in [("block", 1, 1)] if c in table]
    for c in shown:
        cells = ", ".join(f"{v} {u:.2f} ({teacher.get((*c, v), 0.0):.2f})" for v, u in sorted(table[c].items(), key=lambda kv: -kv[1]))
        print(f"  {describe(c):28s} {cells}")
    worst = sorted(table, key=lambda c: -ratio(table[c]))
    print("most unequal choices:")
    for c in worst[:5]:
        print(f"  {describe(c):28s} ratio {ratio(table[c]):.2f}: " + ", ".join(f"{v} {u:.3f}" for v, u in table[c].items()))
    for path in args.audit:
        print(regression(path, teacher))
    teacher_table = choices(space, teacher)
    if teacher_table:
        c = max(teacher_table, key=lambda c: ratio(teacher_table[c]))
        print(f"the teacher alone: largest ratio {ratio(teacher_table[c]):.2f} ({describe(c)})")
    top = ratio(table[worst[0]])
    print(f"largest ratio between two options of one choice: {top:.2f} ({describe(worst[0])}, {len(table)} choices); "
          f"every choice within {WITHIN}x: {'yes' if top <= WITHIN else 'no'}")


if __name__ == "__main__":
    main()
