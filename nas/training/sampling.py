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
- stratified: like uniform, but first a MAC bin is chosen uniformly, so small and large architectures
  are trained equally often. The bins are evenly spaced between the 1st and 99th percentile of MACs
  over a seeded pool of random architectures (the extremes of the space are too rare to fill a bin);
  an architecture is drawn until one falls in the chosen bin, or else taken from the pool's members
  of that bin.

Random architectures are drawn choice by choice (`dist="choice"`, SearchSpace.sample_by_choice: the
distribution the search proposes from) or uniformly over the legal set (`dist="legal"`, which
favours deep stages exponentially).

The draw depends only on (seed, epoch, step): every worker of a distributed run gets the same path.
"""
from __future__ import annotations

import dataclasses
import random

import numpy as np

from search_spaces import Arch, Scale, SearchSpace

from nas.measure.costs import arch_costs, extreme_arch

STRATEGIES = ("sandwich", "sandwich-mixed", "uniform", "stratified")
TEACHER_STRATEGIES = ("sandwich", "sandwich-mixed")
DISTRIBUTIONS = ("choice", "legal")


class PathSampler:
    def __init__(self, space: SearchSpace, scale: Scale, strategy: str = "sandwich", seed: int = 0,
                 num_random: int = 1, bins: int = 8, max_tries: int = 200, dist: str = "choice", pool: int = 1000):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown sampling strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"unknown path distribution {dist!r}; allowed: {', '.join(DISTRIBUTIONS)}")
        self.random_arch = space.sample_by_choice if dist == "choice" else space.sample
        self.space, self.scale, self.strategy, self.seed = space, scale, strategy, seed
        self.num_random, self.bins, self.max_tries = num_random, bins, max_tries
        self.largest = extreme_arch(space, scale, largest=True)
        self.smallest = extreme_arch(space, scale, largest=False)
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

    def paths(self, epoch: int, step: int) -> list[Arch]:
        """The architectures of one step; for the sandwich strategies the first is the largest (the teacher)."""
        rng = self._rng(epoch, step)
        if self.strategy == "uniform":
            return [self.random_arch(rng)]
        if self.strategy == "stratified":
            return [self._stratified(rng)]
        extremes = [self.largest, self.smallest]
        if self.strategy == "sandwich-mixed":
            extremes = [dataclasses.replace(a, merges=tuple(rng.choice(ops) for ops in self.space.merges)) for a in extremes]
        return extremes + [self.random_arch(rng) for _ in range(self.num_random)]
