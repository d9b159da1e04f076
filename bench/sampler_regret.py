"""The search layer against a known optimum: every sampler on many tasks of NAS-Bench-201's table.

    python bench/sampler_regret.py --table ../shared/data/nb201/nb201_cifar10.csv [--seeds 10] [--trials 300]
        [--samplers tpe,local,evolution,nsga2,random] [--percentiles 10,20,30] [--devices all|raspi4,pixel3]
        [--objectives pair|acc] [--cost-seeds 2] [--out results/bench/regret]

Tasks: FLOPs <= 50M, raspi4 latency <= 20 ms and <= 25 ms (the limits of issue 25), then a latency limit at each of
--percentiles (of the column's values over all 15,625 cells) on each of the table's device columns. For each task,
sampler and seed, the search's own searcher (nas.searching.samplers: the sampler `--sampler` makes, Ray Tune's
OptunaSearch with repeats told without a trial, nas.searching.trial's Proposer setting costs and the limits as Optuna
constraints, the table evaluator) proposes `--trials` trials, one at a time, in this process: what `python -m
nas.search --space nb201 --evaluator table:TABLE --no-references` does less Ray Tune's scheduling (0.06 s a trial,
which 10 seeds x 24 tasks x 4 samplers could not afford here). The table holds every cell, so the true feasible
optimum and front are known. Per run, at 100 and --trials trials: regret (points of test accuracy between the feasible
optimum and the best feasible cell found), hypervolume ratio (found over true front, accuracy x the limited cost,
reference point 0 and the limit), infeasible proposals, repeats told. Runs are kept in --out and reused.

Then --cost-seeds runs of the default sampler through the real driver (`python -m nas.search`, Ray Tune) on the
raspi4 20 ms task: the search's cost per trial on a table, and a check that the driver's regret matches.

Per sampler, the median over tasks of its median regret over seeds, its worst task, the tasks at most 0.3, and the
default against each other sampler over the tasks (one-sided Wilcoxon signed-rank on the task medians).

The last line: the default sampler's median over tasks of its median regret, its worst task, the tasks at most 0.3,
the 20 ms task against random (one-sided Mann-Whitney over seeds) at --trials and at 100 trials, the cost per trial.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nas import runs, search
from nas.reporting.pareto import hypervolume_2d, pareto_mask
from nas.units import parse_count
from search_spaces import Arch, get_space

DEFAULT = runs.SearchSettings().sampler


def truth(table: pd.DataFrame, cost: str, limit: float) -> tuple[float, float, int]:
    """(the feasible optimum's accuracy, the true front's hypervolume, the number of feasible cells)."""
    feasible = table[table[cost] <= limit]
    front = feasible[pareto_mask(feasible, ["acc"], [cost])]
    return float(feasible["acc"].max()), hypervolume_2d(front["acc"], front[cost], 0.0, limit), len(feasible)


def tasks(table: pd.DataFrame, args) -> list[dict]:
    """name, cost column, limit, device (None for FLOPs) of every task."""
    out = [{"task": "flops<=50M", "cost": "macs", "limit": parse_count("50M", "--flops", "100M"), "device": None},
           {"task": "raspi4<=20ms", "cost": "lat_raspi4", "limit": 20.0, "device": "raspi4"},
           {"task": "raspi4<=25ms", "cost": "lat_raspi4", "limit": 25.0, "device": "raspi4"}]
    devices = [c[4:] for c in table.columns if c.startswith("lat_")]
    if args.devices != "all":
        devices = [d for d in devices if d in args.devices.split(",")]
    for device in devices:
        for q in (int(q) for q in args.percentiles.split(",") if q):
            limit = float(np.percentile(table[f"lat_{device}"], q))
            out.append({"task": f"{device}<=p{q}", "cost": f"lat_{device}", "limit": round(limit, 3), "device": device})
    return out


def search_in_process(table_path: str, task: dict, sampler: str, seed: int, trials: int, objectives: str) -> tuple[pd.DataFrame, int, float]:
    """(one row per trial: feasible, acc, cost; the repeats told; seconds) of the search's searcher run here, one trial
    at a time, as the driver runs it without Ray Tune."""
    from nas.searching.evaluators import TableEvaluator
    from nas.searching.samplers import DistinctOptunaSearch, make_sampler
    from nas.searching.trial import Proposer

    latency = task["device"] is not None
    chosen = ("acc", "latency" if latency else "flops") if objectives == "pair" else ("acc",)
    settings = runs.SearchSettings(space="nb201", sampler=sampler, seed=seed, objectives=chosen, evaluator=f"table:{table_path}",
                                   latency_ms=task["limit"] if latency else None, flops=None if latency else task["limit"],
                                   device=task["device"] or "auto", references=False)
    evaluator = TableEvaluator("nb201", table_path, settings.score, device=task["device"])
    metrics = [runs.OBJECTIVES[o] for o in chosen]
    metric, mode = ([m for m, _ in metrics], [d for _, d in metrics]) if len(metrics) > 1 else metrics[0]
    proposer = Proposer(settings, evaluator)
    searcher = DistinctOptunaSearch(space=proposer, metric=metric, mode=mode, sampler=make_sampler(sampler, seed, screen=proposer.feasible_params),
                                    told={})
    rows, t0 = [], time.time()
    for i in range(trials):
        config = searcher.suggest(str(i))
        acc = evaluator.score(Arch.from_json(config["arch"]), None) if config["feasible"] else 0.0
        searcher.on_trial_complete(str(i), {"acc": acc, "macs": config["macs"], "params": config["params"], "latency_ms": config["latency_ms"]})
        rows.append({"trial": i, "feasible": config["feasible"], "status": "ok", "acc": acc if config["feasible"] else np.nan,
                     "cost": config["latency_ms"] if latency else config["macs"]})
    return pd.DataFrame(rows), searcher.repeats, time.time() - t0


def search_with_driver(args, task: dict, sampler: str, seed: int, out: Path) -> tuple[pd.DataFrame, int, float]:
    """The same through `python -m nas.search` (Ray Tune): trials, repeats told, seconds."""
    timing = out / "timing.json"
    if not (out / "trials.csv").is_file() or not timing.is_file():
        if out.exists():
            shutil.rmtree(out)
        limit = ["--latency", f"{task['limit']}ms", "--device", task["device"]] if task["device"] else ["--flops", "50M"]
        objectives = ("acc,latency" if task["device"] else "acc,flops") if args.objectives == "pair" else "acc"
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            code = search.main(["--space", "nb201", "--evaluator", f"table:{args.table}", "--sampler", sampler, "--seed", str(seed),
                                "--trials", str(args.trials), "--no-references", "--out", str(out), "--objectives", objectives, *limit])
        if code:
            sys.exit(f"the search {out} failed (exit {code})")
        repeats = sum("repeat_of" in t.user_attrs for t in runs.study_trials(out))
        timing.write_text(json.dumps({"seconds": time.time() - t0, "trials": args.trials, "repeats_told": repeats}))
    record = json.loads(timing.read_text())
    trials = pd.read_csv(out / "trials.csv").rename(columns={task["cost"] if task["device"] is None else "latency_ms": "cost"})
    return trials, record.get("repeats_told", -1), record["seconds"]  # runs timed before repeats were told have no count


def score(trials: pd.DataFrame, n: int, limit: float, optimum: float, true_hv: float) -> dict:
    first = trials.sort_values("trial").head(n)  # trial numbers skip the repeats told without a trial
    ok = first[first["feasible"].astype(bool) & (first["status"] == "ok") & first["acc"].notna()]
    best = float(ok["acc"].max()) if len(ok) else 0.0
    hv = hypervolume_2d(ok["acc"], ok["cost"], 0.0, limit) if len(ok) else 0.0
    return {"regret": (optimum - best) * 100, "hv_ratio": hv / true_hv, "infeasible": int((~first["feasible"].astype(bool)).sum())}


def cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    trials, repeats, seconds = compute()
    record = {"trials": trials.to_dict("list"), "repeats_told": repeats, "seconds": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/sampler_regret.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True, help="NAS-Bench-201's table (../shared/data/nb201/nb201_cifar10.csv)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--checkpoints", default="100", help="earlier trial counts reported besides --trials")
    p.add_argument("--samplers", default="tpe,local,evolution,nsga2,random")
    p.add_argument("--percentiles", default="10,20,30", help="latency limits at these percentiles of each device column")
    p.add_argument("--devices", default="all", help="device columns for the percentile tasks (all, or names)")
    p.add_argument("--objectives", choices=["pair", "acc"], default="pair",
                   help="pair: accuracy and the limited cost (as a search's default); acc: accuracy alone, the limit a constraint")
    p.add_argument("--cost-seeds", type=int, default=2, help="runs of the default sampler through the real driver (Ray Tune)")
    p.add_argument("--out", default="results/bench/regret")
    args = p.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.table = str(Path(args.table).resolve())
    samplers = [s for s in args.samplers.split(",") if s]
    counts = sorted({int(c) for c in args.checkpoints.split(",") if c} | {args.trials})
    table = pd.read_csv(args.table)
    table["acc"], table["macs"] = table["cifar10_test_acc"] / 100, table["mflops"] * 1e6
    assert get_space("nb201").cardinality() == len(table), "the table must hold every cell"
    out, rows = Path(args.out), []
    for task in tasks(table, args):
        optimum, true_hv, feasible = truth(table, task["cost"], task["limit"])
        print(f"{task['task']} ({task['limit']:g}): {feasible} of {len(table)} cells feasible, optimum {optimum * 100:.2f}%", flush=True)
        for sampler in samplers:
            for seed in range(args.seeds):
                path = out / "inprocess" / args.objectives / task["task"] / sampler / f"seed{seed}.json"
                record = cached(path, lambda: search_in_process(args.table, task, sampler, seed, args.trials, args.objectives))
                trials = pd.DataFrame(record["trials"])
                for n in counts:
                    rows.append({"task": task["task"], "sampler": sampler, "seed": seed, "trials": n, "repeats_told": record["repeats_told"],
                                 "s_per_trial": record["seconds"] / args.trials, **score(trials, n, task["limit"], optimum, true_hv)})
            done = pd.DataFrame([r for r in rows if r["task"] == task["task"] and r["sampler"] == sampler and r["trials"] == args.trials])
            print(f"  {sampler:7s} median regret {done['regret'].median():.2f} [{done['regret'].quantile(0.25):.2f}, "
                  f"{done['regret'].quantile(0.75):.2f}], HV {done['hv_ratio'].mean():.3f}, infeasible {done['infeasible'].mean():.0f}, "
                  f"repeats {done['repeats_told'].mean():.0f}", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "regret.csv", index=False)
    per_task = df.groupby(["task", "sampler", "trials"]).agg(
        median=("regret", "median"), q25=("regret", lambda r: r.quantile(0.25)), q75=("regret", lambda r: r.quantile(0.75)),
        hv_ratio=("hv_ratio", "mean"), infeasible=("infeasible", "mean"), repeats_told=("repeats_told", "mean")).reset_index()
    per_task.to_csv(out / "per_task.csv", index=False)
    final = per_task[per_task["trials"] == args.trials]
    summary = final.groupby("sampler").agg(median_over_tasks=("median", "median"), worst_task=("median", "max"),
                                           tasks_at_most_0_3=("median", lambda m: int((m <= 0.3).sum())), tasks=("median", "size"),
                                           hv_ratio=("hv_ratio", "mean")).reset_index()
    print()
    print(final.pivot(index="task", columns="sampler", values="median").to_markdown(floatfmt=".2f"))
    print()
    print(summary.to_markdown(index=False, floatfmt=".3f"))
    medians = final.pivot(index="task", columns="sampler", values="median")
    for other in (s for s in samplers if s != DEFAULT and DEFAULT in medians):
        diff = medians[DEFAULT] - medians[other]
        test = stats.wilcoxon(medians[DEFAULT], medians[other], alternative="less") if (diff != 0).any() else None
        print(f"{DEFAULT} vs {other} over {len(diff)} tasks: median regret lower on {int((diff < 0).sum())}, higher on {int((diff > 0).sum())}; "
              f"Wilcoxon signed-rank (one-sided) p = {test.pvalue if test else float('nan'):.4f}")

    def on_20ms(sampler, n):
        return df[(df["task"] == "raspi4<=20ms") & (df["sampler"] == sampler) & (df["trials"] == n)]["regret"]

    ours, rand = on_20ms(DEFAULT, args.trials), on_20ms("random", args.trials)
    p_value = stats.mannwhitneyu(ours, rand, alternative="less").pvalue if len(ours) and len(rand) else float("nan")
    ours100, rand100 = on_20ms(DEFAULT, 100), on_20ms("random", 100)
    driver = raspi = None
    if args.cost_seeds:
        task = tasks(table, args)[1]
        optimum, true_hv, _ = truth(table, task["cost"], task["limit"])
        costs, regrets = [], []
        for seed in range(args.cost_seeds):
            trials, _, seconds = search_with_driver(args, task, DEFAULT, seed, out / "driver" / args.objectives / DEFAULT / f"seed{seed}")
            costs.append(seconds / args.trials)
            regrets.append(score(trials, args.trials, task["limit"], optimum, true_hv)["regret"])
        driver, raspi = float(np.mean(costs)), regrets
        print(f"\nthe real driver (Ray Tune), {DEFAULT}, raspi4 <= 20 ms, {args.cost_seeds} seeds: regret {np.round(regrets, 2).tolist()} "
              f"(in process, same seeds: {np.round(ours.head(args.cost_seeds), 2).tolist()}); {driver:.3f} s per trial")
    row = summary[summary["sampler"] == DEFAULT].iloc[0]
    print(f"default {DEFAULT}, {args.trials} trials, {args.seeds} seeds, {int(row['tasks'])} tasks: median over tasks of the median regret "
          f"{row['median_over_tasks']:.2f} points, worst task {row['worst_task']:.2f}, {int(row['tasks_at_most_0_3'])} tasks at most 0.3; "
          f"raspi4 <= 20 ms: {ours.median():.2f} vs random {rand.median():.2f} (Mann-Whitney one-sided p = {p_value:.4f}), "
          f"at 100 trials {ours100.median():.2f} vs {rand100.median():.2f}; "
          f"cost per trial {'-' if driver is None else f'{driver:.3f} s'} (Ray Tune driver)")


if __name__ == "__main__":
    main()
