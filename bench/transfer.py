"""Whether a trained supernet's weights transfer to the architectures the search proposes.

    python bench/transfer.py RUN_OR_CHECKPOINT [--archs 50] [--seed 1] [--flops 4.5G] [--calib-batches 10] [--json OUT]
        [--variant NAME]

On the supernet of a run folder (its supernet.pt) or a supernet checkpoint, with the data, split and
calibration batches it was trained with, evaluates with inherited weights (BN recalibrated, as a trial is):
the largest and smallest paths by MACs, the space's references (the papers' models), `--archs` architectures
drawn choice by choice (SearchSpace.sample_by_choice: how the search proposes before its model has data;
with `--flops`, only those within the limit at the target scale, as the search evaluates), and every merge
operator swapped into all boundaries of the smallest and the largest path.

Figures: the proposals' median, quartiles and how many are within 0.05 of chance; each merge swap's loss as
the share of the path's accuracy above chance it costs; and the last line's transfer ratio,
(median proposal - chance) / (smallest path - chance) (nas.measure.transfer).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from nas.data import load_data, make_loader
from nas.measure.costs import arch_costs, extreme_arch
from nas.measure.evaluate import calibration_loader, evaluate
from nas.measure.transfer import swap_loss, transfer_ratio
from nas.training.checkpoint import supernet_from_checkpoint
from nas.units import parse_count
from search_spaces import get_reference, reference_names

NEAR_CHANCE = 0.05


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("supernet", help="a run folder holding supernet.pt, or a supernet checkpoint")
    p.add_argument("--archs", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--flops", default=None, help="only proposals within this MAC limit at the target scale (e.g. 4.5G)")
    p.add_argument("--calib-batches", type=int, default=10)
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    p.add_argument("--variant", default=None, help="the sharing variant the supernet was trained with (bench/train_variant.py)")
    args = p.parse_args()
    if args.variant:
        sys.path.insert(0, str(Path(__file__).parent))
        from train_variant import use_variant

        use_variant(args.variant)

    path = Path(args.supernet)
    path = path / "supernet.pt" if path.is_dir() else path
    net, ckpt = supernet_from_checkpoint(path)
    net.eval()
    space, scale, cfg = net.space, net.scale, ckpt.get("config", {})
    bundle = load_data(cfg.get("data", "digits"), img_size=scale.img_size, seed=cfg.get("seed", 0),
                       val_fraction=cfg.get("val_fraction", 0.1))
    val, calib = make_loader(bundle, "val", 256), calibration_loader(bundle)
    chance = 1.0 / scale.num_classes
    t0 = time.time()

    def score(arch) -> float:
        return evaluate(net, arch, val, calib, args.calib_batches)

    largest, smallest = extreme_arch(space, scale, True), extreme_arch(space, scale, False)
    res = {"supernet": str(path), "strategy": cfg.get("strategy"), "epochs": ckpt.get("epoch"), "data": cfg.get("data"),
           "chance": chance, "largest": score(largest), "smallest": score(smallest)}
    print(f"{path}: strategy {res['strategy']}, {res['epochs']} epochs, data {res['data']}, chance {chance:.3f}")
    print(f"largest path {res['largest']:.3f}, smallest path {res['smallest']:.3f}")

    res["references"] = {name: score(get_reference(space.name, name)) for name in reference_names(space.name)}
    for name, acc in res["references"].items():
        print(f"reference {name}: {acc:.3f}")

    swaps = {}
    for label, base in (("smallest", smallest), ("largest", largest)):
        for op in sorted({op for ops in space.merges for op in ops}):
            if not all(op in ops for ops in space.merges):
                continue
            acc = score(dataclasses.replace(base, merges=tuple(op for _ in space.merges)))
            swaps[f"{label}:{op}"] = {"acc": acc, "loss": swap_loss(res[label], acc, chance)}
            print(f"{label} path, every merge {op}: {acc:.3f} (loses {swaps[f'{label}:{op}']['loss']:.0%} of its accuracy above chance)")
    res["merge_swaps"] = swaps
    res["worst_swap_loss"] = max((s["loss"] for s in swaps.values()), default=0.0)

    limit = parse_count(args.flops, "--flops", "4.5G") if args.flops else None
    rng, accs = random.Random(args.seed), []
    while len(accs) < args.archs:
        arch = space.sample_by_choice(rng)
        if limit is not None and arch_costs(arch, space.target).macs > limit:
            continue
        accs.append(score(arch))
    q1, med, q3 = np.percentile(accs, [25, 50, 75])
    near = sum(abs(a - chance) <= NEAR_CHANCE for a in accs)
    res.update(proposals=accs, median=float(med), q1=float(q1), q3=float(q3), near_chance=near,
               ratio=transfer_ratio(float(med), res["smallest"], chance), seconds=time.time() - t0)
    print(f"{len(accs)} proposals: median {med:.3f} (quartiles {q1:.3f}-{q3:.3f}, best {max(accs):.3f}), "
          f"{near} within {NEAR_CHANCE} of chance; mean {statistics.fmean(accs):.3f}")
    print(f"worst merge swap loses {res['worst_swap_loss']:.0%} of a path's accuracy above chance ({time.time() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    print(f"transfer ratio {res['ratio']:.2f} (median proposal {med:.3f}, smallest path {res['smallest']:.3f}, chance {chance:.3f})")


if __name__ == "__main__":
    sys.exit(main())
