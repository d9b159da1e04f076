"""Which random-path distribution trains the supernet better for the architectures a search proposes.

    python bench/path_distribution.py [--space psvit_ext] [--data digits] [--epochs 8] [--archs 40] [--threads 1]

Trains the default supernet (sandwich, nas.train defaults) twice, once with random paths drawn choice
by choice (`--path-dist choice`, the distribution Optuna's proposals follow) and once uniformly over the
legal set (`--path-dist legal`, which favours deep stages), then evaluates with inherited weights
(BatchNorm recalibrated on 10 batches, validation split) the same `--archs` architectures drawn choice
by choice (seed 123) and half as many drawn legal-uniformly (seeds 1000...). Prints the mean and median
inherited accuracy of each group under each supernet; the last line is the comparison.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile

from nas.measure.evaluate import evaluate
from nas.training.supernet_trainer import TrainConfig, Trainer
from search_spaces import get_space


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--data", default="digits")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--archs", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    space = get_space(args.space)
    rng = random.Random(123)
    by_choice = [space.sample_by_choice(rng) for _ in range(args.archs)]
    legal = [space.sample(1000 + i) for i in range(args.archs // 2)]
    figures = {}
    for dist in ("choice", "legal"):
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(TrainConfig(space=args.space, data=args.data, epochs=args.epochs, path_dist=dist, out=out, device="cpu",
                                          threads=args.threads), log=lambda *_: None)
            trainer.run()
            for group, archs in (("choice", by_choice), ("legal", legal)):
                accs = [evaluate(trainer.net, a, trainer.val_loader, trainer.calib_loader, 10) for a in archs]
                figures[dist, group] = (statistics.mean(accs), statistics.median(accs))
                print(f"supernet trained with {dist} paths: {len(archs)} {group}-sampled archs, inherited acc mean "
                      f"{figures[dist, group][0]:.3f}, median {figures[dist, group][1]:.3f}", flush=True)
    c, l = figures["choice", "choice"], figures["legal", "choice"]
    print(f"choice-sampled archs (what the search proposes): mean inherited acc {c[0]:.3f} (choice-trained) vs {l[0]:.3f} "
          f"(legal-trained), median {c[1]:.3f} vs {l[1]:.3f}")


if __name__ == "__main__":
    main()
