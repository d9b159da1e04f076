"""python -m nas.audit results/<run> [--archs 12] [--epochs 4] [--seeds 1] [--spread-archs 3] [--spread-seeds 3]
    [--calib-batches N] [--archs-from AUDIT_CSV] [--standalone-dir DIR] [--out DIR] [--space-file F] [--workers N]
    [--device auto] [--target-tau 0.75]

How well a run's supernet ranks architectures, measured on the run's own data: architectures chosen
from the run (its Pareto members, the rest stratified over the MAC range it evaluated) are each trained
alone from scratch with one recipe and scored on the validation split; their inherited (supernet)
accuracy is compared with that ground truth by Kendall tau and Spearman rho with bootstrap intervals,
beside the tau of MACs alone. A few architectures are trained with several seeds, so that the ground
truth's own noise is reported next to the spread between architectures, with the seeds per architecture
that would let it bear a Kendall tau of --target-tau.

Writes <run>/audit/ (audit.csv, audit.json, audit.png, section.md, the trainings) and adds a section to
the run's report.md. A killed audit keeps its finished trainings; run it again to go on.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from search_spaces import Arch, get_space
from search_spaces.atomic import write_bytes_atomic, write_text_atomic

from nas import runs
from nas.auditing.selection import architectures_from, choose_architectures, evenly_spaced
from nas.auditing.standalone import RECIPE, plan_trainings, run_trainings
from nas.cli import Parser, run_cli, seed_type
from nas.errors import UserError
from nas.measure.costs import arch_costs
from nas.measure.device import resolve_device
from nas.measure.evaluate import calibration_loader, evaluate
from nas.reporting.load import load_trials
from nas.reporting.plots import audit_figure, png_bytes
from nas.reporting.ranking import correlation, seed_spread, seeds_for_ceiling, tau_ceiling
from nas.training.recipes import RECIPES


def build_parser() -> Parser:
    p = Parser(prog="python -m nas.audit", description=__doc__.split("\n\n")[1])
    p.add_argument("run", help="a finished search run folder (results/<run>)")
    p.add_argument("--archs", type=int, default=None,
                   help="architectures ranked (default 12; with --archs-from, all of its, or this many spread over its MACs)")
    p.add_argument("--epochs", type=int, default=4, help="standalone training epochs (the quick recipe otherwise)")
    p.add_argument("--seeds", type=int, default=1, help="standalone seeds per architecture, averaged")
    p.add_argument("--spread-archs", type=int, default=3, help="architectures trained with --spread-seeds seeds to measure the noise")
    p.add_argument("--spread-seeds", type=int, default=3)
    p.add_argument("--calib-batches", type=int, default=None, help="BN recalibration batches for the inherited accuracy (default: the run's)")
    p.add_argument("--archs-from", default=None, help="rank the architectures of an earlier audit.csv (to compare supernets)")
    p.add_argument("--standalone-dir", default=None, help="where trainings are kept (default <run>/audit/standalone); share it to reuse them")
    p.add_argument("--out", default=None, help="where the audit's files go (default <run>/audit, whose section report.md shows); "
                                               "another folder keeps a second audit of the run apart, e.g. with other --calib-batches")
    p.add_argument("--space-file", default=None, help="the run's space file, for a run of a custom space")
    p.add_argument("--workers", type=int, default=0, help="Ray tasks training at once (default: the GPUs visible, else 1: in this process)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--target-tau", type=float, default=0.75,
                   help="the tau the ground truth should be able to bear: the audit says how many seeds that takes (default 0.75)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    p.add_argument("--seed", type=seed_type(), default=0, help="seeds the choice of architectures and the bootstrap")
    return p


def check_args(args) -> None:
    if args.archs is not None and args.archs < 3:
        raise UserError(f"--archs must be at least 3 (a rank correlation of fewer says nothing), got {args.archs}")
    for name in ("epochs", "seeds", "spread_seeds", "bootstrap"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("spread_archs", "workers", "threads"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(args, name)}")
    if args.out:
        runs.check_folder_path(Path(args.out))
    if args.standalone_dir:
        runs.check_folder_path(Path(args.standalone_dir), "--standalone-dir")
    if not 0 < args.target_tau < 1:
        raise UserError(f"--target-tau must be between 0 and 1 (exclusive), got {args.target_tau}")
    if args.calib_batches is not None and args.calib_batches < 0:
        raise UserError(f"--calib-batches must be at least 0, got {args.calib_batches}")


def load_run(args):
    """(config, supernet path, trials) of the run, everything checked before anything is written."""
    run = Path(args.run)
    config = runs.read_config(run, flag="audit")
    settings = config["settings"]
    runs.load_run_space_file(args.space_file, settings, run, "audit")
    supernet = runs.run_supernet(run, config)
    if supernet is None:
        raise UserError(f"audit {run}: the run has no supernet checkpoint (supernet.pt); an audit ranks with the run's supernet")
    if not (run / "trials.csv").is_file():
        raise UserError(f"audit {run}: the run has no trials.csv yet; audit a finished search (or --resume it first)")
    return config, supernet, load_trials(run)


def spread_seeds(archs: pd.DataFrame, args) -> dict[str, int]:
    """Seeds per architecture: --seeds for all, --spread-seeds for --spread-archs of them spread over their MACs."""
    seeds = {a: args.seeds for a in archs["arch_id"]}
    for i in evenly_spaced(len(archs), args.spread_archs):
        seeds[archs["arch_id"].iloc[i]] = max(args.seeds, args.spread_seeds)
    return seeds


def summarize(rows: pd.DataFrame, trainings: pd.DataFrame, args) -> dict:
    tau = correlation("kendall", rows["inherited_acc"], rows["standalone_acc"], args.bootstrap, args.seed)
    rho = correlation("spearman", rows["inherited_acc"], rows["standalone_acc"], args.bootstrap, args.seed)
    # the baseline counts MACs at the scale its ground truth was trained at (the supernet's): the target's MACs rank
    # the proxy models otherwise than their own do (a super-token grid or a merge costs differently at 32/16/8/4 tokens)
    macs = correlation("kendall", rows["proxy_macs"], rows["standalone_acc"], args.bootstrap, args.seed)
    spread = seed_spread(trainings)
    spread["ground_truth_noise"] = spread["seed_std"] / np.sqrt(args.seeds)
    spread["noise_ratio"] = spread["ground_truth_noise"] / spread["between_arch_std"] if spread["between_arch_std"] else float("nan")
    spread["tau_ceiling"] = tau_ceiling(spread["noise_ratio"])
    spread["seeds_for_target"] = seeds_for_ceiling(spread["seed_std"], spread["between_arch_std"], args.seeds, args.target_tau)
    return {"n": int(len(rows)), "kendall_tau": tau, "spearman_rho": rho, "macs_kendall_tau": macs, "spread": spread,
            "beats_macs": bool(tau["ci90"][0] > macs["value"]), "unranked": unranked_sentence(rows)}


def unranked_sentence(rows: pd.DataFrame) -> str | None:
    """Why no rank correlation can be measured (a side with one value for every architecture), or None."""
    for column, what in (("standalone_acc", "standalone accuracy (the ground truth)"), ("inherited_acc", "inherited accuracy")):
        if rows[column].nunique() < 2:
            return (f"Every architecture has the same {what}, {rows[column].iloc[0]:.4f}, so the rank correlations are undefined: "
                    "train longer (--epochs), on harder data, or audit more distinct architectures.")
    return None


def json_safe(value):
    """`value` with every non-finite float as None: audit.json stays strict JSON (no NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def seeds_sentence(spread: dict, args) -> str:
    target, needed, seeds = args.target_tau, spread["seeds_for_target"], args.seeds
    if needed is None:
        return (f"The measured differences between architectures are no larger than the noise, so no number of seeds can be "
                f"estimated for a ceiling of {target:.2f}: train longer (--epochs) or choose more distinct architectures.")
    if needed <= seeds:
        return f"A ceiling of {target:.2f} needs {needed} seed(s) per architecture; this ground truth has {seeds}."
    return (f"A ceiling of {target:.2f} needs about {needed} seeds per architecture at these epochs (this audit has {seeds}; "
            f"--seeds {needed} trains the rest, keeping the finished ones), or longer trainings.")


def section(run: Path, result: dict, args) -> str:
    s, tau, rho, macs = result["spread"], result["kendall_tau"], result["spearman_rho"], result["macs_kendall_tau"]
    verdict = ("well below" if s["noise_ratio"] < 0.5 else "not well below") if np.isfinite(s["noise_ratio"]) else "unmeasured against"
    fmt = lambda r: f"{r['value']:.3f} | [{r['ci90'][0]:.3f}, {r['ci90'][1]:.3f}]"  # noqa: E731
    return "\n".join([
        "## Ranking audit", "",
        f"`python -m nas.audit {run} --archs {result['n']} --epochs {args.epochs} --seeds {args.seeds}` ({result['date']}): "
        f"{result['n']} architectures ({result['pareto_members']} Pareto members of the run, the others stratified over the MACs it "
        f"evaluated), each trained alone from scratch ({RECIPE} recipe, {args.epochs} epochs, the run's data and split) and scored "
        "on the validation split, against their inherited accuracy (the supernet's); both scored alike, BatchNorm recalibrated on "
        "the same fixed training batches.", "",
        "| | value | 90% bootstrap interval |", "|---|---|---|",
        f"| Kendall tau, inherited vs standalone | {fmt(tau)} |",
        f"| Spearman rho, inherited vs standalone | {fmt(rho)} |",
        f"| Kendall tau, MACs vs standalone (the baseline; MACs at the scale the ground truth trains at) | {fmt(macs)} |", "",
        result["unranked"] or
        f"The supernet {'ranks better than MAC counting: the lower end of its tau interval is above' if result['beats_macs'] else 'does not beat MAC counting with confidence: the lower end of its tau interval is not above'} "
        f"the MAC baseline's tau.", "",
        f"Ground truth: seed-to-seed standard deviation {s['seed_std']:.4f} ({s['archs_with_seeds']} architectures, "
        f"{s['runs_with_seeds']} trainings), {s['ground_truth_noise']:.4f} for a mean of {args.seeds} seed(s), against "
        f"{s['between_arch_std']:.4f} between architectures (ratio {s['noise_ratio']:.2f}: the noise is {verdict} the differences "
        f"being ranked). Against this ground truth a perfect ranker would reach a Kendall tau of about {s['tau_ceiling']:.2f} "
        "(Gaussian noise; `tau_ceiling` in `nas/reporting/ranking.py`): a tau far below it is the supernet's fault, one near it "
        f"the ground truth's. {seeds_sentence(s, args)}", "",
        "![ranking audit](audit/audit.png)", "", "Per architecture: [`audit/audit.csv`](audit/audit.csv).", ""])


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    config, supernet_path, trials = load_run(args)
    settings = config["settings"]
    run = Path(args.run)
    archs = (architectures_from(args.archs_from, trials, args.archs) if args.archs_from
             else choose_architectures(trials, args.archs or 12, args.seed))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    workers = args.workers or max(1, torch.cuda.device_count() if device.type == "cuda" else 1)

    from nas.data import load_data, make_loader
    from nas.training.checkpoint import supernet_from_checkpoint

    space = get_space(settings["space"])
    net, ckpt = supernet_from_checkpoint(supernet_path)
    if ckpt["space"] != space.name:
        raise UserError(f"audit {run}: its supernet {supernet_path} is for space {ckpt['space']!r}, the run searched {space.name!r}")
    scale = net.scale
    split_seed, val_fraction = runs.data_split(config)
    bundle = load_data(settings["data"], img_size=scale.img_size, seed=split_seed, val_fraction=val_fraction,
                       batch_size=RECIPES[RECIPE]["batch_size"])
    root = Path(args.standalone_dir) if args.standalone_dir else Path(args.out or run / runs.AUDIT) / "standalone"
    plan = plan_trainings(archs, space=space.name, data=settings["data"], split=(split_seed, val_fraction), scale=scale.to_dict(),
                          epochs=args.epochs, seeds=spread_seeds(archs, args), root=root, device=args.device,
                          space_file=str(Path(args.space_file).resolve()) if args.space_file else None)
    t0 = time.time()
    print(f"audit {run}: {len(archs)} architectures, {len(plan)} standalone trainings of {args.epochs} epochs; {bundle.name}: "
          f"{len(bundle.train)} train, {len(bundle.val)} validation images", flush=True)

    net = net.to(device).eval()
    calib_batches = settings.get("calib_batches", 10) if args.calib_batches is None else args.calib_batches
    val_loader = make_loader(bundle, "val", 256)
    inherited = {}
    for k, (_, row) in enumerate(archs.iterrows()):
        arch = Arch.from_json(row["arch"])
        inherited[row["arch_id"]] = evaluate(net, arch, val_loader, calibration_loader(bundle), calib_batches)
        print(f"inherited {k + 1}/{len(archs)}: {row['arch_id']} {inherited[row['arch_id']]:.3f}", flush=True)

    results = run_trainings(plan, bundle, workers, 1.0 if device.type == "cuda" else 0.0)
    trainings = pd.DataFrame([{"arch_id": a, "seed": s, "standalone_acc": acc} for (a, s), acc in results.items()])
    per_arch = trainings.groupby("arch_id")["standalone_acc"].agg(["mean", "std", "count"])
    costs = [arch_costs(Arch.from_json(a), space.target) for a in archs["arch"]]
    rows = archs.assign(
        macs=[c.macs for c in costs], params=[c.params for c in costs],
        proxy_macs=[arch_costs(Arch.from_json(a), scale).macs for a in archs["arch"]],
        inherited_acc=archs["arch_id"].map(inherited), standalone_acc=archs["arch_id"].map(per_arch["mean"]),
        standalone_std=archs["arch_id"].map(per_arch["std"]), seeds=archs["arch_id"].map(per_arch["count"]),
    ).rename(columns={"acc": "search_acc"})
    result = summarize(rows, trainings, args)
    supernet_s = sum(h.get("epoch_time_s", 0.0) for h in ckpt.get("history", []))
    result.update(date=time.strftime("%Y-%m-%d %H:%M"), pareto_members=int(rows["is_pareto"].sum()), seconds=time.time() - t0,
                  supernet_time_s=supernet_s, supernet_epochs=int(ckpt.get("epoch", 0)), calib_batches=calib_batches,
                  settings={k: v for k, v in vars(args).items()}, recipe=RECIPE, data=bundle.describe())
    out = Path(args.out) if args.out else run / runs.AUDIT
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "audit.csv", rows.to_csv(index=False))
    write_text_atomic(out / "audit.json", json.dumps(json_safe(result), indent=2, default=str, allow_nan=False) + "\n")
    write_bytes_atomic(out / "audit.png", png_bytes(audit_figure(rows, result["kendall_tau"]["value"], result["macs_kendall_tau"]["value"])))
    write_text_atomic(out / "section.md", section(run, result, args))
    if out.resolve() == (run / runs.AUDIT).resolve():
        from nas.reporting.document import write_report

        write_report(run)
    tau, macs, s = result["kendall_tau"], result["macs_kendall_tau"], result["spread"]
    print(f"seed-to-seed std {s['seed_std']:.4f} (mean of {args.seeds}: {s['ground_truth_noise']:.4f}) vs between architectures "
          f"{s['between_arch_std']:.4f}: a perfect ranker's tau about {s['tau_ceiling']:.2f}. {seeds_sentence(s, args)} "
          f"Results in {out}")
    print(f"n={result['n']} kendall_tau={tau['value']:.3f} [{tau['ci90'][0]:.3f}, {tau['ci90'][1]:.3f}] "
          f"spearman_rho={result['spearman_rho']['value']:.3f} macs_tau={macs['value']:.3f} [{macs['ci90'][0]:.3f}, {macs['ci90'][1]:.3f}]",
          flush=True)
    if result["unranked"]:
        print(result["unranked"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
