"""Accuracy of the latency predictor on held-out architectures, measured on this device.

    python bench/latency_predictor.py [--space psvit_ext] [--archs 30] [--device cpu] [--batch-size 1]
        [--threads N] [--seed 1000] [--rebuild]

Loads this device's cached predictor (results/latency/<device-key>.json), building it first if it is
missing or --rebuild is given. Then `--archs` random architectures of the space, drawn with --seed
(none of them among the predictor's calibration architectures), are built at the target scale and
measured (median of at least 20 runs and 1 s after warm-up). Prints one line per architecture, then
Spearman's rho and Kendall's tau between predicted and measured latency and the mean absolute
percentage error (MAPE), the last line summing up. Writes results/latency/bench-<device-key>-<space>.csv.
Run it on an otherwise idle machine: other processes on the same cores distort every measurement.
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np
import pandas as pd
import torch
from scipy import stats

from nas.cli import Parser, UserError, run_cli
from nas.latency import CACHE_DIR, cache_path, load_predictor, measure_latency, resolve_device
from search_spaces import get_space
from supernet import ArchNet


def held_out(space, n: int, seed: int, exclude: set[str]) -> list:
    rng, archs, keys = random.Random(seed), [], set(exclude)
    while len(archs) < n:
        arch = space.sample(rng)
        if arch.key() not in keys:
            keys.add(arch.key())
            archs.append(arch)
    return archs


@run_cli
def main(argv=None) -> int:
    p = Parser(prog="python bench/latency_predictor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--archs", type=int, default=30)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=1000, help="seed of the held-out architectures")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached predictor first")
    args = p.parse_args(argv)
    if args.archs < 3:
        raise UserError("--archs must be at least 3")
    space, device = get_space(args.space), resolve_device(args.device)
    threads = args.threads or torch.get_num_threads()
    t0 = time.time()
    if args.rebuild:
        cache_path(device, threads, args.batch_size).unlink(missing_ok=True)
    predictor = load_predictor(space, device=device, batch_size=args.batch_size, threads=threads)
    calibration_seed = predictor.calibration.get("seed", 0)
    rng = random.Random(calibration_seed)
    calibration = {space.sample(rng).key() for _ in range(predictor.calibration.get("archs", 0))}
    rows = []
    for i, arch in enumerate(held_out(space, args.archs, args.seed, calibration)):
        model = ArchNet(arch, space.target)
        lat = measure_latency(model, space.target.img_size, args.batch_size, device, threads, warmup=5, min_repeats=20, min_time_s=1.0)
        predicted = predictor.predict(arch)
        rows.append({"arch": arch.to_json(), "predicted_ms": predicted, "measured_ms": lat.median_ms, "p25_ms": lat.p25_ms,
                     "p75_ms": lat.p75_ms, "error": (predicted - lat.median_ms) / lat.median_ms})
        print(f"arch {i + 1}/{args.archs}: depths {arch.depths}, predicted {predicted:.1f} ms, measured {lat}, "
              f"error {rows[-1]['error']:+.1%}", flush=True)
    df = pd.DataFrame(rows)
    out = CACHE_DIR / f"bench-{predictor.key}-{space.name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    rho = stats.spearmanr(df.predicted_ms, df.measured_ms).statistic
    tau = stats.kendalltau(df.predicted_ms, df.measured_ms).statistic
    mape = float(np.mean(np.abs(df.error)))
    print(f"device {predictor.key}; calibration on {predictor.calibration.get('archs')} archs "
          f"(slope {predictor.slope:.3f}, intercept {predictor.intercept:.2f} ms); measured range "
          f"{df.measured_ms.min():.1f}-{df.measured_ms.max():.1f} ms; max |error| {df.error.abs().max():.1%}; "
          f"{(time.time() - t0) / 60:.1f} min; rows in {out}")
    print(f"n={len(df)} held-out {space.name} archs at {space.target.img_size}x{space.target.img_size}, batch {args.batch_size}: "
          f"spearman={rho:.3f} kendall_tau={tau:.3f} MAPE={mape:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
