"""Accuracy of the latency predictor on held-out architectures, measured on this device.

    python bench/latency_predictor.py [--space psvit_ext] [--archs 30] [--device cpu] [--batch-size 1]
        [--threads N] [--seed 1000] [--rounds 5] [--cached]

`--archs` random architectures of the space, drawn choice by choice with --seed as the search proposes
them (none of them a calibration architecture), are built at the target scale and measured the way the
predictor measures (nas.latency: round-robin rounds of at least 5 runs and 0.1 s after warm-up; the
figure is the median over rounds of each round's median).

Default: the predictor is built exactly as nas.latency.build_predictor builds it (every part, and the
12 calibration architectures, seed 0), with the held-out architectures measured in the same
interleaved rounds; the calibration is fitted on the calibration architectures only. A change of the
machine's speed during the run then affects table and measurements alike, so the figures are the
predictor's own error. `--cached`: the cached predictor of this device (results/latency/, built if
missing) against measurements taken now; the figures then also hold any change of the machine's speed
since the predictor was built.

Prints one line per architecture, then Spearman's rho and Kendall's tau between predicted and measured
latency and the mean absolute percentage error (MAPE), also for the uncalibrated table sum; the last
line sums up. Writes results/latency/bench-<device-key>-<space>.csv. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np
import pandas as pd
import torch
from scipy import stats

from nas.cli import Parser, run_cli

from nas.errors import UserError
from nas.measure.latency import (CACHE_DIR, CALIBRATION_ARCHS, CALIBRATION_SEED, LatencyPredictor, calibrate, calibration_archs, device_key,
                         device_name, load_predictor, measure_models, measure_space, resolve_device)
from search_spaces import get_space
from supernet import ArchNet


def held_out(space, n: int, seed: int, exclude: set[str]) -> list:
    rng, archs, keys = random.Random(seed), [], set(exclude)
    while len(archs) < n:
        arch = space.sample_by_choice(rng)
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
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    p.add_argument("--cached", action="store_true", help="check the cached predictor against measurements taken now")
    args = p.parse_args(argv)
    if args.archs < 3:
        raise UserError("--archs must be at least 3")
    space, device = get_space(args.space), resolve_device(args.device)
    threads = args.threads or torch.get_num_threads()
    t0 = time.time()
    calib = calibration_archs(space, CALIBRATION_ARCHS, CALIBRATION_SEED)
    archs = held_out(space, args.archs, args.seed, {a.key() for a in calib})
    if args.cached:
        predictor = load_predictor(space, device=device, batch_size=args.batch_size, threads=threads)
        measured = [lat.median_ms for lat in measure_models([ArchNet(a, space.target) for a in archs], space.target.img_size,
                                                            args.batch_size, device, threads, rounds=args.rounds,
                                                            progress="measuring held-out architectures")]
        protocol = f"cached predictor (built {predictor.calibration.get('built')}) vs measurements now"
    else:
        table, figures = measure_space(space, calib + archs, device=device, batch_size=args.batch_size, threads=threads,
                                       rounds=args.rounds, seed=CALIBRATION_SEED)
        predictor = LatencyPredictor(device_key(device.type, device_name(device), threads, args.batch_size), space.name,
                                     space.target, table)
        calibrate(predictor, calib, figures[:len(calib)])
        measured = figures[len(calib):]
        protocol = "predictor built with the held-out measurements (same interleaved rounds)"
    rows = []
    for i, (arch, ms) in enumerate(zip(archs, measured)):
        predicted = predictor.predict(arch)
        rows.append({"arch": arch.to_json(), "predicted_ms": predicted, "table_sum_ms": predictor.table_sum(arch),
                     "measured_ms": ms, "error": (predicted - ms) / ms})
        print(f"arch {i + 1}/{args.archs}: depths {arch.depths}, predicted {predicted:.1f} ms, measured {ms:.1f} ms, "
              f"error {rows[-1]['error']:+.1%}", flush=True)
    df = pd.DataFrame(rows)
    out = CACHE_DIR / f"bench-{predictor.key}-{space.name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    rho = stats.spearmanr(df.predicted_ms, df.measured_ms).statistic
    tau = stats.kendalltau(df.predicted_ms, df.measured_ms).statistic
    mape = float(np.mean(np.abs(df.error)))
    raw_mape = float(np.mean(np.abs(df.table_sum_ms - df.measured_ms) / df.measured_ms))
    print(f"device {predictor.key}; {protocol}; calibration on {predictor.calibration.get('archs')} archs (slope "
          f"{predictor.slope:.3f}, intercept {predictor.intercept:.2f} ms); measured range {df.measured_ms.min():.1f}-"
          f"{df.measured_ms.max():.1f} ms; max |error| {df.error.abs().max():.1%}; uncalibrated table sum MAPE {raw_mape:.1%}; "
          f"{(time.time() - t0) / 60:.1f} min; rows in {out}")
    print(f"n={len(df)} held-out {space.name} archs at {space.target.img_size}x{space.target.img_size}, batch {args.batch_size}, "
          f"{'cached' if args.cached else 'fresh'} predictor: spearman={rho:.3f} kendall_tau={tau:.3f} MAPE={mape:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
