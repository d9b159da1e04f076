"""Ray Tune's cost per trial: wall time of a trial through the search against the same evaluation called directly.

    python bench/trial_overhead.py [--space psvit_ext] [--flops 4.5G] [--data digits] [--supernet PATH]
        [--trials 40] [--cpus-per-trial 1] [--gpus-per-trial G] [--concurrency 0] [--out results/trial-overhead-<time>]

A real search (nas.search.search: Ray Tune Tuner, OptunaSearch with TPE, the MAC limit) runs --trials
trials on a trained supernet with the default evaluation size (the whole validation split at batch 256,
BatchNorm recalibrated on 10 training batches of 32); without --supernet a one-epoch supernet is trained
first (how long a path takes to evaluate does not depend on how well it was trained). Per evaluated
trial:

- through Ray Tune: the trial's wall time as the search records it (duration_s in trials.csv: from
  Optuna proposing it to the driver telling Optuna its result, so scheduling, the worker, the result's
  way back and the sampler's bookkeeping are all inside);
- direct: in this process, the same architecture evaluated by the same code the worker runs
  (nas.searching.trial.trial_payload, nas.measure.evaluate.evaluate) with the same thread count (--cpus-per-trial),
  on the device the trials used (the GPU where CUDA is visible, as the search decides by default), one at a time.

This VM's speed drifts by up to 20% over minutes, so the two are measured in the order search, direct,
direct, search: the second search repeats the first (same seed, so the same proposals) and a linear
drift cancels. The figure is median(through Ray Tune, both searches) / median(direct, both passes)
(goal: at most 1.3 on 2 CPU cores). With the search's default concurrency (--concurrency 0: as many
trials at once as there are cores per --cpus-per-trial) two trials share the 2 cores, so that slowdown
is inside the ratio; --concurrency 1 isolates Ray Tune's own cost. Also printed: each search's
throughput and the worker-side evaluation time (eval_time_s). Written: <out>/overhead.csv (one row per
evaluated trial of the first search, with both direct times and, when the proposals matched, the
second search's times), <out>/search-1/, <out>/search-2/.

Time with the defaults (digits, 2 CPU cores): supernet ~40 s, two searches ~45 s each,
two direct passes ~40 s each: ~4 min.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from nas.cli import Parser, run_cli

from nas.errors import UserError
from nas.measure.evaluate import evaluate
from nas.runs import SearchSettings, write_config
from nas.search import search
from nas.searching.driver import check_inputs
from nas.searching.evaluators import SupernetEvaluator, worker_supernet, make_evaluator
from nas.units import parse_count
from search_bench import prepare
from search_spaces import Arch, get_space


def build_parser() -> Parser:
    p = Parser(prog="python bench/trial_overhead.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="psvit_ext")
    p.add_argument("--flops", default="4.5G", help="MAC limit at the target scale")
    p.add_argument("--data", default="digits")
    p.add_argument("--supernet", default=None, help="a trained supernet.pt (default: train one for 1 epoch into <out>/supernet)")
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPU share per trial (default: as the search decides)")
    p.add_argument("--concurrency", type=int, default=0, help="trials at once (0: as the search does by default)")
    p.add_argument("--out", default=None)
    return p


def run_search(settings: SearchSettings, run_dir: Path) -> pd.DataFrame:
    """Its evaluated trials (trials.csv rows), in trial order."""
    run_dir.mkdir()
    settings = replace(settings, run_dir=str(run_dir))
    write_config(settings, run_dir, {"status": "started"})
    t0 = time.time()
    search(settings, run_dir, make_evaluator(settings))
    seconds = time.time() - t0
    trials = pd.read_csv(run_dir / "trials.csv")
    trials = trials[trials["evaluated"]].sort_values("trial").reset_index(drop=True)
    if trials.empty:
        raise UserError("no trial of the search was evaluated (all infeasible under the MAC limit)")
    print(f"{run_dir.name}: {settings.trials} trials ({len(trials)} evaluated) in {seconds:.0f}s including Ray start-up and results, "
          f"{len(trials) / seconds * 60:.1f} evaluated trials/min", flush=True)
    return trials


def direct_times(net, archs, val_loader, calib_loader, calib_batches: int, desc: str) -> list[float]:
    times = []
    for arch_json in tqdm(archs, desc=desc, unit="arch"):
        t = time.perf_counter()
        evaluate(net, Arch.from_json(arch_json), val_loader, calib_loader, calib_batches)
        times.append(time.perf_counter() - t)
    return times


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    space = get_space(args.space)
    flops = parse_count(args.flops, "--flops", "4.5G")
    if args.trials < 2 or args.cpus_per_trial < 1 or args.concurrency < 0:
        raise UserError("--trials must be at least 2, --cpus-per-trial at least 1, --concurrency at least 0")
    out, supernet = prepare(args, space, flops, "trial-overhead", epochs=1)
    settings = SearchSettings(space=space.name, flops=flops, trials=args.trials, data=args.data, supernet=supernet,
                              cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, concurrency=args.concurrency)
    first = run_search(settings, out / "search-1")
    bundle, supernet_state = check_inputs(settings)
    threads = max(1, int(args.cpus_per_trial))
    torch.set_num_threads(threads)
    devices = json.loads((out / "search-1" / "config.json").read_text())["devices"]  # where the search put its trials
    print(f"trials ran on {devices['trials_on']} ({devices['gpus_per_trial']:g} GPU each); direct evaluation there too", flush=True)
    evaluator = SupernetEvaluator(replace(settings, run_dir=str(out / "direct"))).attach(supernet_state, bundle, devices["gpus_per_trial"])
    net, val_loader, calib_loader = worker_supernet(evaluator, evaluator.payload())
    evaluate(net, Arch.from_json(first["arch"][0]), val_loader, calib_loader, settings.calib_batches)  # warm-up
    direct = [direct_times(net, first["arch"], val_loader, calib_loader, settings.calib_batches, f"direct pass {k}") for k in (1, 2)]
    second = run_search(settings, out / "search-2")

    same = len(second) == len(first) and (second["arch"].to_numpy() == first["arch"].to_numpy()).all()
    rows = first[["trial", "macs", "duration_s", "eval_time_s"]].assign(direct_1_s=direct[0], direct_2_s=direct[1])
    if same:
        rows = rows.assign(duration_2_s=second["duration_s"], eval_time_2_s=second["eval_time_s"])
    rows.assign(arch=first["arch"]).to_csv(out / "overhead.csv", index=False)
    tune_s = pd.concat([first["duration_s"], second["duration_s"]])
    worker_s = pd.concat([first["eval_time_s"], second["eval_time_s"]])
    direct_s = pd.Series(direct[0] + direct[1])
    tune_med, worker_med, direct_med = tune_s.median(), worker_s.median(), direct_s.median()
    n = len(first)
    print(f"the two searches proposed {'the same' if same else 'different'} architectures ({n} and {len(second)} evaluated)")
    print(f"per trial, median over {len(tune_s)}: through Ray Tune {tune_med:.3f}s, worker-side evaluation {worker_med:.3f}s; "
          f"direct, median over {len(direct_s)}: {direct_med:.3f}s (threads {threads})")
    print(f"results: {out}/ (overhead.csv, search-1/, search-2/)")
    print(f"Ray Tune wall time per trial / direct evaluation: {tune_med / direct_med:.3f} (medians; goal <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
