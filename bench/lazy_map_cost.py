"""What forming the teacher's unread attention maps cost a default training step (supernet.blocks.attention.DetachedMap).

    python bench/lazy_map_cost.py [--rounds 16] [--steps 4]

A default Trainer (digits, psvit_ext proxy, sandwich with one other block type per layer aligned) runs the same
`--steps` batches per round, alternately with the maps formed only when the alignment reads them (the code) and
formed eagerly at every attention source (the code before, emulated by forming the map in DetachedMap's
constructor); the order alternates per round. Both give the same losses. Last line: the median step of each, the
paired difference's mean with a 90% bootstrap interval over rounds, and a one-sided Wilcoxon signed-rank p.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from scipy.stats import wilcoxon

from supernet.blocks import attention
from nas.training.supernet_trainer import TrainConfig, Trainer


def eager_init(self, module, q, k, key_bias):
    with torch.no_grad():
        attn = module._map(q, k, key_bias)
    self._args = None
    self.form = lambda: attn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(TrainConfig(out=out), log=lambda *a: None)
        batches = [b for b, _ in zip(trainer.train_loader, range(args.steps))]
        trainer.model.train()
        trainer._start_epoch(0)
        for s, (x, y) in enumerate(batches[:2]):  # warm-up
            trainer._step(x, y, 0, s)
        lazy_init, times = attention.DetachedMap.__init__, {"lazy": [], "eager": []}
        for r in range(args.rounds):
            for mode in ("eager", "lazy") if r % 2 else ("lazy", "eager"):
                attention.DetachedMap.__init__ = lazy_init if mode == "lazy" else eager_init
                t0 = time.perf_counter()
                losses = [trainer._step(x, y, 0, 10 + s) for s, (x, y) in enumerate(batches)]
                times[mode].append((time.perf_counter() - t0) / len(batches))
            print(f"round {r + 1}/{args.rounds}: eager {times['eager'][-1]:.3f} s, lazy {times['lazy'][-1]:.3f} s a step "
                  f"(last loss {losses[-1]:.3f})", flush=True)
        attention.DetachedMap.__init__ = lazy_init
    diff = np.array(times["eager"]) - np.array(times["lazy"])
    rng = np.random.default_rng(0)
    lo, hi = np.percentile([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(10000)], [5, 95])
    print(f"a step: lazy maps {statistics.median(times['lazy']):.3f} s, eager {statistics.median(times['eager']):.3f} s "
          f"(medians of {args.rounds} rounds); eager - lazy {diff.mean():+.3f} s [90% paired bootstrap {lo:+.3f}, "
          f"{hi:+.3f}], lazy faster in {int((diff > 0).sum())} of {args.rounds} (one-sided Wilcoxon signed-rank "
          f"p = {wilcoxon(diff, alternative='greater').pvalue:.2g})")

if __name__ == "__main__":
    main()
