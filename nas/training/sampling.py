"""Which paths a supernet training step runs.

- uniform (SPOS): one random architecture;
- sandwich: the largest and the smallest architecture by MACs plus `num_random` random ones; the
  largest path's predictions teach the others (in-place distillation);
- sandwich-mixed: like sandwich, but the largest and smallest paths take their merge ops (the
  downsampling between stages) at random each step. The fixed extremes always merge the same way
  (largest: spm, smallest: pool), so those ops and the layers after them are trained on them far more
  often than on the others, and inherited accuracy then favours architectures by their merges (an
  audit on CIFAR-10 put all-spm paths 6.3 points above the rest inherited, 1.6 standalone:
  bench/merge_bias.py);
- sandwich-mixed-student: like sandwich-mixed, but only the smallest path draws its merges: the teacher stays the same
  path every step (a consistent target), and every merge operator is trained on the labels;
- fair: a sandwich in which no option of any choice is favoured. The teacher has every stage at its
  largest depth and the small student at its smallest, and for both each choice (a merge, a layer's
  block type, each of its fields) takes the value used least so far, over every path of every step
  (ties at random); the third path does the same at its least-used depths (under a total-depth rule, the legal
  depth tuple whose stage depths were used least in all). Over an epoch every merge
  operator, every block type of a layer and every width is the teacher's, and used at all, about
  equally often (bench/exposure.py prints it), where the fixed sandwich's teacher trains spm merges,
  super-token and MAF blocks and the widest FFNs on every step and conv merges and attention sharing
  almost never. Its use counts are state, saved with the supernet checkpoint;
- progressive: a sandwich whose random paths open the space stage by stage, as Once-for-All's progressive shrinking
  trains (the largest network first, then the elastic choices): in the first epoch the random path is the largest,
  then the first stages (and the merges into them) are drawn at random and the later ones kept at the largest's
  choices, more stages each epoch, all of them in the last (`open_stages`);
- stratified: like uniform, but first a MAC bin is chosen uniformly, so small and large architectures
  are trained equally often. The bins are evenly spaced between the 1st and 99th percentile of MACs
  over a seeded pool of random architectures (the extremes of the space are too rare to fill a bin);
  an architecture is drawn until one falls in the chosen bin, or else taken from the pool's members
  of that bin.

Random architectures are drawn choice by choice (`dist="choice"`, SearchSpace.sample_by_choice: the
distribution the search proposes from) or uniformly over the legal set (`dist="legal"`, which
favours deep stages exponentially).

The draw depends only on (seed, epoch, step) and, for `fair`, on the use counts of the steps before,
which every worker keeps alike: every worker of a distributed run gets the same path.
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter

import numpy as np

from search_spaces import Arch, ArchError, Layer, Scale, SearchSpace
from search_spaces.vocabulary import BLOCKS, is_attention_source, reuses_attention
from search_spaces.walk import Picker, walk

from nas.measure.costs import arch_costs, extreme_arch

STRATEGIES = ("sandwich", "sandwich-mixed", "sandwich-mixed-student", "fair", "uniform", "stratified", "progressive")
TEACHER_STRATEGIES = ("sandwich", "sandwich-mixed", "sandwich-mixed-student", "fair", "progressive")
DISTRIBUTIONS = ("choice", "legal")


def choice_uses(arch: Arch):
    """The (choice, value) pairs an architecture uses: ("depth", stage, depth), ("merge", boundary, op), ("block",
    stage, layer, type), and (field, stage, layer, type, value) for each field of each layer (the weights a field
    slices are the type's)."""
    for i, d in enumerate(arch.depths):
        yield ("depth", i, d)
    for b, op in enumerate(arch.merges):
        yield ("merge", b, op)
    for i, j, layer in arch.layers():
        yield ("block", i, j, layer.block)
        for name, value in layer.choices:
            yield (name, i, j, layer.block, value)


class LeastUsed(Picker):
    """Every choice takes its least-used legal value so far (ties at random), at the largest or smallest depth."""

    def __init__(self, uses: Counter, rng: random.Random, depth: str):
        self.uses, self.rng, self.depth = uses, rng, depth  # depth: "deepest", "shallowest", or "least-used"

    def _least(self, key: tuple, values):
        counts = [self.uses[(*key, v)] for v in values]
        return self.rng.choice([v for v, c in zip(values, counts) if c == min(counts)])

    def depths(self, space):
        if self.depth == "least-used":
            if space.total_depths is None:
                return tuple(self._least(("depth", i), r.depths) for i, r in enumerate(space.stages))
            # a legal depth tuple whose per-stage depths were used least in all (choice_uses counts ("depth", i, d))
            tuples = space.depth_tuples()
            counts = [sum(self.uses[("depth", i, d)] for i, d in enumerate(t)) for t in tuples]
            return self.rng.choice([t for t, c in zip(tuples, counts) if c == min(counts)])
        pick = max if self.depth == "deepest" else min
        if space.total_depths is None:
            return tuple(pick(r.depths) for r in space.stages)
        best = pick(sum(t) for t in space.depth_tuples())
        return self.rng.choice([t for t in space.depth_tuples() if sum(t) == best])

    def merge(self, boundary, ops):
        return self._least(("merge", boundary), ops)

    def layer(self, i, j, depth, rule, source_before):
        # A type that reuses attention is legal only right after a source, which makes it the rarest of a layer's types
        # unless the layer before opens the way for it when it lags, and it is taken whenever it may and lags.
        legal = rule.legal_blocks(source_before)
        reusing = [b for b in legal if reuses_attention(b)]
        if reusing and self._reuse_starved(i, j, rule):
            legal = tuple(reusing)
        elif j + 1 < depth and self._reuse_starved(i, j + 1, rule):
            legal = tuple(b for b in legal if is_attention_source(b)) or legal
        block = self._least(("block", i, j), legal)
        return Layer(block, **{f: self._least((f, i, j, block), rule.values_of(f)) for f in BLOCKS[block].fields})

    def _reuse_starved(self, i: int, j: int, rule) -> bool:
        """Whether a type that reuses attention is the least used of layer j's types (it is legal only after a source,
        so the random paths use it far less often than the others)."""
        counts = {b: self.uses[("block", i, j, b)] for b in rule.blocks_at(j)}
        return any(reuses_attention(b) and c <= min(counts.values()) for b, c in counts.items())


class PathSampler:
    def __init__(self, space: SearchSpace, scale: Scale, strategy: str = "sandwich", seed: int = 0,
                 num_random: int = 1, bins: int = 8, max_tries: int = 200, dist: str = "choice", pool: int = 1000, epochs: int = 1):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown sampling strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"unknown path distribution {dist!r}; allowed: {', '.join(DISTRIBUTIONS)}")
        self.random_arch = space.sample_by_choice if dist == "choice" else space.sample
        self.space, self.scale, self.strategy, self.seed = space, scale, strategy, seed
        self.num_random, self.bins, self.max_tries, self.epochs = num_random, bins, max_tries, epochs
        self.largest = extreme_arch(space, scale, largest=True)
        self.smallest = extreme_arch(space, scale, largest=False)
        self.uses: dict[int, Counter] = {}  # fair: path k of a step -> (choice, value) -> times that path used it before
        if strategy == "stratified":
            rng = random.Random(f"{seed}:bins")
            archs = [self.random_arch(rng) for _ in range(pool)]
            macs = np.array([arch_costs(a, scale).macs for a in archs])
            self.edges = np.linspace(*np.percentile(macs, [1, 99]), bins + 1)
            self.bin_pool = [[a for a, m in zip(archs, macs) if lo <= m <= hi] for lo, hi in zip(self.edges, self.edges[1:])]

    def _rng(self, epoch: int, step: int) -> random.Random:
        return random.Random(f"{self.seed}:{epoch}:{step}")

    def _stratified(self, rng: random.Random) -> Arch:
        b = rng.randrange(self.bins)
        lo, hi = self.edges[b], self.edges[b + 1]
        for _ in range(self.max_tries):
            arch = self.random_arch(rng)
            if lo <= arch_costs(arch, self.scale).macs <= hi:
                return arch
        return rng.choice(self.bin_pool[b])

    def _fair(self, rng: random.Random) -> list[Arch]:
        paths = []
        for k, depth in enumerate(("deepest", "shallowest", *["least-used"] * self.num_random)):
            uses = self.uses.setdefault(k, Counter())  # each path balanced on its own: the teacher's options too
            paths.append(walk(self.space, LeastUsed(uses, rng, depth)))
            uses.update(choice_uses(paths[-1]))
        return paths

    def open_stages(self, epoch: int) -> int:
        """progressive: how many stages (from the first) the random paths of `epoch` draw: none in the first epoch, all
        in the last, evenly between."""
        stages = len(self.space.stages)
        return stages if self.epochs <= 1 else -(-stages * epoch // (self.epochs - 1))

    def _progressive(self, rng: random.Random, epoch: int) -> Arch:
        k = self.open_stages(epoch)
        for _ in range(self.max_tries):
            drawn = self.random_arch(rng)
            arch = dataclasses.replace(self.largest, stages=drawn.stages[:k] + self.largest.stages[k:],
                                       merges=drawn.merges[:max(k - 1, 0)] + self.largest.merges[max(k - 1, 0):])
            try:
                return self.space.validate(arch)
            except ArchError:  # a total-depth rule the mix breaks: draw again
                continue
        return self.largest

    def state_dict(self) -> dict:
        """What a resumed run needs to draw the same paths: fair's use counts (plain lists, for the checkpoint)."""
        return {"uses": [[k, [[list(key), n] for key, n in sorted(c.items(), key=str)]] for k, c in sorted(self.uses.items())]}

    def load_state_dict(self, state: dict) -> None:
        self.uses = {int(k): Counter({tuple(key): n for key, n in counts}) for k, counts in state.get("uses", [])}

    def paths(self, epoch: int, step: int) -> list[Arch]:
        """The architectures of one step; for the teacher strategies the first is the teacher (sandwich: the largest)."""
        rng = self._rng(epoch, step)
        if self.strategy == "uniform":
            return [self.random_arch(rng)]
        if self.strategy == "stratified":
            return [self._stratified(rng)]
        if self.strategy == "fair":
            return self._fair(rng)
        if self.strategy == "progressive":
            return [self.largest, self.smallest] + [self._progressive(rng, epoch) for _ in range(self.num_random)]
        extremes = [self.largest, self.smallest]
        mixed = {"sandwich-mixed": extremes, "sandwich-mixed-student": extremes[1:]}.get(self.strategy, [])
        extremes = [dataclasses.replace(a, merges=tuple(rng.choice(ops) for ops in self.space.merges)) if a in mixed else a
                    for a in extremes]
        return extremes + [self.random_arch(rng) for _ in range(self.num_random)]
