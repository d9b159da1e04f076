"""The module behind each of the vocabulary's block types and merge operators, registered next to its class.

A block class provides `build(layer, dim, num_heads, side, scale, drop_path)` (the block for one
search_spaces.Layer in a stage of width `dim` on a side x side grid), `cost(dim, num_heads, side, layer,
scale)` (exact MACs and parameters) and `forward(x, attn=None, layer=None)`: (B, H, W, C) tokens and the
previous layer's attention map in, tokens and its own map (or None) out; `layer`, when given, selects
the elastic sizes to run. A block of an attention-source type also takes `need_map` (default False): it forms
and returns its map only when asked, where the next layer reuses it. A merge class is built as cls(dim_in, dim_out) and costed as
cls.cost(dim_in, dim_out, side_in).
"""
from __future__ import annotations

from dataclasses import dataclass

from search_spaces import Layer
from search_spaces.vocabulary import BLOCKS, MERGES


@dataclass(frozen=True)
class BlockModule:
    cls: type
    elastic: tuple[str, ...] = ()  # choice fields whose smaller values run on slices of the widest weights


BLOCK_MODULES: dict[str, BlockModule] = {}
MERGE_MODULES: dict[str, type] = {}


def _add(table: dict, name: str, entry, what: str) -> None:
    if table.get(name, entry) != entry:
        raise ValueError(f"the {what} {name!r} already has a module")
    table[name] = entry


def register_block_module(*names: str, elastic: tuple[str, ...] = ()):
    """Class decorator: the module of the vocabulary's block types `names`. A choice field not listed as
    elastic must leave the block's weight shapes unchanged (the supernet builds it at the first value)."""

    def register(cls):
        for name in names:
            if name not in BLOCKS:
                raise ValueError(f"{cls.__name__}: {name!r} is not a block type of the vocabulary")
            unknown = [f for f in elastic if f not in BLOCKS[name].fields]
            if unknown:
                raise ValueError(f"{cls.__name__}: block type {name!r} has no choice field {unknown[0]!r}")
            _add(BLOCK_MODULES, name, BlockModule(cls, tuple(elastic)), "block type")
        return cls

    return register


def register_merge_module(name: str):
    def register(cls):
        if name not in MERGES:
            raise ValueError(f"{cls.__name__}: {name!r} is not a merge operator of the vocabulary")
        _add(MERGE_MODULES, name, cls, "merge operator")
        return cls

    return register


def block_module(block: str) -> BlockModule:
    try:
        return BLOCK_MODULES[block]
    except KeyError:
        raise ValueError(f"unknown block type {block!r}; with a module: {', '.join(BLOCK_MODULES)}") from None


def merge_module(op: str) -> type:
    try:
        return MERGE_MODULES[op]
    except KeyError:
        raise ValueError(f"unknown merge operator {op!r}; with a module: {', '.join(MERGE_MODULES)}") from None


def has_modules(space) -> bool:
    """Whether every block type and merge operator of a space has a module, i.e. whether it can have a supernet (a
    space searched against a table, such as nb201, has none)."""
    return all(b in BLOCK_MODULES for rule in space.stages for b in rule.blocks) and all(
        op in MERGE_MODULES for ops in space.merges for op in ops)


def widest_layer(block: str, rule) -> Layer:
    """The layer of type `block` whose weights hold every choice of the stage rule `rule`: the largest
    value of each elastic field, the first value of any other field."""
    elastic = block_module(block).elastic
    return Layer(block, **{f: max(rule.values_of(f)) if f in elastic else rule.values_of(f)[0] for f in BLOCKS[block].fields})
