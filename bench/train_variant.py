"""Train a supernet with one cross-family sharing variant, for bench/transfer.py to measure.

    python bench/train_variant.py VARIANT [nas.train_supernet arguments ...]

VARIANT names which parts the block types at a layer position share (supernet.sharing):

- shared: the default, every role of every block type (norms and channel MLP);
- separate: nothing shared (each type its own norms and MLP, the layout before sharing);
- no-strip-mlp: as shared, but Strip-MLP's GRN MLP and its norm keep their own weights;
- norms-only: only the LayerNorms are shared;
- maf-extra-norms: as shared, and MAF's global-stream norm joins the token mixer's norm;
- balanced-merges: as shared, and the sandwich's random paths take at each boundary a merge operator neither extreme
  runs (in psvit_ext conv: the largest runs spm, the smallest pool), so every operator runs on one path a step;
- consensus-merges: as shared, and the teacher's merge is also pulled (with the alignment's weight) towards the mean
  of every merge operator's output on its input (detached), so the operators meet instead of the plain ones chasing
  SPM alone;
- tied-merges: as shared, and a boundary's pool merge reads its projection off the conv merge's kernel (the sum of
  the four taps the pool window covers, `WindowTaps`), so the conv merge trains on every step the pool merge runs;
- teacher-merge-dropout: as shared, and at each boundary the teacher (the largest path) runs another merge operator
  than its own (spm) with probability 0.25, drawn each step, so the stages behind it also learn from the others.

The variant changes only which modules are tied: every variant's checkpoint loads into a supernet built with the
same variant (this script) and its paths extract to the same standalone models.
"""
from __future__ import annotations

import sys

from supernet.blocks import MafBlock, MhsaBlock, StripMlpBlock, SuperTokenBlock

DEFAULT = {cls: dict(cls.SHARED_PARTS) for cls in (MhsaBlock, MafBlock, StripMlpBlock, SuperTokenBlock)}


def apply_variant(name: str) -> None:
    parts = {cls: dict(p) for cls, p in DEFAULT.items()}
    if name == "separate":
        parts = {cls: {} for cls in parts}
    elif name == "no-strip-mlp":
        parts[StripMlpBlock] = {}
    elif name == "norms-only":
        parts = {cls: {r: a for r, a in p.items() if r.endswith("norm")} for cls, p in parts.items()}
    elif name not in ("shared", "maf-extra-norms", "balanced-merges", "consensus-merges", "tied-merges",
                      "teacher-merge-dropout"):
        raise SystemExit(f"unknown variant {name!r}; allowed: shared, separate, no-strip-mlp, norms-only, maf-extra-norms, "
                         "balanced-merges, consensus-merges, tied-merges, teacher-merge-dropout")
    for cls, p in parts.items():
        cls.SHARED_PARTS = p


def tie_maf_norms(net) -> None:
    for stage in net.stages:
        for slot in stage.blocks:
            if "maf" in slot:
                slot["maf"].norm_global = slot["maf"].norm1


def rewrite_sandwich_paths(tag: str, rewrite) -> None:
    """Every sandwich step's paths pass through `rewrite(sampler, paths, rng)`, the rng drawn from (seed, epoch, step,
    tag) as the sampler's own."""
    import random

    from nas.training import sampling

    paths = sampling.PathSampler.paths

    def rewritten(self, epoch: int, step: int):
        drawn = paths(self, epoch, step)
        if self.strategy != "sandwich":
            return drawn
        return rewrite(self, drawn, random.Random(f"{self.seed}:{epoch}:{step}:{tag}"))

    sampling.PathSampler.paths = rewritten


def balance_merges() -> None:
    import dataclasses

    def balanced(sampler, drawn, rng):
        unused = [[op for op in ops if op not in (sampler.largest.merges[i], sampler.smallest.merges[i])] or list(ops)
                  for i, ops in enumerate(sampler.space.merges)]
        return drawn[:2] + [dataclasses.replace(a, merges=tuple(rng.choice(ops) for ops in unused)) for a in drawn[2:]]

    rewrite_sandwich_paths("merges", balanced)


def teacher_merge_dropout(rate: float = 0.25) -> None:
    import dataclasses

    def dropped(sampler, drawn, rng):
        merges = tuple(rng.choice([o for o in ops if o != op]) if len(ops) > 1 and rng.random() < rate else op
                       for op, ops in zip(drawn[0].merges, sampler.space.merges))
        return [dataclasses.replace(drawn[0], merges=merges)] + drawn[1:]

    rewrite_sandwich_paths("teacher-merges", dropped)


def tied_merges() -> None:
    import torch.nn.functional as F
    from torch import nn

    import supernet.model as model

    class Taps(nn.Module):
        """The pool merge's projection as the conv merge's 3x3 stride-2 kernel restricted to the 2x2 window the pool
        averages (taps [1:, 1:]), summed: the conv with those four taps equal, on the pool's averaged input."""

        def __init__(self, conv):
            super().__init__()
            self.conv = conv

        @property
        def weight(self):
            return self.conv.weight[:, :, 1:, 1:].sum((2, 3))

        @property
        def bias(self):
            return self.conv.bias

        def forward(self, x):
            return F.linear(x, self.weight, self.bias)

    init = model.Supernet.__init__

    def patched(self, *a, **k):
        init(self, *a, **k)
        for stage in self.stages:
            if stage.downsample is not None and {"pool", "conv"} <= set(stage.downsample):
                stage.downsample["pool"].proj = Taps(stage.downsample["conv"].conv)

    model.Supernet.__init__ = patched


def merge_consensus() -> None:
    import torch
    import torch.nn.functional as F

    from nas.training import supernet_trainer

    align = supernet_trainer.alignment_loss

    def with_consensus(net, arch, trace, *args, **kwargs):
        terms = []
        for i, kind, _, x, y, _ in trace:
            if kind == "merge":
                with torch.no_grad():
                    mean = torch.stack([op(x.detach()).float() for op in net.stages[i].downsample.values()]).mean(0)
                terms.append(F.mse_loss(y.float(), mean) / (mean.pow(2).mean() + 1e-6))
        return align(net, arch, trace, *args, **kwargs) + torch.stack(terms).mean()

    supernet_trainer.alignment_loss = with_consensus


def use_variant(name: str) -> None:
    """Every Supernet built after this call has the variant's sharing."""
    apply_variant(name)
    if name == "balanced-merges":
        balance_merges()
    if name == "consensus-merges":
        merge_consensus()
    if name == "tied-merges":
        tied_merges()
    if name == "teacher-merge-dropout":
        teacher_merge_dropout()
    if name == "maf-extra-norms":  # norm_global reads the same input as norm1: one module for both
        import supernet.model as model

        init = model.Supernet.__init__

        def patched(self, *a, **k):
            init(self, *a, **k)
            tie_maf_norms(self)

        model.Supernet.__init__ = patched


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    use_variant(sys.argv[1])
    from nas.train_supernet import main as train

    return train(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
