"""One walk over a space's choices, shared by uniform sampling, sampling by choice, mutation and Optuna.

The walk decides the depths, then each merge, then the layers stage by stage; a Picker makes each
decision among what is legal at that point (for a layer: the stage's options that the vocabulary's
reuse rule allows after the previous layer). The walk's order is the order in which random numbers are
drawn, so a seed gives the same architecture for as long as that order stays.
"""
from __future__ import annotations

import random
from functools import lru_cache

from .arch import Arch, Layer
from .vocabulary import BLOCKS, CHOICE_FIELDS, is_attention_source, may_follow, reuses_attention

REUSE_SUFFIX = "_after_mhsa"  # Optuna block parameter of a layer that may reuse the previous one's attention


class Picker:
    def depths(self, space) -> tuple[int, ...]:
        raise NotImplementedError

    def merge(self, boundary: int, ops: tuple[str, ...]) -> str:
        raise NotImplementedError

    def layer(self, i: int, j: int, depth: int, rule, source_before: bool) -> Layer:
        """Layer j of stage i (of `depth` layers), after a layer that is (or is not) an attention source."""
        raise NotImplementedError


def walk(space, picker: Picker) -> Arch:
    depths = picker.depths(space)
    merges = tuple(picker.merge(b, ops) for b, ops in enumerate(space.merges))
    stages = []
    for i, (rule, depth) in enumerate(zip(space.stages, depths)):
        layers: list[Layer] = []
        for j in range(depth):
            source_before = bool(layers) and is_attention_source(layers[-1].block)
            layers.append(picker.layer(i, j, depth, rule, source_before))
        stages.append(tuple(layers))
    return Arch(space=space.name, stages=tuple(stages), merges=merges)


class Uniform(Picker):
    """Uniform over the legal set: depths in proportion to their number of legal architectures, each
    layer in proportion to the number of legal completions of its stage after it."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def depths(self, space):
        return space.depth_tuples()[weighted_index(list(space.depth_weights()), self.rng)]

    def merge(self, boundary, ops):
        return self.rng.choice(ops)

    def layer(self, i, j, depth, rule, source_before):
        options = rule.legal_options(source_before)
        count = sequence_counter(rule.options())
        return options[weighted_index([count(depth - j - 1, is_attention_source(o.block)) for o in options], self.rng)]


class ByChoice(Picker):
    """Each choice uniform among the values legal at that point: the depths (per stage, or a legal depth
    tuple), the merges, then each layer's block type and each of its fields' values."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def depths(self, space):
        if space.total_depths is None:
            return tuple(self.rng.choice(r.depths) for r in space.stages)
        return self.rng.choice(space.depth_tuples())

    def merge(self, boundary, ops):
        return self.rng.choice(ops)

    def layer(self, i, j, depth, rule, source_before):
        block = self.rng.choice(rule.legal_blocks(source_before))
        return Layer(block, **{f: self.rng.choice(rule.values_of(f)) for f in BLOCKS[block].fields})


class Mutation(Picker):
    """`arch` with each choice redrawn with probability `prob`; a kept layer that became illegal is redrawn."""

    def __init__(self, arch: Arch, rng: random.Random, prob: float):
        self.arch, self.rng, self.prob = arch, rng, prob

    def depths(self, space):
        return self.rng.choice(space.depth_tuples()) if self.rng.random() < self.prob else self.arch.depths

    def merge(self, boundary, ops):
        return self.rng.choice(ops) if self.rng.random() < self.prob else self.arch.merges[boundary]

    def layer(self, i, j, depth, rule, source_before):
        old = self.arch.stages[i]
        layer = old[j] if j < len(old) and self.rng.random() >= self.prob else None
        legal = rule.legal_options(source_before)
        return layer if layer is not None and layer in legal else self.rng.choice(legal)


class Suggestion(Picker):
    """Optuna define-by-run: a parameter exists only where the earlier choices use it and more than one
    value is legal. A block parameter whose legal set depends on the previous layer (whether reuse is
    possible) is named per set, since an Optuna parameter keeps one distribution."""

    def __init__(self, trial):
        self.trial = trial

    def _categorical(self, name: str, values, wanted=None):
        values = list(values)
        return self.trial.suggest_categorical(name, values) if len(values) > 1 else values[0]

    def depths(self, space):
        if space.total_depths is None:
            return tuple(self._categorical(f"depth{i}", r.depths, i) for i, r in enumerate(space.stages))
        tuples = space.depth_tuples()
        labels = ["-".join(map(str, t)) for t in tuples]
        return tuples[labels.index(self._categorical("depths", labels, "depths"))]

    def merge(self, boundary, ops):
        return self._categorical(f"merge{boundary}", ops, ("merge", boundary))

    def layer(self, i, j, depth, rule, source_before):
        suffix = REUSE_SUFFIX if source_before and any(reuses_attention(b) for b in rule.blocks) else ""
        block = self._categorical(f"s{i}_l{j}_block{suffix}", rule.legal_blocks(source_before), (i, j, "block"))
        return Layer(block, **{f: self._categorical(f"s{i}_l{j}_{CHOICE_FIELDS[f].short}", rule.values_of(f), (i, j, f))
                               for f in BLOCKS[block].fields})


class ParamsOf(Suggestion):
    """The Optuna parameters under which `suggest` proposes `arch` (for Optuna's enqueue_trial): the walk of
    Suggestion, each choice answered with the arch's own value and noted under the parameter's name."""

    def __init__(self, arch: Arch):
        super().__init__(trial=None)
        self.arch, self.params = arch, {}

    def _categorical(self, name: str, values, wanted=None):
        a = self.arch
        if wanted == "depths":
            value = "-".join(map(str, a.depths))
        elif isinstance(wanted, int):
            value = a.depths[wanted]
        elif wanted[0] == "merge":
            value = a.merges[wanted[1]]
        else:
            i, j, what = wanted
            layer = a.stages[i][j]
            value = layer.block if what == "block" else getattr(layer, what)
        values = list(values)
        if value not in values:
            raise ValueError(f"{name}: {value!r} is not among {values}")
        if len(values) > 1:
            self.params[name] = value
        return value


def weighted_index(weights: list[int], rng: random.Random) -> int:
    total = sum(weights)
    r = rng.randrange(total)
    for k, w in enumerate(weights):
        if r < w:
            return k
        r -= w
    raise AssertionError("unreachable")


@lru_cache(maxsize=None)
def sequence_counter(options: tuple[Layer, ...]):
    """count(n, source_before): the number of legal n-layer sequences over `options` that follow a layer
    that is (or is not) an attention source."""

    @lru_cache(maxsize=None)
    def count(n: int, source_before: bool) -> int:
        if n == 0:
            return 1
        return sum(count(n - 1, is_attention_source(o.block)) for o in options if may_follow(o.block, source_before))

    return count
