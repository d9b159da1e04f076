"""Which paths a supernet training step runs.

- uniform (SPOS): one architecture drawn uniformly from the legal set;
- sandwich: the largest and the smallest architecture by MACs plus `num_random` uniform ones; the
  largest path's predictions teach the others (in-place distillation);
- stratified: like uniform, but first a MAC bin is chosen uniformly (bins evenly spaced between the
  smallest and largest architecture), so small and large architectures are trained equally often.

The draw depends only on (seed, epoch, step): every worker of a distributed run gets the same path.
"""
from __future__ import annotations

import random

from search_spaces import Arch, Scale, SearchSpace

from .costs import arch_costs, extreme_arch

STRATEGIES = ("sandwich", "uniform", "stratified")


class PathSampler:
    def __init__(self, space: SearchSpace, scale: Scale, strategy: str = "sandwich", seed: int = 0,
                 num_random: int = 1, bins: int = 8, max_tries: int = 200):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown sampling strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        self.space, self.scale, self.strategy, self.seed = space, scale, strategy, seed
        self.num_random, self.bins, self.max_tries = num_random, bins, max_tries
        self.largest = extreme_arch(space, scale, largest=True)
        self.smallest = extreme_arch(space, scale, largest=False)
        self.lo = arch_costs(self.smallest, scale).macs
        self.hi = arch_costs(self.largest, scale).macs

    def _rng(self, epoch: int, step: int) -> random.Random:
        return random.Random(f"{self.seed}:{epoch}:{step}")

    def _stratified(self, rng: random.Random) -> Arch:
        b = rng.randrange(self.bins)
        lo = self.lo + (self.hi - self.lo) * b / self.bins
        hi = self.lo + (self.hi - self.lo) * (b + 1) / self.bins
        arch = self.space.sample(rng)
        for _ in range(self.max_tries):
            if lo <= arch_costs(arch, self.scale).macs <= hi:
                return arch
            arch = self.space.sample(rng)
        return arch

    def paths(self, epoch: int, step: int) -> list[Arch]:
        """The architectures of one step; for sandwich the first is the largest (the teacher)."""
        rng = self._rng(epoch, step)
        if self.strategy == "uniform":
            return [self.space.sample(rng)]
        if self.strategy == "stratified":
            return [self._stratified(rng)]
        return [self.largest, self.smallest] + [self.space.sample(rng) for _ in range(self.num_random)]
