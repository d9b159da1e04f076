"""The scoring suspects of issue 24, measured on an audit: how the ranking figures move with how each side is scored.

    python bench/suspects.py results/<run>/audit [--standalone-dir DIR] [--rms-archs 20]

From the audit's audit.csv and its standalone trainings' metrics.json:

- the ground truth scored with BatchNorm recalibrated on the fixed calibration batches (as the inherited side
  is; the audit's default) against the momentum statistics the trainings ended with: the supernet's Kendall
  tau against each;
- the MAC baseline with MACs counted at the target scale (224x224) against the scale the ground truth trains at.

From the run's supernet: the RMS of the residual stream each merge operator hands the next stage, over the
paths of `--rms-archs` random architectures on calibration batches (a merge whose output is not normalised
hands the blocks every merge shares a stream of another scale).

The last line: the supernet's tau with the ground truth scored both ways, and the MAC baseline at both scales.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nas import runs
from nas.reporting.ranking import correlation


def standalone_scores(audit: pd.DataFrame, folder: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(folder.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        arch_id = path.parent.name.split("-seed")[0]
        rows.append({"arch_id": arch_id, "seed": m["seed"], "momentum": m["val_acc"],
                     "recalibrated": m.get("val_acc_recalibrated") if m.get("val_acc_recalibrated") is not None else m["val_acc"]})
    df = pd.DataFrame(rows)
    return df[df["arch_id"].isin(audit["arch_id"])].groupby("arch_id")[["momentum", "recalibrated"]].mean()


def merge_rms(run: Path, archs: int, seed: int = 0) -> dict[str, list[float]]:
    from nas.data import load_data
    from nas.measure.evaluate import calibration_loader
    from nas.training.checkpoint import supernet_from_checkpoint

    config = runs.read_config(run, flag="run")
    net, _ = supernet_from_checkpoint(runs.run_supernet(run, config))
    split_seed, val_fraction = runs.data_split(config)
    bundle = load_data(config["settings"]["data"], img_size=net.scale.img_size, seed=split_seed, val_fraction=val_fraction)
    x = torch.cat([b[0] for b in itertools.islice(calibration_loader(bundle), 2)])
    rms: dict[str, list[float]] = {}
    hooks = []
    for stage in net.stages:
        if stage.downsample is None:
            continue
        for op, module in stage.downsample.items():
            hooks.append(module.register_forward_hook(lambda m, a, out, op=op: rms.setdefault(op, []).append(float(out.pow(2).mean().sqrt()))))
    rng = random.Random(seed)
    net.eval()
    with torch.no_grad():
        for _ in range(archs):
            net(x, net.space.sample_by_choice(rng))
    for h in hooks:
        h.remove()
    return rms


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/suspects.py", description=__doc__.split("\n\n")[0])
    p.add_argument("audit", help="an audit folder (audit.csv inside)")
    p.add_argument("--standalone-dir", default=None, help="its trainings (default <audit>/standalone)")
    p.add_argument("--rms-archs", type=int, default=20)
    args = p.parse_args(argv)
    folder = Path(args.audit)
    audit = pd.read_csv(folder / "audit.csv")
    scores = standalone_scores(audit, Path(args.standalone_dir) if args.standalone_dir else folder / "standalone")
    rows = audit.set_index("arch_id").join(scores, how="inner")
    print(f"{folder}: {len(rows)} architectures")
    taus = {}
    for side in ("recalibrated", "momentum"):
        taus[side] = correlation("kendall", rows["inherited_acc"], rows[side])
        t = taus[side]
        print(f"  supernet tau, ground truth scored with {side} BatchNorm statistics: {t['value']:.3f} [{t['ci90'][0]:.3f}, {t['ci90'][1]:.3f}]")
    macs = {}
    for column, scale in (("proxy_macs", "the ground truth's scale"), ("macs", "the target scale")):
        if column in rows:
            macs[column] = correlation("kendall", rows[column], rows["recalibrated"])
            print(f"  MAC baseline, MACs at {scale}: tau {macs[column]['value']:.3f}")
    run = folder.parent if (folder.parent / runs.CONFIG).is_file() else None
    if run is not None and args.rms_archs:
        for op, values in sorted(merge_rms(run, args.rms_archs).items()):
            print(f"  residual stream RMS after a {op} merge: {np.mean(values):.2f} (range {min(values):.2f}-{max(values):.2f}, "
                  f"{len(values)} merges)")
    print(f"supernet tau against the ground truth recalibrated {taus['recalibrated']['value']:.3f}, with momentum statistics "
          f"{taus['momentum']['value']:.3f}; MAC baseline at the proxy {macs.get('proxy_macs', {}).get('value', float('nan')):.3f}, "
          f"at the target {macs.get('macs', {}).get('value', float('nan')):.3f}")


if __name__ == "__main__":
    main()
