"""Search efficiency of Optuna samplers: the same trained supernet, limit and trial budget for each.

    python bench/search_efficiency.py [--space psvit_ext] [--flops 4.5G] [--data digits] [--supernet PATH]
        [--epochs 8] [--trials 60] [--seeds 0,1,2] [--samplers tpe,nsga2,random] [--space-file FILE]
        [--out results/search-efficiency-<time>]

Without --supernet one supernet is trained first (nas.train.Trainer, --epochs, into <out>/supernet).
Every sampler then searches it once per seed with nas.search.search (objectives acc,flops, the MAC
limit --flops, --trials proposals infeasible ones included) into <out>/<sampler>-seed<k>. From each
run's trials.csv:

- best acc: the highest validation accuracy (inherited weights) of a feasible trial, 0 if none was feasible;
- HV: the hypervolume of (accuracy up, MACs in G down) over the feasible evaluated trials, reference
  point accuracy 0 and the MAC limit in G (the same for every run), in accuracy x GMACs; its maximum
  is the limit in G.

One line per run, then mean and std over seeds per sampler; the last line sums it up. Written:
<out>/runs.csv (one row per run), <out>/summary.csv (per sampler) and <out>/hv_curve.csv (HV and best
acc after every trial of every run). Each search also copies its best.json to results/best.json under
the current directory, as nas.search does.

Time with the defaults (digits, 2 CPU cores): supernet ~4 min, then 9 searches of 60 trials at about
60 trials/min plus ~5 s of Ray Tune set-up each, ~14 min in all (~10 min with --supernet).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nas.cli import Parser, run_cli

from nas.errors import UserError
from nas.reporting.pareto import hypervolume_2d
from search_spaces import load_space_file
from nas.runs import SAMPLERS, SearchSettings
from nas.search import search
from nas.searching.evaluators import make_evaluator
from nas.units import parse_count
from search_bench import prepare
from search_spaces import get_space


def build_parser() -> Parser:
    p = Parser(prog="python bench/search_efficiency.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--space-file", default=None, help="a Python file that registers extra spaces")
    p.add_argument("--flops", default="4.5G", help="MAC limit at the target scale")
    p.add_argument("--data", default="digits")
    p.add_argument("--supernet", default=None, help="a trained supernet.pt (default: train one into <out>/supernet)")
    p.add_argument("--epochs", type=int, default=8, help="supernet training epochs when none is given")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--samplers", default="tpe,nsga2,random", help=f"any of {', '.join(SAMPLERS)}")
    p.add_argument("--out", default=None)
    return p


def run_metrics(trials: pd.DataFrame, limit_g: float) -> pd.DataFrame:
    """Best feasible accuracy and hypervolume after each trial, in trial order."""
    df = trials.sort_values("trial").reset_index(drop=True)
    acc = df["acc"].where((df["status"] == "ok") & df["feasible"])
    front = acc.notna() & df["evaluated"]
    macs_g = df["macs"] / 1e9
    hv = [hypervolume_2d(acc.iloc[:k][front.iloc[:k]].to_numpy(), macs_g.iloc[:k][front.iloc[:k]].to_numpy(), ref_acc=0.0, ref_cost=limit_g)
          for k in range(1, len(df) + 1)]
    return pd.DataFrame({"trial": np.arange(1, len(df) + 1), "hv": hv, "best_acc": acc.fillna(0.0).cummax(), "feasible": df["feasible"].cumsum()})


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    space_file = str(Path(args.space_file).resolve()) if args.space_file else None
    load_space_file(space_file)
    space = get_space(args.space)
    flops = parse_count(args.flops, "--flops", "4.5G")
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if not samplers or any(s not in SAMPLERS for s in samplers):
        raise UserError(f"--samplers {args.samplers!r}: allowed: {', '.join(SAMPLERS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: integers separated by commas (e.g. 0,1,2)") from None
    if not seeds or args.trials < 1 or args.epochs < 1:
        raise UserError("--seeds must name at least one seed, --trials and --epochs must be at least 1")
    out, supernet = prepare(args, space, flops, "search-efficiency", epochs=args.epochs)
    limit_g = flops / 1e9
    runs, curves = [], []
    for sampler in samplers:
        for seed in seeds:
            run_dir = out / f"{sampler}-seed{seed}"
            run_dir.mkdir(parents=True)
            settings = SearchSettings(space=space.name, flops=flops, sampler=sampler, seed=seed, trials=args.trials, data=args.data,
                                      supernet=supernet, run_dir=str(run_dir), space_file=space_file)
            t0 = time.time()
            search(settings, run_dir, make_evaluator(settings))
            seconds = time.time() - t0
            curve = run_metrics(pd.read_csv(run_dir / "trials.csv"), limit_g)
            curves.append(curve.assign(sampler=sampler, seed=seed))
            last = curve.iloc[-1] if len(curve) else pd.Series({"hv": 0.0, "best_acc": 0.0, "feasible": 0})
            runs.append({"sampler": sampler, "seed": seed, "best_acc": last["best_acc"], "hv": last["hv"], "trials": len(curve),
                         "feasible": int(last["feasible"]), "seconds": seconds, "run": str(run_dir)})
            print(f"{sampler} seed {seed}: best acc {last['best_acc']:.3f}, HV {last['hv']:.3f}, feasible {int(last['feasible'])}/{len(curve)}, "
                  f"{seconds:.0f}s", flush=True)
            pd.DataFrame(runs).to_csv(out / "runs.csv", index=False)
            pd.concat(curves)[["sampler", "seed", "trial", "feasible", "best_acc", "hv"]].to_csv(out / "hv_curve.csv", index=False)

    summary = (pd.DataFrame(runs).groupby("sampler", sort=False)
               .agg(best_acc_mean=("best_acc", "mean"), best_acc_std=("best_acc", "std"), hv_mean=("hv", "mean"), hv_std=("hv", "std"),
                    feasible_mean=("feasible", "mean"), seconds_mean=("seconds", "mean"), seeds=("seed", "count")))
    summary.to_csv(out / "summary.csv")
    print(f"\nper sampler, mean and std over seeds (HV in acc x GMACs, reference acc 0 and {limit_g:g}G MACs):")
    print(summary.round(4).to_string())
    print(f"results: {out}/ (runs.csv, summary.csv, hv_curve.csv)")
    parts = [f"{s}: best acc {r.best_acc_mean:.3f}±{r.best_acc_std:.3f}, HV {r.hv_mean:.3f}±{r.hv_std:.3f}" for s, r in summary.iterrows()]
    print(f"{' | '.join(parts)} ({args.trials} trials x {len(seeds)} seeds, {space.name}, flops<={limit_g:g}G)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
