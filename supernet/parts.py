"""An architecture as separately measurable parts: the stem, each merge, each block, the head.

A part's key names what sets its cost (a block's type and choices, token grid, width and heads; a
merge's operator and shapes), so equal parts of different architectures share one key. The latency
predictor (nas.measure.latency) holds one figure per key in tables cached on disk: changing the key
format orphans those tables.
"""
from __future__ import annotations

import torch
from torch import nn

from search_spaces import Arch, Layer, Scale, SearchSpace
from search_spaces.vocabulary import BLOCKS, CHOICE_FIELDS, reuses_attention

from .blocks import make_block, make_merge
from .model import Head, Stem


def block_key(layer: Layer, side: int, dim: int, heads: int) -> str:
    """e.g. 'mhsa:r4@14x14x320/h5': each of the block type's choice fields as its tag and value."""
    choice = ",".join(f"{CHOICE_FIELDS[f].tag}{getattr(layer, f):g}" for f in BLOCKS[layer.block].fields)
    return f"{layer.block}:{choice}@{side}x{side}x{dim}/h{heads}"


def merge_key(op: str, side_in: int, dim_in: int, dim_out: int) -> str:
    return f"merge:{op}@{side_in}x{side_in}x{dim_in}>{dim_out}"


def arch_parts(arch: Arch, scale: Scale) -> list[str]:
    """The keys of the parts `arch` runs at `scale`, in order."""
    grids = scale.grids()
    parts = ["stem"]
    for i, layers in enumerate(arch.stages):
        if i:
            parts.append(merge_key(arch.merges[i - 1], grids[i - 1], scale.embed_dims[i - 1], scale.embed_dims[i]))
        parts += [block_key(layer, grids[i], scale.embed_dims[i], scale.num_heads[i]) for layer in layers]
    return parts + ["head"]


class BlockProbe(nn.Module):
    """One block on its own: (B, H, W, C) tokens in, tokens out; a block that reuses the previous
    layer's attention map is handed a fixed one."""

    def __init__(self, block: nn.Module, attn: torch.Tensor | None):
        super().__init__()
        self.block, self.attn = block, attn

    def forward(self, x):
        return self.block(x, self.attn)[0]


def space_parts(space: SearchSpace, scale: Scale, batch_size: int) -> dict:
    """key -> (module factory, input shape) for every distinct part of the space at `scale`."""
    grids = scale.grids()
    parts = {"stem": (lambda: Stem(scale), (batch_size, scale.in_chans, scale.img_size, scale.img_size))}
    for i, rule in enumerate(space.stages):
        side, dim, heads = grids[i], scale.embed_dims[i], scale.num_heads[i]
        if i:
            d_in = scale.embed_dims[i - 1]
            for op in space.merges[i - 1]:
                key = merge_key(op, grids[i - 1], d_in, dim)
                parts[key] = (lambda op=op, d_in=d_in, dim=dim: make_merge(op, d_in, dim), (batch_size, grids[i - 1], grids[i - 1], d_in))
        for layer in rule.options():

            def factory(layer=layer, side=side, dim=dim, heads=heads):
                n = side * side
                attn = torch.rand(batch_size, heads, n, n).softmax(-1) if reuses_attention(layer.block) else None
                return BlockProbe(make_block(layer, dim, heads, side, scale), attn)

            parts[block_key(layer, side, dim, heads)] = (factory, (batch_size, side, side, dim))
    last = scale.embed_dims[-1]
    parts["head"] = (lambda: Head(last, scale.num_classes), (batch_size, grids[-1], grids[-1], last))
    return parts
