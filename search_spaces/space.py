"""SearchSpace: the choices, their legal combinations, validation, uniform sampling, mutation, Optuna.

A space is declared by one StageRule per stage, the merge operators allowed at each stage boundary and,
optionally, the allowed total depths. The one cross-layer rule is PSViT's attention sharing: a
'shared' layer reuses the attention map of the layer before it, which must be a plain 'mhsa' layer of
the same stage. Uniform sampling is exact over the legal set: layer sequences are counted by dynamic
programming and drawn in proportion to the number of legal completions.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from .arch import BLOCK_TYPES, MERGE_TYPES, Arch, ArchError, Layer
from .scale import Scale

_FIELD_OF_BLOCK = {"mhsa": "mlp_ratio", "shared": "mlp_ratio", "maf": "mlp_ratio", "strip": "strip_width", "stoken": "grid"}
_CHOICE_FIELDS = ("mlp_ratio", "strip_width", "grid")


def _fmt(values) -> str:
    return ", ".join(_num(v) for v in values)


def _num(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


@dataclass(frozen=True)
class StageRule:
    depths: tuple[int, ...]
    blocks: tuple[str, ...]
    mlp_ratios: tuple[float, ...] = (4,)
    strip_widths: tuple[int, ...] = (1, 3, 5, 7)
    grids: tuple[int, ...] = (1,)

    def values(self, block: str) -> tuple:
        name = _FIELD_OF_BLOCK[block]
        return {"mlp_ratio": self.mlp_ratios, "strip_width": self.strip_widths, "grid": self.grids}[name]

    def options(self) -> tuple[Layer, ...]:
        """Every Layer record legal somewhere in this stage (sharing legality aside)."""
        out = []
        for block in self.blocks:
            name = _FIELD_OF_BLOCK[block]
            for v in self.values(block):
                out.append(Layer(block=block, **{name: v}))
        return tuple(out)


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
        """f(n, prev_is_mhsa): number of legal layer sequences of length n for stage i."""
        return _sequence_counter(self.stages[i].options())

    def depth_tuples(self) -> list[tuple[int, ...]]:
        return list(self._depth_table[0])

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
        if layer.block == "shared" and (prev is None or prev.block != "mhsa"):
            after = "it is the first layer of its stage" if prev is None else f"the previous layer is {prev.block!r}"
            raise ArchError(f"{where}.block: 'shared' must follow an 'mhsa' layer in the same stage, but {after}")
        used = _FIELD_OF_BLOCK[layer.block]
        for name in _CHOICE_FIELDS:
            value = getattr(layer, name)
            if name == used:
                allowed = rule.values(layer.block)
                if value is None:
                    raise ArchError(f"{where}.{name}: missing for block {layer.block!r}; allowed: {_fmt(allowed)}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in allowed:
                    raise ArchError(f"{where}.{name}: {value!r} is not allowed; allowed: {_fmt(allowed)}")
            elif value is not None:
                raise ArchError(f"{where}.{name}: not used by block {layer.block!r} (it takes only {used})")

    def parse(self, text_or_dict) -> Arch:
        arch = Arch.from_json(text_or_dict) if isinstance(text_or_dict, str) else Arch.from_dict(text_or_dict)
        return self.validate(arch)

    # ------------------------------------------------------------------ sampling
    def _sample_stage(self, i: int, depth: int, rng: random.Random) -> tuple[Layer, ...]:
        options = self.stages[i].options()
        count = self._stage_counts(i)
        layers, prev_mhsa = [], False
        for remaining in range(depth, 0, -1):
            weights = []
            for o in options:
                if o.block == "shared" and not prev_mhsa:
                    weights.append(0)
                else:
                    weights.append(count(remaining - 1, o.block == "mhsa"))
            pick = _weighted_index(weights, rng)
            layers.append(options[pick])
            prev_mhsa = options[pick].block == "mhsa"
        return tuple(layers)

    def sample(self, rng: random.Random | int | None = None) -> Arch:
        """One architecture drawn uniformly from the legal set."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        tuples, weights = self._depth_table
        depths = tuples[_weighted_index(list(weights), rng)]
        merges = tuple(rng.choice(ops) for ops in self.merges)
        stages = tuple(self._sample_stage(i, d, rng) for i, d in enumerate(depths))
        return Arch(space=self.name, stages=stages, merges=merges)

    def sample_by_choice(self, rng: random.Random | int | None = None) -> Arch:
        """One architecture drawn choice by choice, each value uniform among those legal at that point:
        the depths (per stage, or a legal depth tuple), the merges, then each layer's block type and its
        value. This is how `suggest` proposes under Optuna's random sampler and how SPOS/AutoFormer
        sample training paths; unlike `sample` it does not favour deep stages, whose layer sequences
        outnumber shallow ones exponentially."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        if self.total_depths is None:
            depths = tuple(rng.choice(r.depths) for r in self.stages)
        else:
            depths = rng.choice(self.depth_tuples())
        merges = tuple(rng.choice(ops) for ops in self.merges)
        stages = []
        for rule, d in zip(self.stages, depths):
            layers: list[Layer] = []
            for _ in range(d):
                can_share = bool(layers) and layers[-1].block == "mhsa"
                block = rng.choice([b for b in rule.blocks if b != "shared" or can_share])
                layers.append(Layer(block=block, **{_FIELD_OF_BLOCK[block]: rng.choice(rule.values(block))}))
            stages.append(tuple(layers))
        return Arch(space=self.name, stages=tuple(stages), merges=merges)

    def mutate(self, arch: Arch, rng: random.Random | int | None = None, prob: float = 0.2) -> Arch:
        """A legal neighbour differing from `arch`: each choice is redrawn with probability `prob`."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        self.validate(arch)
        if self.cardinality() == 1:
            return arch
        while True:
            depths = arch.depths
            if rng.random() < prob:
                depths = rng.choice(self.depth_tuples())
            merges = tuple(rng.choice(ops) if rng.random() < prob else m for m, ops in zip(arch.merges, self.merges))
            stages = []
            for i, d in enumerate(depths):
                old = arch.stages[i]
                options = self.stages[i].options()
                layers: list[Layer] = []
                for j in range(d):
                    prev = layers[-1] if layers else None
                    layer = old[j] if j < len(old) and rng.random() >= prob else None
                    legal = [o for o in options if o.block != "shared" or (prev is not None and prev.block == "mhsa")]
                    if layer is None or layer not in legal:
                        layer = rng.choice(legal)
                    layers.append(layer)
                stages.append(tuple(layers))
            new = Arch(space=self.name, stages=tuple(stages), merges=merges)
            if new != arch:
                return self.validate(new)

    # ------------------------------------------------------------------ optuna
    def suggest(self, trial) -> Arch:
        """Define-by-run proposal: conditional parameters exist only where the earlier choices use them.

        A block-type parameter whose legal set depends on the previous layer (whether 'shared' is
        possible) gets a distinct name per set, since an Optuna parameter keeps one distribution.
        """
        if self.total_depths is None:
            depths = tuple(
                trial.suggest_categorical(f"depth{i}", list(r.depths)) if len(r.depths) > 1 else r.depths[0]
                for i, r in enumerate(self.stages)
            )
        else:
            tuples = self.depth_tuples()
            labels = ["-".join(map(str, t)) for t in tuples]
            depths = tuples[labels.index(trial.suggest_categorical("depths", labels))] if len(labels) > 1 else tuples[0]
        merges = tuple(
            trial.suggest_categorical(f"merge{i}", list(ops)) if len(ops) > 1 else ops[0] for i, ops in enumerate(self.merges)
        )
        stages = []
        for i, (rule, d) in enumerate(zip(self.stages, depths)):
            layers: list[Layer] = []
            for j in range(d):
                can_share = bool(layers) and layers[-1].block == "mhsa"
                blocks = [b for b in rule.blocks if b != "shared" or can_share]
                suffix = "_after_mhsa" if can_share and "shared" in rule.blocks else ""
                block = trial.suggest_categorical(f"s{i}_l{j}_block{suffix}", blocks) if len(blocks) > 1 else blocks[0]
                name = _FIELD_OF_BLOCK[block]
                values = list(rule.values(block))
                short = {"mlp_ratio": "mlp", "strip_width": "strip", "grid": "grid"}[name]
                value = trial.suggest_categorical(f"s{i}_l{j}_{short}", values) if len(values) > 1 else values[0]
                layers.append(Layer(block=block, **{name: value}))
            stages.append(tuple(layers))
        return self.validate(Arch(space=self.name, stages=tuple(stages), merges=merges))


def _weighted_index(weights: list[int], rng: random.Random) -> int:
    total = sum(weights)
    r = rng.randrange(total)
    for k, w in enumerate(weights):
        if r < w:
            return k
        r -= w
    raise AssertionError("unreachable")


@lru_cache(maxsize=None)
def _sequence_counter(options: tuple[Layer, ...]):
    n_mhsa = sum(o.block == "mhsa" for o in options)
    n_shared = sum(o.block == "shared" for o in options)
    n_rest = len(options) - n_mhsa - n_shared

    @lru_cache(maxsize=None)
    def count(n: int, prev_mhsa: bool) -> int:
        if n == 0:
            return 1
        return n_mhsa * count(n - 1, True) + (n_rest + (n_shared if prev_mhsa else 0)) * count(n - 1, False)

    return count
