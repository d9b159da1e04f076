"""The block vocabulary: every choice field, block type and merge operator, one table row each.

Whatever needs to know what a block type is asks here: the Layer record and its JSON, validation,
sampling and Optuna, the supernet, the cost and latency models, the reports. A new block type is one
`register_block_type` row (plus `register_choice_field` rows for choices it brings) and its module in
supernet.blocks (`register_block_module`).

The one rule that couples layers is attention reuse (PSViT's sharing): a block type that reuses the
previous layer's attention map is legal only right after a layer of an attention-source type in the
same stage, so never as the first layer of a stage.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

_RESERVED = {"block", "choices", "to_dict"}  # Layer's own attributes


@dataclass(frozen=True)
class ChoiceField:
    """A per-layer choice. `name` is the Layer attribute and the JSON key."""

    name: str
    short: str  # Optuna parameter s{i}_l{j}_{short}
    label: str  # in reports
    rule_attr: str  # the StageRule attribute holding the allowed values
    default: tuple  # the allowed values of a StageRule that gives none
    tag: str  # the value's prefix in compact keys (latency tables): r4, s3, g2
    header: str = ""  # column header in space descriptions (nas.spaces); the name if empty
    per_side: bool = False  # a count of parts per side of the stage's token grid (cells_per_side turns it into tokens)


@dataclass(frozen=True)
class BlockType:
    name: str
    fields: tuple[str, ...] = ()  # the choice fields a layer of this type sets, in this order
    attention_source: bool = False  # the next layer may reuse its attention map
    reuses_attention: bool = False  # reuses the previous layer's map: only right after an attention source


CHOICE_FIELDS: dict[str, ChoiceField] = {}
BLOCKS: dict[str, BlockType] = {}
MERGES: dict[str, str] = {}  # operator -> what it does


class NamesView(Sequence):
    """The names of a registry table in registration order, as a read-only sequence that follows the table."""

    def __init__(self, table: dict):
        self._table = table

    def __getitem__(self, index):
        return tuple(self._table)[index]

    def __len__(self) -> int:
        return len(self._table)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


BLOCK_TYPES = NamesView(BLOCKS)
MERGE_TYPES = NamesView(MERGES)


def _add(table: dict, name: str, row, what: str):
    """Add `row` under `name`; registering the same row again is a no-op, a different one an error."""
    if table.get(name, row) != row:
        raise ValueError(f"a {what} named {name!r} is already registered with another definition")
    table[name] = row
    return row


def register_choice_field(field: ChoiceField) -> ChoiceField:
    if not field.name.isidentifier() or field.name in _RESERVED:
        raise ValueError(f"choice field name {field.name!r} must be an identifier other than {', '.join(sorted(_RESERVED))}")
    for other in CHOICE_FIELDS.values():
        if other.name != field.name and {other.short, other.tag, other.rule_attr} & {field.short, field.tag, field.rule_attr}:
            raise ValueError(f"choice field {field.name!r}: its short name, tag or rule attribute is taken by {other.name!r}")
    return _add(CHOICE_FIELDS, field.name, field, "choice field")


def register_block_type(name: str, fields: tuple[str, ...] = (), *, attention_source: bool = False,
                        reuses_attention: bool = False) -> BlockType:
    unknown = [f for f in fields if f not in CHOICE_FIELDS]
    if unknown:
        raise ValueError(f"block type {name!r}: unknown choice field {unknown[0]!r}; registered: {', '.join(CHOICE_FIELDS)}")
    return _add(BLOCKS, name, BlockType(name, tuple(fields), attention_source, reuses_attention), "block type")


def register_merge(name: str, description: str = "") -> str:
    _add(MERGES, name, description, "merge operator")
    return name


def is_attention_source(block: str | None) -> bool:
    """Whether a layer of this type hands the next layer an attention map it may reuse (None: no layer;
    False for an unknown type)."""
    return block in BLOCKS and BLOCKS[block].attention_source


def reuses_attention(block: str) -> bool:
    """Whether a layer of this type reuses the previous layer's attention map (False for an unknown type)."""
    return block in BLOCKS and BLOCKS[block].reuses_attention


def may_follow(block: str, source_before: bool) -> bool:
    """The reuse rule: whether `block` may come after a layer that is (or is not) an attention source;
    the first layer of a stage has none before it."""
    return source_before or not BLOCKS[block].reuses_attention


def attention_sources() -> tuple[str, ...]:
    return tuple(b.name for b in BLOCKS.values() if b.attention_source)


MLP_RATIO = register_choice_field(ChoiceField(
    "mlp_ratio", short="mlp", label="MLP ratio", rule_attr="mlp_ratios", default=(4,), tag="r",
    header="mlp_ratio (hidden / width)"))
STRIP_WIDTH = register_choice_field(ChoiceField(
    "strip_width", short="strip", label="strip width", rule_attr="strip_widths", default=(1, 3, 5, 7), tag="s"))
GRID = register_choice_field(ChoiceField(
    "grid", short="grid", label="super tokens per side", rule_attr="grids", default=(7,), tag="g",
    header="grid (super tokens per side)", per_side=True))
GLD_RATIO = register_choice_field(ChoiceField(
    "gld_ratio", short="gld", label="MAF global tokens per token", rule_attr="gld_ratios", default=(0.5,), tag="n",
    header="gld_ratio (global / local tokens)"))
WINDOWS = register_choice_field(ChoiceField(
    "windows", short="win", label="MAF windows per side", rule_attr="windows", default=(8,), tag="w",
    header="windows (per side)", per_side=True))

register_block_type("mhsa", ("mlp_ratio",), attention_source=True)
register_block_type("shared", ("mlp_ratio",), reuses_attention=True)
register_block_type("maf", ("mlp_ratio", "gld_ratio", "windows"))
register_block_type("strip", ("strip_width", "mlp_ratio"))
register_block_type("stoken", ("grid", "mlp_ratio"))

register_merge("pool", "LN, 2x2 token pooling, linear to the next width")
register_merge("conv", "strided 3x3 convolution, LN")
register_merge("spm", "stepwise patch merging: multi-scale aggregation, guided local enhancement")


def cells_per_side(side: int, per_side: int) -> int:
    """The cell (or window) side, in tokens, that splits a `side` x `side` grid into at most `per_side` x
    `per_side` parts, as many as whole cells allow: ceil(side / per_side). A scale-free choice (super tokens
    or windows per side) becomes the same partition at every scale where the grid allows it (the target's
    56/28/14/7 divide exactly), and never fewer tokens per cell than a smaller choice gets, so two choices
    stay two operators on small grids too (round() made 7 and 14 per side one global attention on 8x8
    tokens); the grid is padded to whole cells when the cell does not divide it."""
    return max(1, -(-side // per_side))
