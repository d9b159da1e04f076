"""SearchSpace: the choices, their legal combinations, validation, uniform sampling, mutation, Optuna.

A space is declared by one StageRule per stage, the merge operators allowed at each stage boundary and,
optionally, the allowed total depths. What a block type carries and the one cross-layer rule (attention
reuse: PSViT's 'shared' layer needs an 'mhsa' layer of the same stage right before it) come from the
vocabulary's table. Uniform sampling is exact over the legal set: layer sequences are counted by
dynamic programming and drawn in proportion to the number of legal completions.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from .arch import Arch, ArchError, Layer
from .scale import Scale
from .vocabulary import (BLOCK_TYPES, BLOCKS, CHOICE_FIELDS, GLD_RATIO, GRID, MERGE_TYPES, MLP_RATIO, STRIP_WIDTH, WINDOWS,
                         attention_sources, is_attention_source, may_follow)
from .walk import ByChoice, Mutation, ParamsOf, Suggestion, Uniform, sequence_counter, walk


def _fmt(values) -> str:
    return ", ".join(_num(v) for v in values)


def _num(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass(frozen=True)
class StageRule:
    """One stage's choices: its depths, its block types and the allowed values of each choice field.

    The built-in fields have their keywords (mlp_ratios=, strip_widths=, grids=, gld_ratios=, windows=); a field registered
    later takes its values from `values`, keyed by field name (values={"kernel": (3, 5)}), and reads as
    its rule attribute too (rule.kernels). A field given no values allows the vocabulary's default.
    """

    depths: tuple[int, ...]
    blocks: tuple[str, ...]
    mlp_ratios: tuple[float, ...] = MLP_RATIO.default
    strip_widths: tuple[int, ...] = STRIP_WIDTH.default
    grids: tuple[int, ...] = GRID.default
    gld_ratios: tuple[float, ...] = GLD_RATIO.default
    windows: tuple[int, ...] = WINDOWS.default
    values: Mapping[str, tuple] | tuple[tuple[str, tuple], ...] = ()

    def __post_init__(self):
        given = dict(self.values)
        for name in given:
            if name not in CHOICE_FIELDS:
                raise ValueError(f"StageRule values: unknown choice field {name!r}; registered: {', '.join(CHOICE_FIELDS)}")
            if CHOICE_FIELDS[name].rule_attr in self.__dataclass_fields__:
                raise ValueError(f"StageRule values: give {name} values with {CHOICE_FIELDS[name].rule_attr}=")
        object.__setattr__(self, "values", tuple((n, tuple(given[n])) for n in CHOICE_FIELDS if n in given))

    def __getattr__(self, name: str):
        field_ = next((f for f in CHOICE_FIELDS.values() if f.rule_attr == name), None)
        if field_ is None:
            raise AttributeError(f"'StageRule' object has no attribute {name!r}")
        return self.values_of(field_.name)

    def values_of(self, field_name: str) -> tuple:
        """The allowed values of a choice field in this stage."""
        choice = CHOICE_FIELDS[field_name]
        if choice.rule_attr in self.__dataclass_fields__:
            return getattr(self, choice.rule_attr)
        return dict(self.__dict__.get("values", ())).get(field_name, choice.default)

    def options(self) -> tuple[Layer, ...]:
        """Every Layer legal somewhere in this stage (the reuse rule aside): per block type, every
        combination of its fields' values."""
        return self._options

    @cached_property
    def _options(self) -> tuple[Layer, ...]:
        out = []
        for block in self.blocks:
            names = BLOCKS[block].fields
            for combo in itertools.product(*(self.values_of(n) for n in names)):
                out.append(Layer(block, **dict(zip(names, combo))))
        return tuple(out)

    def legal_options(self, source_before: bool) -> tuple[Layer, ...]:
        """The options legal after a layer that is (or is not) an attention source."""
        return tuple(o for o in self.options() if may_follow(o.block, source_before))

    def legal_blocks(self, source_before: bool) -> tuple[str, ...]:
        return tuple(b for b in self.blocks if may_follow(b, source_before))

    def blocks_at(self, j: int) -> tuple[str, ...]:
        """The block types layer j of this stage may have: a reusing type never opens a stage, and
        appears later only if the stage has an attention-source type."""
        return self.legal_blocks(j > 0 and any(is_attention_source(b) for b in self.blocks))


@dataclass(frozen=True)
class SearchSpace:
    name: str
    stages: tuple[StageRule, ...]
    merges: tuple[tuple[str, ...], ...]  # allowed operators per stage boundary
    target: Scale
    proxy: Scale
    total_depths: tuple[int, ...] | None = None
    description: str = ""
    rules: tuple[str, ...] = field(default=())
    text_format: tuple | None = None  # (parse, format): a benchmark's own text form of an architecture (NAS-Bench-201's cells)

    def __post_init__(self):
        if len(self.merges) != len(self.stages) - 1:
            raise ValueError(f"space {self.name}: {len(self.stages)} stages need {len(self.stages) - 1} merge choices")
        for scale in (self.target, self.proxy):
            scale.check()
            if len(scale.embed_dims) != len(self.stages):
                raise ValueError(f"space {self.name}: scale {scale.name} has {len(scale.embed_dims)} stages")
        for rule in self.stages:
            for b in rule.blocks:
                if b not in BLOCK_TYPES:
                    raise ValueError(f"space {self.name}: unknown block type {b!r}")
        for ops in self.merges:
            for m in ops:
                if m not in MERGE_TYPES:
                    raise ValueError(f"space {self.name}: unknown merge operator {m!r}")

    def parse_arch(self, text: str) -> Arch:
        """An architecture from its text: the space's own form when it has one (a NAS-Bench-201 cell string), else
        Arch JSON; validated."""
        if self.text_format is not None and not str(text).lstrip().startswith("{"):
            return self.validate(self.text_format[0](text))
        return self.validate(Arch.from_json(text))

    # ------------------------------------------------------------------ scales
    def scale(self, which: str | Scale = "target") -> Scale:
        if isinstance(which, Scale):
            return which
        if which == "target":
            return self.target
        if which == "proxy":
            return self.proxy
        raise ValueError(f"unknown scale {which!r}; allowed: target, proxy")

    # ------------------------------------------------------------------ counting
    def _stage_counts(self, i: int):
        """f(n, source_before): number of legal layer sequences of length n for stage i."""
        return sequence_counter(self.stages[i].options())

    def depth_tuples(self) -> list[tuple[int, ...]]:
        return list(self._depth_table[0])

    def depth_weights(self) -> tuple[int, ...]:
        """For each depth tuple, the number of legal architectures with those depths (merges aside)."""
        return self._depth_table[1]

    @cached_property
    def _depth_table(self) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
        """Legal depth tuples and, for each, the number of legal architectures with those depths (merges aside)."""
        combos = itertools.product(*(r.depths for r in self.stages))
        tuples = tuple(d for d in combos if self.total_depths is None or sum(d) in self.total_depths)
        return tuples, tuple(self._depth_weight(d) for d in tuples)

    def _depth_weight(self, depths: tuple[int, ...]) -> int:
        w = 1
        for i, d in enumerate(depths):
            w *= self._stage_counts(i)(d, False)
        return w

    def cardinality(self) -> int:
        merges = 1
        for ops in self.merges:
            merges *= len(ops)
        return merges * sum(self._depth_table[1])

    # ------------------------------------------------------------------ validation
    def validate(self, arch: Arch) -> Arch:
        """Raise ArchError naming the first illegal field and its allowed values; return the arch if legal."""
        if arch.space != self.name:
            raise ArchError(f"space: {arch.space!r} does not match space {self.name!r}")
        if len(arch.stages) != len(self.stages):
            raise ArchError(f"stages: {len(arch.stages)} stages given; space {self.name} has {len(self.stages)}")
        if len(arch.merges) != len(self.merges):
            raise ArchError(f"merges: {len(arch.merges)} given; space {self.name} has {len(self.merges)} stage boundaries")
        for i, (m, ops) in enumerate(zip(arch.merges, self.merges)):
            if m not in ops:
                raise ArchError(f"merges[{i}]: {m!r} is not allowed; allowed: {', '.join(ops)}")
        for i, (stage, rule) in enumerate(zip(arch.stages, self.stages)):
            if len(stage) not in rule.depths:
                raise ArchError(f"stages[{i}]: {len(stage)} layers is not allowed; allowed depths: {_fmt(rule.depths)}")
            for j, layer in enumerate(stage):
                self._validate_layer(i, j, layer, stage[j - 1] if j else None)
        if self.total_depths is not None and sum(arch.depths) not in self.total_depths:
            raise ArchError(f"stages: total depth {sum(arch.depths)} is not allowed; allowed totals: {_fmt(self.total_depths)}")
        return arch

    def _validate_layer(self, i: int, j: int, layer: Layer, prev: Layer | None) -> None:
        rule, where = self.stages[i], f"stages[{i}][{j}]"
        if layer.block not in rule.blocks:
            known = "" if layer.block in BLOCK_TYPES else " (unknown block type)"
            raise ArchError(f"{where}.block: {layer.block!r} is not allowed in stage {i}{known}; allowed: {', '.join(rule.blocks)}")
        if not may_follow(layer.block, is_attention_source(prev.block if prev else None)):
            after = "it is the first layer of its stage" if prev is None else f"the previous layer is {prev.block!r}"
            sources = " or ".join(repr(b) for b in attention_sources())
            raise ArchError(f"{where}.block: {layer.block!r} must follow an {sources} layer in the same stage, but {after}")
        used = BLOCKS[layer.block].fields
        for name in CHOICE_FIELDS:
            value = getattr(layer, name)
            if name in used:
                allowed = rule.values_of(name)
                if value is None:
                    raise ArchError(f"{where}.{name}: missing for block {layer.block!r}; allowed: {_fmt(allowed)}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in allowed:
                    raise ArchError(f"{where}.{name}: {value!r} is not allowed; allowed: {_fmt(allowed)}")
            elif value is not None:
                takes = f"it takes only {', '.join(used)}" if used else "it takes no choice"
                raise ArchError(f"{where}.{name}: not used by block {layer.block!r} ({takes})")

    # ------------------------------------------------------------------ sampling
    def sample(self, rng: random.Random | int | None = None) -> Arch:
        """One architecture drawn uniformly from the legal set."""
        return walk(self, Uniform(_rng(rng)))

    def sample_by_choice(self, rng: random.Random | int | None = None) -> Arch:
        """One architecture drawn choice by choice, each value uniform among those legal at that point:
        the depths (per stage, or a legal depth tuple), the merges, then each layer's block type and its
        values. This is how `suggest` proposes under Optuna's random sampler and how SPOS/AutoFormer
        sample training paths; unlike `sample` it does not favour deep stages, whose layer sequences
        outnumber shallow ones exponentially."""
        return walk(self, ByChoice(_rng(rng)))

    def mutate(self, arch: Arch, rng: random.Random | int | None = None, prob: float = 0.2) -> Arch:
        """A legal neighbour differing from `arch`: each choice is redrawn with probability `prob`."""
        rng = _rng(rng)
        self.validate(arch)
        if self.cardinality() == 1:
            return arch
        while True:
            new = walk(self, Mutation(arch, rng, prob))
            if new != arch:
                return self.validate(new)

    # ------------------------------------------------------------------ optuna
    def optuna_params(self, arch: Arch) -> dict:
        """The Optuna parameters `suggest` turns into `arch` (study.enqueue_trial(space.optuna_params(arch)) makes
        it a search's next trial)."""
        picker = ParamsOf(self.validate(arch))
        if walk(self, picker) != arch:
            raise ArchError("the architecture does not follow this space's walk")  # unreachable for a valid arch
        return picker.params

    def suggest(self, trial) -> Arch:
        """Define-by-run proposal: conditional parameters exist only where the earlier choices use them
        (parameters depth{i} or depths, merge{i}, s{i}_l{j}_block[_after_mhsa], s{i}_l{j}_<field short name>)."""
        return self.validate(walk(self, Suggestion(trial)))


def _rng(rng: random.Random | int | None) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)
