"""Does the search beat the papers' models? The selected architecture against the references at equal or lower MACs.

    python bench/search_vs_references.py --data npz:../shared/data/cifar10_12k.npz [--train-subset 5000] [--val-fraction 0.2]
        [--supernet results/<run>/supernet.pt | --supernet-epochs 8] [--trials 100] [--select 3] [--epochs 8] [--seeds 3]
        [--out results/search-vs-references-<time>]

1. A search of psvit_ext under a MAC limit equal to the largest reference's target MACs (and at most 4.5G),
   on a seeded --train-subset of the npz's training images (the test images kept), trials scored on the
   validation split; the space's references within the limit are its first trials. With --supernet (e.g.
   the ranking benchmark's), that supernet is searched; it must have been trained on the same data.
2. Its selection stage (`--select K`): the K best distinct architectures by inherited accuracy and the
   references trained alone (quick recipe, --epochs at the last rung, 3 seeds), successive halving, the
   winner chosen on validation (never test): <run>/selected.json.
3. The selected architecture (where the selection chose a reference: the search's best, the searched candidate
   the selection compared with the references) and every reference at equal or lower target MACs, each trained
   here with the same recipe and --seeds fresh seeds (1000, 1001, ...: none of the selection's, whose scores
   chose the winner), validation and test top-1 (test used once, here, for the table).

Its last line is the margin of that searched architecture's mean test top-1 over the best of those references,
the one most accurate on validation (the test split chooses nothing), with the standard error of the paired
differences over the seeds and their 90% t-interval. Finished trainings are kept: run it again with the same
--out to go on after a kill.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nas import runs, search
from nas.cli import Parser, run_cli
from nas.data import load_data
from nas.errors import UserError
from nas.measure.costs import arch_costs
from nas.training.recipes import RetrainConfig, resolve_recipe
from nas.training.retrainer import CHECKPOINT, METRICS, Retrainer
from search_bench import subset_npz
from search_spaces import Arch, get_reference, get_space, reference_names

SPACE = "psvit_ext"


def build_parser() -> Parser:
    p = Parser(prog="python bench/search_vs_references.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="npz:PATH (e.g. npz:../shared/data/cifar10_12k.npz)")
    p.add_argument("--train-subset", type=int, default=5000, help="training images kept (0: all), before the validation split")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--supernet", default=None, help="a supernet.pt trained on the same data (default: train one)")
    p.add_argument("--supernet-epochs", type=int, default=8)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--select", type=int, default=3, help="the selection stage's K: the search's K best trained alone, with the references")
    p.add_argument("--epochs", type=int, default=8, help="training epochs, the same for every architecture (the selection's last rung)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="default results/search-vs-references-<time>")
    return p


def selected_architecture(args, out: Path, limit: float) -> tuple[Path, dict]:
    """The run (searched and selected now, or read back) and its selected.json."""
    run = out / "run"
    if not (run / "selected.json").is_file():
        select = ["--select", str(args.select), "--select-epochs", str(args.epochs)]
        if (run / "config.json").exists():
            code = search.main(["--resume", str(run), *select])
        else:
            data = subset_npz(args.data, args.train_subset, args.seed, out / "data.npz")
            extra = ["--supernet", args.supernet] if args.supernet else ["--epochs", str(args.supernet_epochs)]
            code = search.main(["--space", SPACE, "--flops", f"{limit / 1e9:.4f}G", "--data", data, "--val-fraction", str(args.val_fraction),
                                "--trials", str(args.trials), "--seed", str(args.seed), "--out", str(run), *extra, *select])
        if code:
            raise SystemExit(code)
    return run, json.loads((run / "selected.json").read_text())


def searched_architecture(run: Path, selected: dict) -> tuple[str, Arch]:
    """The searched architecture to compare and its name: the selected one, or where the selection chose a reference,
    the search's best that the selection compared with the references (selected.json's comparison)."""
    if not selected.get("reference"):
        print(f"selected {selected['label']} ({selected['split']})", flush=True)
        return "selected", Arch.from_dict(selected["arch"])
    winner = (selected.get("comparison") or {}).get("winner")
    if winner is None:
        raise UserError(f"{run}: the selection chose the reference {selected['reference']} and compared no searched candidate")
    row = pd.read_csv(run / "selection.csv").set_index("label").loc[winner]
    print(f"the selection chose the reference {selected['reference']} ({selected['split']}); compared instead: the search's best, "
          f"{winner} (validation {row['val_acc']:.4f} at {row['epochs']} epochs in the selection)", flush=True)
    return f"searched-{winner}", Arch.from_json(row["arch"])


FRESH_SEED = 1000  # the compared trainings' first seed: none of the selection's (0, 1, 2, ...)


def train(name: str, arch: Arch, seed: int, config: dict, bundle, args, out: Path) -> dict:
    """A training of the recipe here with a fresh seed (kept: a finished one is read back)."""
    folder = out / "retrain" / f"{name}-seed{seed}"
    if (folder / METRICS).is_file():
        return json.loads((folder / METRICS).read_text())
    return Retrainer(_config(arch, seed, config, args, folder, name), bundle=bundle, log=lambda *_: None).run()


def _config(arch: Arch, seed: int, config: dict, args, folder: Path, name: str) -> RetrainConfig:
    split_seed, val_fraction = runs.data_split(config)
    return RetrainConfig(space=SPACE, arch=arch.to_dict(), data=config["settings"]["data"], seed=seed, split_seed=split_seed,
                         val_fraction=val_fraction, custom_scale=config["proxy_scale"], recipe="quick",
                         **resolve_recipe("quick", {"epochs": args.epochs}), out=str(folder), latency=False,
                         resume=(folder / CHECKPOINT).exists(), source={"benchmark": "search_vs_references", "name": name})


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.select < 1 or args.seeds < 3:
        raise UserError(f"--select must be at least 1 and --seeds at least 3, got {args.select} and {args.seeds}")
    t0 = time.time()
    space = get_space(SPACE)
    refs = {name: get_reference(SPACE, name) for name in reference_names(SPACE)}
    limit = min(max(arch_costs(a, space.target).macs for a in refs.values()), 4.5e9)
    out = Path(args.out or f"results/search-vs-references-{time.strftime('%Y%m%d-%H%M%S')}")
    run, selected = selected_architecture(args, out, limit)
    ours, chosen = searched_architecture(run, selected)
    chosen_macs = arch_costs(chosen, space.target).macs
    compared = {n: a for n, a in refs.items() if arch_costs(a, space.target).macs <= chosen_macs and a != chosen}
    print(f"{ours} ({chosen_macs / 1e9:.2f}G MACs); references at equal or lower MACs: {', '.join(compared) or 'none'}", flush=True)
    config = runs.read_config(run, flag="run")
    split_seed, val_fraction = runs.data_split(config)
    bundle = load_data(config["settings"]["data"], img_size=config["proxy_scale"]["img_size"], seed=split_seed, val_fraction=val_fraction)
    candidates = {ours: chosen, **compared}
    rows, k, total = [], 0, len(candidates) * args.seeds
    for name, arch in candidates.items():
        costs = arch_costs(arch, space.target)
        for seed in range(FRESH_SEED, FRESH_SEED + args.seeds):
            m = train(name, arch, seed, config, bundle, args, out)
            k += 1
            rows.append({"architecture": name, "seed": seed, "target_macs": costs.macs, "params": costs.params, "val_acc": m["val_acc"],
                         "test_acc": m["test_acc"], "train_time_s": m["train_time_s"], "arch": arch.to_json()})
            print(f"[{k}/{total}] {name} seed {seed}: val {m['val_acc']:.4f}, test {m['test_acc']:.4f} "
                  f"({m['train_time_s']:.0f}s)", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "retrain.csv", index=False)
    table = df.groupby("architecture", sort=False).agg(
        target_gmacs=("target_macs", lambda v: v.iloc[0] / 1e9), params_m=("params", lambda v: v.iloc[0] / 1e6),
        val_mean=("val_acc", "mean"), val_std=("val_acc", "std"), test_mean=("test_acc", "mean"), test_std=("test_acc", "std"))
    print(f"\ndata {bundle.name}: {len(bundle.train)} train, {len(bundle.val)} validation, {len(bundle.test)} test images; "
          f"MAC limit {limit / 1e9:.2f}G; {args.epochs} epochs (quick recipe), {args.seeds} seeds; {(time.time() - t0) / 60:.0f} min\n")
    print("| architecture | target MACs (G) | params (M) | val top-1 | test top-1 |\n|---|---|---|---|---|")
    for name, r in table.iterrows():
        print(f"| {name} | {r.target_gmacs:.2f} | {r.params_m:.1f} | {r.val_mean:.4f} ± {r.val_std:.4f} | {r.test_mean:.4f} ± {r.test_std:.4f} |")
    table.to_csv(out / "table.csv")
    if not compared:
        print(f"\nno reference has equal or lower target MACs than {ours} ({chosen_macs / 1e9:.2f}G): no margin")
        return 0
    best_ref = table.drop(index=ours)["val_mean"].idxmax()  # chosen on validation: the test split only measures
    paired = df.pivot(index="seed", columns="architecture", values="test_acc")
    diffs = (paired[ours] - paired[best_ref]) * 100
    margin, margin_se = float(diffs.mean()), float(diffs.std(ddof=1) / np.sqrt(len(diffs)))
    half = float(stats.t.ppf(0.95, len(diffs) - 1)) * margin_se
    ci90 = [margin - half, margin + half]
    (out / "summary.json").write_text(json.dumps({"limit_macs": limit, "selected": selected, "compared": ours, "best_reference": best_ref,
                                                  "margin_points": margin, "margin_standard_error_points": margin_se, "margin_ci90_points": ci90,
                                                  "table": table.reset_index().to_dict("records"), "settings": vars(args)}, indent=2) + "\n")
    print(f"\nmargin of {ours} ({chosen_macs / 1e9:.2f}G MACs) over the best reference at equal or lower MACs, "
          f"{best_ref} ({table.loc[best_ref, 'target_gmacs']:.2f}G, the most accurate on validation): {margin:+.2f} points of test top-1 "
          f"(mean of {args.seeds} fresh seeds, standard error of the paired differences {margin_se:.2f} points, "
          f"90% interval [{ci90[0]:+.2f}, {ci90[1]:+.2f}])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
