"""Few-shot splitting of a run's supernet, ranked against an audit's ground truth.

    python bench/few_shot.py results/<run> <audit.csv> [--boundary 0] [--epochs 4] [--control-epochs N] [--seed S] [--out DIR]

The run's supernet is copied once per merge operator at one stage boundary (--boundary, default 0: the
downsampling after stage 0), and each copy trains on for --epochs on only the paths that merge there with its
operator (sandwich inside its part of the space: its own largest and smallest path), as few-shot NAS splits a
one-shot supernet by one choice and trains the parts on (Zhao et al., ICML 2021). An architecture's inherited
accuracy is then its own part's. The control trains the unsplit supernet on over the whole space for as many
epochs as the parts together (--control-epochs, default parts x --epochs), with the same schedule.

Both, the run's supernet as it was (the audit's inherited accuracy), and MAC counting are ranked against the
audit's standalone accuracies (Kendall tau with a 90% bootstrap interval over the architectures), and the split's
tau less the control's with a paired interval. Trainings are kept in --out and resumed.
The last line: the split's tau and the control's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces import Arch  # noqa: E402

from nas import runs  # noqa: E402
from nas.data import load_data, make_loader  # noqa: E402
from nas.measure.evaluate import calibration_loader, evaluate  # noqa: E402
from nas.reporting.ranking import correlation  # noqa: E402
from nas.training.checkpoint import supernet_from_checkpoint  # noqa: E402
from nas.training.sampling import PathSampler  # noqa: E402
from nas.training.supernet_trainer import TrainConfig, Trainer  # noqa: E402


def train_on(start: dict, cfg: TrainConfig, bundle, space) -> torch.nn.Module:
    """The supernet `start` (a state dict) trained on for cfg.epochs on the paths of `space` (resumed from cfg.out)."""
    resume = (Path(cfg.out) / "supernet.pt").is_file()
    trainer = Trainer(dataclasses.replace(cfg, resume=resume), bundle=bundle)
    if not resume:
        trainer.model.load_state_dict(start)
    trainer.sampler = PathSampler(space, trainer.scale, cfg.strategy, seed=cfg.seed, num_random=cfg.num_random, dist=cfg.path_dist)
    trainer.run()
    return trainer.model.eval()


def paired_tau_difference(table: pd.DataFrame, a: str, b: str, resamples: int = 2000) -> dict:
    """tau(a) - tau(b) against the standalone accuracy, with a 90% interval from resampling the architectures once for both."""
    tau = lambda col, i: stats.kendalltau(table[col].to_numpy()[i], table["standalone_acc"].to_numpy()[i]).statistic  # noqa: E731
    whole = np.arange(len(table))
    boot = np.array([tau(a, i) - tau(b, i) for i in np.random.default_rng(0).integers(0, len(table), (resamples, len(table)))])
    lo, hi = np.percentile(boot[np.isfinite(boot)], [5, 95])
    return {"value": float(tau(a, whole) - tau(b, whole)), "ci90": [float(lo), float(hi)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("run")
    p.add_argument("audit_csv", help="an audit.csv of the run (python -m nas.audit): the architectures and their standalone accuracy")
    p.add_argument("--boundary", type=int, default=0, help="the stage boundary whose merge operator splits the supernet")
    p.add_argument("--epochs", type=int, default=4, help="epochs each part trains on")
    p.add_argument("--control-epochs", type=int, default=None, help="epochs the unsplit control trains on (default: parts x --epochs)")
    p.add_argument("--lr", type=float, default=2.5e-4, help="peak learning rate of the training on (no warm-up, cosine)")
    p.add_argument("--seed", type=int, default=None, help="seeds the paths and batch order of the training on (default: the supernet's)")
    p.add_argument("--out", default=None, help="default <run>/few-shot-b<boundary>-e<epochs>[-s<seed>]")
    args = p.parse_args()

    run = Path(args.run)
    config = runs.read_config(run, flag="few-shot")
    net, ckpt = supernet_from_checkpoint(runs.run_supernet(run, config))
    space, scale = net.space, net.scale
    start = net.state_dict()
    split_seed, val_fraction = runs.data_split(config)
    bundle = load_data(config["settings"]["data"], img_size=scale.img_size, seed=split_seed, val_fraction=val_fraction)
    ops = space.merges[args.boundary]
    seed = ckpt["config"]["seed"] if args.seed is None else args.seed
    out = Path(args.out or run / (f"few-shot-b{args.boundary}-e{args.epochs}" + ("" if args.seed is None else f"-s{seed}")))
    base = TrainConfig(**{**ckpt["config"], "epochs": args.epochs, "lr": args.lr, "warmup_epochs": 0, "out": "", "seed": seed})
    t0 = time.time()

    parts = {}
    for op in ops:
        merges = tuple((op,) if b == args.boundary else m for b, m in enumerate(space.merges))
        print(f"part {op!r}: {args.epochs} epochs on the paths that merge with {op} at boundary {args.boundary}", flush=True)
        parts[op] = train_on(start, dataclasses.replace(base, out=str(out / op)), bundle, dataclasses.replace(space, merges=merges))
    control_epochs = args.control_epochs or len(ops) * args.epochs
    print(f"control: {control_epochs} epochs on the whole space", flush=True)
    control = train_on(start, dataclasses.replace(base, epochs=control_epochs, out=str(out / "control")), bundle, space)

    audit = pd.read_csv(args.audit_csv)
    val_loader, calib = make_loader(bundle, "val", 256), calibration_loader(bundle)
    batches = ckpt["config"]["calib_batches"]
    rows = []
    for k, (_, row) in enumerate(audit.iterrows()):
        arch = Arch.from_json(row["arch"])
        op = arch.merges[args.boundary]
        rows.append({"arch_id": row["arch_id"], "merge": op, "macs": row["macs"], "standalone_acc": row["standalone_acc"],
                     "unsplit_acc": row["inherited_acc"],
                     "split_acc": evaluate(parts[op], arch, val_loader, calib, batches),
                     "control_acc": evaluate(control, arch, val_loader, calib, batches)})
        print(f"inherited {k + 1}/{len(audit)}: {row['arch_id']} ({op}) unsplit {rows[-1]['unsplit_acc']:.3f}, "
              f"split {rows[-1]['split_acc']:.3f}, control {rows[-1]['control_acc']:.3f}", flush=True)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "few_shot.csv", index=False)
    taus = {}
    for name in ("unsplit_acc", "split_acc", "control_acc", "macs"):
        taus[name] = correlation("kendall", table[name], table["standalone_acc"])
        r = taus[name]
        print(f"{name:13s} kendall tau {r['value']:.3f} [{r['ci90'][0]:.3f}, {r['ci90'][1]:.3f}]")
    diff = paired_tau_difference(table, "split_acc", "control_acc")
    print(f"split minus control, paired bootstrap: {diff['value']:+.3f} [{diff['ci90'][0]:+.3f}, {diff['ci90'][1]:+.3f}]")
    taus["split_minus_control"] = diff
    (out / "few_shot.json").write_text(json.dumps({"settings": vars(args), "tau": taus, "seconds": time.time() - t0}, indent=2) + "\n")
    print(f"{len(table)} architectures, boundary {args.boundary} split into {len(ops)} parts of {args.epochs} epochs: "
          f"split tau {taus['split_acc']['value']:.3f}, control ({control_epochs} epochs unsplit) tau {taus['control_acc']['value']:.3f} "
          f"({(time.time() - t0) / 60:.0f} min)")


if __name__ == "__main__":
    main()
