"""Building blocks, one module per operator family, and the factories that pick them by name."""
from __future__ import annotations

from .attention import Attention, MhsaBlock
from .elastic import ElasticMlp, center_slice, hidden_features
from .maf import MafBlock
from .merging import ConvMerge, TokenPool
from .spm import StepwisePatchMerging
from .strip_mlp import StripMlpBlock
from .super_token import SuperTokenBlock

BLOCK_CLASSES = {"mhsa": MhsaBlock, "shared": MhsaBlock, "maf": MafBlock, "strip": StripMlpBlock, "stoken": SuperTokenBlock}
MERGE_CLASSES = {"pool": TokenPool, "conv": ConvMerge, "spm": StepwisePatchMerging}


def make_block(layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0):
    """The block for `layer` (a search_spaces.Layer) in a stage of width `dim` on a side x side grid."""
    if layer.block in ("mhsa", "shared"):
        return MhsaBlock(dim, num_heads, layer.mlp_ratio, shared=layer.block == "shared", drop_path=drop_path)
    if layer.block == "maf":
        return MafBlock(dim, num_heads, side, layer.mlp_ratio, scale.window_size, scale.gld_ratio, drop_path=drop_path)
    if layer.block == "strip":
        return StripMlpBlock(dim, side, layer.strip_width, drop_path=drop_path)
    if layer.block == "stoken":
        return SuperTokenBlock(dim, num_heads, layer.grid, drop_path=drop_path)
    raise ValueError(f"unknown block type {layer.block!r}")


def make_merge(op: str, dim_in: int, dim_out: int):
    return MERGE_CLASSES[op](dim_in, dim_out)


def block_cost(layer, dim: int, num_heads: int, side: int, scale) -> tuple[int, int]:
    return BLOCK_CLASSES[layer.block].cost(dim, num_heads, side, layer, scale)


def merge_cost(op: str, dim_in: int, dim_out: int, side_in: int) -> tuple[int, int]:
    return MERGE_CLASSES[op].cost(dim_in, dim_out, side_in)


__all__ = [
    "Attention", "MhsaBlock", "MafBlock", "StripMlpBlock", "SuperTokenBlock", "TokenPool", "ConvMerge",
    "StepwisePatchMerging", "ElasticMlp", "BLOCK_CLASSES", "MERGE_CLASSES", "make_block", "make_merge",
    "block_cost", "merge_cost", "center_slice", "hidden_features",
]
