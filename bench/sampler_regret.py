"""The search layer against a known optimum: every sampler through the real driver on NAS-Bench-201's table.

    python bench/sampler_regret.py --table ../shared/data/nb201/nb201_cifar10.csv [--seeds 10] [--trials 300]
        [--samplers tpe,nsga2,gp,qmc,random] [--flops 50M] [--latency 20ms --device raspi4] [--limits flops,latency]
        [--objectives pair|acc]
        [--out results/bench/regret]

For each limit (a FLOP limit, then a latency limit on one of the table's devices), each sampler and each seed,
`python -m nas.search --space nb201 --evaluator table:TABLE` runs `--trials` trials (Ray Tune, the Optuna sampler,
the limits as Optuna constraints: the driver of every search). The table holds all 15,625 cells, so the true
feasible optimum and the true Pareto front (test accuracy up, the limited cost down) are known. Per run and at
100 and `--trials` trials: regret (points of test accuracy of the true feasible optimum above the best feasible
architecture found), hypervolume ratio (the found feasible points' hypervolume over the true front's, reference
point accuracy 0 and the limit), infeasible proposals, proposals that repeated an evaluated cell (told its result by
the driver without a trial; at --trials only), and wall time per trial (with a table lookup as the
evaluation, that is Ray Tune's and the sampler's own cost). Runs are kept in --out and reused when run again.

Then the audit's statistics on the table's supernet columns: Kendall tau of the one-shot and few-shot supernets'
inherited accuracy against the test accuracy over all cells (reported: 0.485 and 0.551).

The last line: the default sampler's median regret at --trials trials under the latency limit, random's, the
one-sided Mann-Whitney p over the seeds, and the time per trial.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import pandas as pd
from scipy import stats

from nas import runs, search
from nas.reporting.pareto import hypervolume_2d, pareto_mask
from nas.reporting.ranking import correlation
from nas.units import parse_count, parse_latency_ms
from search_spaces import get_space

DEFAULT = "tpe"


def truth(table: pd.DataFrame, cost: str, limit: float) -> tuple[float, float, int]:
    """(the feasible optimum's accuracy, the true front's hypervolume, the number of feasible cells)."""
    feasible = table[table[cost] <= limit]
    front = feasible[pareto_mask(feasible, ["acc"], [cost])]
    return float(feasible["acc"].max()), hypervolume_2d(front["acc"], front[cost], 0.0, limit), len(feasible)


def run_one(args, out: Path, sampler: str, seed: int, limit_args: list[str]) -> tuple[pd.DataFrame, float, int]:
    """The run's trials (searched now, or read back), its seconds per trial, and the proposals that repeated an evaluated
    cell (told its result by the driver, no trial spent)."""
    timing = out / "timing.json"
    if not (out / "trials.csv").is_file() or not timing.is_file():
        if out.exists():
            import shutil

            shutil.rmtree(out)
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            code = search.main(["--space", "nb201", "--evaluator", f"table:{args.table}", "--sampler", sampler, "--seed", str(seed),
                                "--trials", str(args.trials), "--no-references", "--out", str(out), *limit_args])
        if code:
            sys.exit(f"the search {out} failed (exit {code})")
        repeats = sum("repeat_of" in t.user_attrs for t in runs.study_trials(out))
        (out / "timing.json").write_text(json.dumps({"seconds": time.time() - t0, "trials": args.trials, "repeats_told": repeats}))
    timing = json.loads(timing.read_text())
    return pd.read_csv(out / "trials.csv"), timing["seconds"] / args.trials, timing["repeats_told"]


def score(trials: pd.DataFrame, n: int, cost: str, limit: float, optimum: float, true_hv: float) -> dict:
    first = trials.sort_values("trial").head(n)  # trial numbers skip the repeats the driver told without a trial
    ok = first[first["feasible"] & (first["status"] == "ok") & first["acc"].notna()]
    best = float(ok["acc"].max()) if len(ok) else 0.0
    hv = hypervolume_2d(ok["acc"], ok[cost], 0.0, limit) if len(ok) else 0.0
    return {"regret": (optimum - best) * 100, "hv_ratio": hv / true_hv, "infeasible": int((~first["feasible"]).sum())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/sampler_regret.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True, help="NAS-Bench-201's table (../shared/data/nb201/nb201_cifar10.csv)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--checkpoints", default="100", help="earlier trial counts reported besides --trials")
    p.add_argument("--samplers", default="tpe,nsga2,gp,qmc,random")
    p.add_argument("--flops", default="50M")
    p.add_argument("--latency", default="20ms")
    p.add_argument("--device", default="raspi4")
    p.add_argument("--objectives", choices=["pair", "acc"], default="pair",
                   help="pair: accuracy and the limited cost (the front the report shows); acc: accuracy alone, the limit a constraint")
    p.add_argument("--limits", default="flops,latency", help="which limits to search under (flops, latency or both)")
    p.add_argument("--out", default="results/bench/regret")
    args = p.parse_args(argv)
    args.table = str(Path(args.table).resolve())
    samplers = [s for s in args.samplers.split(",") if s]
    counts = sorted({int(c) for c in args.checkpoints.split(",") if c} | {args.trials})
    table = pd.read_csv(args.table)
    table["acc"] = table["cifar10_test_acc"] / 100
    table["macs"] = table["mflops"] * 1e6
    table["latency_ms"] = table[f"lat_{args.device}"]
    flops, latency = parse_count(args.flops, "--flops", "100M"), parse_latency_ms(args.latency)
    pair = args.objectives == "pair"
    limits = [("flops", "macs", flops, ["--flops", args.flops, "--objectives", "acc,flops" if pair else "acc"]),
              ("latency", "latency_ms", latency, ["--latency", args.latency, "--device", args.device, "--objectives", "acc,latency" if pair else "acc"])]
    limits = [limit for limit in limits if limit[0] in args.limits.split(",")]
    assert get_space("nb201").cardinality() == len(table), "the table must hold every cell"
    rows = []
    for name, cost, limit, limit_args in limits:
        optimum, true_hv, feasible = truth(table, cost, limit)
        print(f"{name} <= {limit:g}: {feasible} of {len(table)} cells feasible, optimum test accuracy {optimum * 100:.2f}%", flush=True)
        for sampler in samplers:
            t0 = time.time()
            for seed in range(args.seeds):
                trials, per_trial, repeats = run_one(args, Path(args.out) / name / sampler / f"seed{seed}", sampler, seed, limit_args)
                for n in counts:
                    rows.append({"limit": name, "sampler": sampler, "seed": seed, "trials": n, "s_per_trial": per_trial, "repeats_told": repeats,
                                 **score(trials, n, cost, limit, optimum, true_hv)})
            done = pd.DataFrame([r for r in rows if r["limit"] == name and r["sampler"] == sampler and r["trials"] == args.trials])
            print(f"  {sampler:7s} {args.seeds} seeds x {args.trials} trials: median regret {done['regret'].median():.2f} points, "
                  f"HV ratio {done['hv_ratio'].mean():.3f}, {done['s_per_trial'].mean():.3f} s/trial ({(time.time() - t0) / 60:.1f} min)",
                  flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(Path(args.out) / "regret.csv", index=False)
    summary = df.groupby(["limit", "sampler", "trials"]).agg(
        median_regret=("regret", "median"), q25=("regret", lambda r: r.quantile(0.25)), q75=("regret", lambda r: r.quantile(0.75)),
        hv_ratio=("hv_ratio", "mean"), infeasible=("infeasible", "mean"), repeats_told=("repeats_told", "mean"),
        s_per_trial=("s_per_trial", "mean")).reset_index()
    print()
    print(summary.to_markdown(index=False, floatfmt=".3f"))

    print("\nthe audit's statistics on the table's supernet columns (all cells; reported: one-shot 0.485, few-shot 0.551):")
    for column in ("oneshot_supernet_acc", "fewshot_supernet_acc"):
        tau = correlation("kendall", table[column], table["cifar10_test_acc"], resamples=200, seed=0)
        print(f"  {column}: Kendall tau {tau['value']:.3f} [{tau['ci90'][0]:.3f}, {tau['ci90'][1]:.3f}]")

    final = df[(df["limit"] == "latency") & (df["trials"] == args.trials)]
    ours, rand = final[final["sampler"] == DEFAULT]["regret"], final[final["sampler"] == "random"]["regret"]
    p_value = stats.mannwhitneyu(ours, rand, alternative="less").pvalue if len(ours) and len(rand) else float("nan")
    per_trial = df[df["trials"] == args.trials]["s_per_trial"].mean()
    print(f"latency <= {args.latency} on {args.device}, {args.trials} trials, {args.seeds} seeds: {DEFAULT} median regret "
          f"{ours.median():.2f} points, random {rand.median():.2f}; Mann-Whitney (one-sided) p = {p_value:.4f}; "
          f"Ray Tune + sampler cost {per_trial:.3f} s per trial")


if __name__ == "__main__":
    main()
