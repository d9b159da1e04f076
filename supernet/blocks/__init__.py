"""Building blocks, one module per operator family, and the factories that look them up by name.

Each block and merge class registers itself (supernet.blocks.registry) under the vocabulary's names;
importing this package imports every built-in one.
"""
from __future__ import annotations

from .attention import Attention, MhsaBlock
from .elastic import ElasticMlp, center_slice, hidden_features
from .maf import MafBlock
from .merging import ConvMerge, TokenPool
from .registry import (BLOCK_MODULES, MERGE_MODULES, BlockModule, block_module, merge_module, register_block_module,
                       register_merge_module, widest_layer)
from .spm import StepwisePatchMerging
from .strip_mlp import StripMlpBlock
from .super_token import SuperTokenBlock


def make_block(layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0):
    """The block for `layer` (a search_spaces.Layer) in a stage of width `dim` on a side x side grid."""
    return block_module(layer.block).cls.build(layer, dim, num_heads, side, scale, drop_path)


def make_merge(op: str, dim_in: int, dim_out: int):
    return merge_module(op)(dim_in, dim_out)


def block_cost(layer, dim: int, num_heads: int, side: int, scale) -> tuple[int, int]:
    return block_module(layer.block).cls.cost(dim, num_heads, side, layer, scale)


def merge_cost(op: str, dim_in: int, dim_out: int, side_in: int) -> tuple[int, int]:
    return merge_module(op).cost(dim_in, dim_out, side_in)


__all__ = [
    "Attention", "MhsaBlock", "MafBlock", "StripMlpBlock", "SuperTokenBlock", "TokenPool", "ConvMerge",
    "StepwisePatchMerging", "ElasticMlp", "BLOCK_MODULES", "MERGE_MODULES", "BlockModule", "block_module",
    "merge_module", "register_block_module", "register_merge_module", "widest_layer", "make_block", "make_merge",
    "block_cost", "merge_cost", "center_slice", "hidden_features",
]
