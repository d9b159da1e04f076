"""Does the search beat the papers' models? The searched architecture against every reference of the space.

    python bench/search_vs_references.py --data npz:../shared/data/cifar10_12k.npz [--train-subset 5000] [--val-fraction 0.2]
        [--supernet results/<run>/supernet.pt | --supernet-epochs 8] [--trials 100] [--select-top 1] [--epochs 10] [--seeds 2]
        [--out results/search-vs-references-<time>]

1. A search of psvit_ext under a MAC limit equal to the largest reference's target MACs (and at most 4.5G),
   on a seeded --train-subset of the npz's training images (the test images kept), trials scored on the
   validation split. Its best (the most accurate feasible trial on validation, never test) is the searched
   architecture; with --select-top K, the search's K most accurate are each trained alone (the run's seed, the recipe
   of step 2: `nas.retrain trials.csv --top K`) and the one most accurate on validation is. With --supernet
   (e.g. the ranking benchmark's), that supernet is searched; it must have been trained on the same data.
2. The searched architecture and every reference member (psvit_ext:stvit_s, strip_mlp_t, pvt_spm, maformer)
   retrained from scratch with one recipe (quick, --epochs), --seeds seeds each, on the same training split;
   validation and test top-1 (test used once, here, for the table).
3. A table: architecture, target MACs, params, validation and test top-1 (mean +- std over seeds).

Its last line is the margin of the searched architecture's mean test top-1 over the best reference's (the
most accurate on test among all of them; every reference is within the limit the search kept to, so each
costs equal or fewer MACs than what the search was allowed). Finished retrainings are kept: run it again
with the same --out to go on after a kill.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nas import retrain as retrain_cli
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
    p.add_argument("--select-top", type=int, default=1, help="choose among the search's K best by training them alone (1: its best)")
    p.add_argument("--epochs", type=int, default=10, help="retraining epochs, the same for every architecture")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="default results/search-vs-references-<time>")
    return p


def searched_architecture(args, out: Path, limit: float) -> tuple[Path, Arch]:
    run = out / "run"
    if not (run / "best.json").is_file():
        if (run / "config.json").exists():
            code = search.main(["--resume", str(run)])
        else:
            data = subset_npz(args.data, args.train_subset, args.seed, out / "data.npz")
            extra = ["--supernet", args.supernet] if args.supernet else ["--epochs", str(args.supernet_epochs)]
            code = search.main(["--space", SPACE, "--flops", f"{limit / 1e9:.4f}G", "--data", data, "--val-fraction", str(args.val_fraction),
                                "--trials", str(args.trials), "--seed", str(args.seed), "--out", str(run), *extra])
        if code:
            raise SystemExit(code)
    best = json.loads((run / "best.json").read_text())
    return run, Arch.from_dict(best["arch"])


def selected_architecture(args, run: Path, out: Path) -> tuple[Arch, dict[int, Path]]:
    """The most accurate on validation of the search's --select-top best, each trained alone; and that training's folder
    by its seed (the run's), which is one of the searched architecture's retrainings: same recipe, epochs and split."""
    folder = out / "select"
    if not (folder / "selected.json").is_file():
        code = retrain_cli.main([str(run / "trials.csv"), "--top", str(args.select_top), "--recipe", "quick", "--epochs", str(args.epochs),
                                 "--no-latency", "--out", str(folder), *(["--resume"] if folder.is_dir() else [])])
        if code:
            raise SystemExit(code)
    selected = json.loads((folder / "selected.json").read_text())
    seed = json.loads((Path(selected["out"]) / METRICS).read_text())["seed"]
    return Arch.from_dict(selected["arch"]), {seed: Path(selected["out"])}


def retrain(name: str, arch: Arch, seed: int, config: dict, bundle, args, out: Path, folder: Path | None = None) -> dict:
    folder = folder or out / "retrain" / f"{name}-seed{seed}"
    if (folder / METRICS).is_file():
        return json.loads((folder / METRICS).read_text())
    split_seed, val_fraction = runs.data_split(config)
    cfg = RetrainConfig(space=SPACE, arch=arch.to_dict(), data=config["settings"]["data"], seed=seed, split_seed=split_seed,
                        val_fraction=val_fraction, custom_scale=config["proxy_scale"], recipe="quick",
                        **resolve_recipe("quick", {"epochs": args.epochs}), out=str(folder), latency=False,
                        resume=(folder / CHECKPOINT).exists(), source={"benchmark": "search_vs_references", "name": name})
    return Retrainer(cfg, bundle=bundle, log=lambda *_: None).run()


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.select_top < 1:
        raise UserError(f"--select-top must be at least 1 (1: the search's best), got {args.select_top}")
    t0 = time.time()
    space = get_space(SPACE)
    refs = {name: get_reference(SPACE, name) for name in reference_names(SPACE)}
    limit = min(max(arch_costs(a, space.target).macs for a in refs.values()), 4.5e9)
    out = Path(args.out or f"results/search-vs-references-{time.strftime('%Y%m%d-%H%M%S')}")
    run, searched = searched_architecture(args, out, limit)
    trained = {}
    if args.select_top > 1:
        searched, trained = selected_architecture(args, run, out)
    config = runs.read_config(run, flag="run")
    split_seed, val_fraction = runs.data_split(config)
    bundle = load_data(config["settings"]["data"], img_size=config["proxy_scale"]["img_size"], seed=split_seed, val_fraction=val_fraction)
    candidates = {"searched": searched, **refs}
    rows, k, total = [], 0, len(candidates) * args.seeds
    for name, arch in candidates.items():
        costs = arch_costs(arch, space.target)
        for seed in range(args.seeds):
            if name == "searched" and args.select_top > 1:
                m = retrain(f"selected-top{args.select_top}", arch, seed, config, bundle, args, out, trained.get(seed))
            else:
                m = retrain(name, arch, seed, config, bundle, args, out)
            k += 1
            rows.append({"architecture": name, "seed": seed, "target_macs": costs.macs, "params": costs.params, "val_acc": m["val_acc"],
                         "test_acc": m["test_acc"], "train_time_s": m["train_time_s"], "arch": arch.to_json()})
            print(f"[{k}/{total}] {name} seed {seed}: val {m['val_acc']:.4f}, test {m['test_acc']:.4f} ({m['train_time_s']:.0f}s)", flush=True)
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
    best_ref = table.drop(index="searched")["test_mean"].idxmax()
    margin = (table.loc["searched", "test_mean"] - table.loc[best_ref, "test_mean"]) * 100
    # the seeds' share of the margin's uncertainty; the 2,000 test images add their own, shared by every row
    margin_se = float(np.hypot(table.loc["searched", "test_std"], table.loc[best_ref, "test_std"]) / np.sqrt(args.seeds) * 100)
    (out / "summary.json").write_text(json.dumps({"limit_macs": limit, "best_reference": best_ref, "margin_points": margin,
                                                  "margin_standard_error_points": margin_se,
                                                  "table": table.reset_index().to_dict("records"), "settings": vars(args)}, indent=2) + "\n")
    print(f"\nmargin of the searched architecture ({table.loc['searched', 'target_gmacs']:.2f}G MACs) over the best reference, "
          f"{best_ref} ({table.loc[best_ref, 'target_gmacs']:.2f}G): {margin:+.2f} points of test top-1 (mean of {args.seeds} seeds, "
          f"standard error over the seeds {margin_se:.2f} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
