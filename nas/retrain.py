"""python -m nas.retrain ARCH_FILE|SPACE:REFERENCE [--top K] [--recipe quick|deit] [--epochs N] [--data ...]
    [--init scratch|supernet] [--export onnx,torchscript] [--out results/<folder>] [--resume]
    [--parallel | --num-workers N [--use-gpu] [--address auto]]

Trains a searched architecture as a standalone timm model, evaluates it on the validation and test
splits, measures it, and optionally exports it. ARCH_FILE is a best.json, a bare architecture JSON,
or a run's pareto.csv / trials.csv (--top K: the K most accurate rows). When the file belongs to a
search run, the run's data, seed and supernet scale are the defaults, so the validation split is the
one the search used.

With --top K > 1 the K trainings also choose among themselves: selection.csv ranks them by validation
accuracy (never test) and selected.json, a best.json of the most accurate, is what to retrain longer.
A supernet whose ranking is noisy (see nas.audit) picks better this way than by inherited accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from search_spaces import Arch, ArchError, get_space, load_arch
from search_spaces.atomic import write_text_atomic
from search_spaces.references import is_reference_spec
from supernet.blocks.registry import has_modules

from nas import runs
from nas.cli import Parser, run_cli, seed_type
from nas.errors import UserError
from nas.measure.export import parse_formats
from nas.training.base import new_out_dir
from nas.training.recipes import RECIPES, RetrainConfig, resolve_recipe
from nas.training.retrainer import CHECKPOINT, METRICS, Retrainer


# ------------------------------------------------------------------ where the architectures come from
@dataclass(frozen=True)
class Candidate:
    arch: Arch
    inherited_acc: float | None
    trial: int | None
    label: str  # the subfolder name when several are retrained


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"architecture file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {str(path)!r}: {e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); expected a best.json, "
                        "an architecture JSON, or a pareto.csv / trials.csv") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply; expected a best.json or an architecture JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: must be a JSON object (a best.json or an architecture JSON), got a {type(data).__name__}")
    return data


def _arch(data, where: str) -> Arch:
    try:
        return Arch.from_dict(data)
    except ArchError as e:
        raise ArchError(f"{where}: {e}") from None


def candidates_from_json(path: Path, top: int) -> list[Candidate]:
    data = _read_json(path)
    if top != 1:
        raise UserError(f"--top {top}: {path} holds one architecture; --top picks from a pareto.csv or trials.csv")
    arch = _arch(data, str(path))
    wrapped = isinstance(data, dict) and isinstance(data.get("arch"), dict)
    acc = (data["inherited_acc"] if "inherited_acc" in data else data.get("accuracy")) if wrapped else None  # selected.json: both
    trial = data.get("trial") if wrapped else None
    return [Candidate(arch, float(acc) if isinstance(acc, (int, float)) else None, trial, f"trial-{trial}" if trial is not None else "arch")]


def candidates_from_table(path: Path, top: int) -> list[Candidate]:
    """The `top` most accurate rows of a pareto.csv, or of a trials.csv's feasible, evaluated, ok rows."""
    import pandas as pd

    if not path.is_file():
        raise UserError(f"architecture file {str(path)!r} does not exist")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable CSV table ({str(e).splitlines()[0][:120]})") from None
    missing = [c for c in ("arch", "acc") if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; a pareto.csv or trials.csv from nas.search has "
                        f"columns trial, acc, macs, params, arch")
    if "feasible" in df.columns:
        df = df[df["feasible"].astype(str).str.lower() == "true"]
    if "evaluated" in df.columns:
        df = df[df["evaluated"].astype(str).str.lower() == "true"]
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    df = df.dropna(subset=["acc", "arch"]).sort_values("acc", ascending=False, kind="stable").drop_duplicates("arch")
    if top > len(df):
        raise UserError(f"--top {top}: {path} has {len(df)} evaluated feasible architecture(s); choose --top 1 to {len(df)}"
                        if len(df) else f"--top {top}: {path} has no evaluated feasible architecture")
    rows = []
    for k, (index, row) in enumerate(df.head(top).iterrows()):
        try:
            data = json.loads(row["arch"])
        except (TypeError, json.JSONDecodeError):
            raise UserError(f"{path}: the arch column of row {index + 2} is not JSON") from None
        trial = int(row["trial"]) if "trial" in df.columns and pd.notna(row["trial"]) else None
        label = f"trial-{trial}" if trial is not None else f"row-{index + 2}"
        rows.append(Candidate(_arch(data, f"{path} row {index + 2}"), float(row["acc"]), trial, label))
    return rows


# ------------------------------------------------------------------ the command
def build_parser() -> argparse.ArgumentParser:
    q = RECIPES["quick"]
    p = Parser(prog="python -m nas.retrain", description=__doc__.split("\n\n")[1])
    p.add_argument("arch_file", help="best.json, an architecture JSON, a run's pareto.csv / trials.csv, or a space's reference "
                                     "(e.g. psvit_ext:stvit_s)")
    p.add_argument("--top", type=int, default=1, help="retrain the K most accurate rows of a pareto.csv / trials.csv")
    p.add_argument("--recipe", default="quick", help=f"preset: {', '.join(RECIPES)} (explicit flags override it)")
    p.add_argument("--data", default=None, help="digits, npz:PATH, folder:PATH or a timm data set (default: the run's, else digits)")
    p.add_argument("--seed", type=seed_type(), default=None, help="seeds the train/val split and training (default: the run's, else 0)")
    p.add_argument("--scale", default=None, help="proxy or target (default: the scale the run's supernet was trained at, else proxy)")
    p.add_argument("--init", default="scratch", help="scratch (default) or supernet: start from the weights inherited from the run's supernet")
    p.add_argument("--supernet", default=None, help="supernet checkpoint for --init supernet (default: the run's supernet.pt)")
    g = p.add_argument_group("recipe (defaults: the --recipe preset; quick shown)")
    g.add_argument("--epochs", type=int, default=None, help=f"({q['epochs']})")
    g.add_argument("--batch-size", type=int, default=None, help=f"global batch, split over --num-workers ({q['batch_size']})")
    g.add_argument("--lr", type=float, default=None, help=f"AdamW peak learning rate ({q['lr']:g}; deit: 5e-4 x batch / 512)")
    g.add_argument("--weight-decay", type=float, default=None, help=f"({q['weight_decay']})")
    g.add_argument("--warmup-epochs", type=int, default=None, help=f"linear warm-up before the cosine decay ({q['warmup_epochs']})")
    g.add_argument("--min-lr", type=float, default=None, help=f"({q['min_lr']:g})")
    g.add_argument("--smoothing", type=float, default=None, help=f"label smoothing ({q['smoothing']})")
    g.add_argument("--mixup", type=float, default=None, help=f"Mixup alpha, 0 off ({q['mixup']})")
    g.add_argument("--cutmix", type=float, default=None, help=f"CutMix alpha, 0 off ({q['cutmix']})")
    g.add_argument("--aa", default=None, help="RandAugment spec, e.g. rand-m9-mstd0.5-inc1; 'none' off (off)")
    g.add_argument("--drop-path", type=float, default=None, help=f"stochastic depth rate ({q['drop_path']})")
    g.add_argument("--model-ema", action=argparse.BooleanOptionalAction, default=None, help="keep an EMA of the weights (off)")
    g.add_argument("--ema-decay", type=float, default=None, help=f"({q['ema_decay']})")
    g.add_argument("--clip-grad", type=float, default=None, help=f"gradient norm clip, 0 off ({q['clip_grad']})")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bfloat16 autocast on CUDA (on)")
    p.add_argument("--export", action="append", default=None, help="onnx and/or torchscript, comma-separated or repeated")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement at the target scale")
    p.add_argument("--out", default=None, help="output folder (default results/retrain-<space>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint(s) in --out")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--parallel", action="store_true", help="with --top K: retrain the architectures at once as Ray tasks")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="with --parallel")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="with --parallel")
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per architecture (data parallel)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto); default: a private local instance")
    p.add_argument("--space-file", default=None, help="a Python file that registers extra spaces (default: the run's)")
    return p


def _check_resources(args) -> None:
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    if args.num_workers < 1:
        raise UserError(f"--num-workers must be at least 1, got {args.num_workers}")
    if args.parallel and args.num_workers > 1:
        raise UserError("--parallel and --num-workers > 1 do not combine: run several architectures at once, or one on several workers")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UserError("--cpus-per-trial must be positive and --gpus-per-trial at least 0")
    wants_gpu = args.use_gpu or args.gpus_per_trial > 0
    if wants_gpu and not args.address and not torch.cuda.is_available():
        raise UserError("--use-gpu / --gpus-per-trial: no GPU is visible here; leave them off or join a cluster with --address")
    if args.scale is not None and args.scale not in ("proxy", "target"):
        raise UserError(f"--scale {args.scale!r} is not known; allowed: proxy, target")
    if args.resume and not args.out:
        raise UserError("--resume needs --out <the retrain folder holding checkpoint.pt>")
    if args.address:
        from nas.cluster import check_address

        check_address(args.address)


def plan(args) -> list[RetrainConfig]:
    """One validated RetrainConfig per architecture; nothing is written."""
    _check_resources(args)
    path = Path(args.arch_file)
    is_table = path.suffix.lower() == ".csv"
    if is_reference_spec(args.arch_file):  # a space's reference member, e.g. psvit_ext:stvit_s: no run behind it
        if args.top != 1:
            raise UserError(f"--top {args.top}: {args.arch_file} is one architecture; --top picks from a pareto.csv or trials.csv")
        found, run = [Candidate(load_arch(args.arch_file), None, None, args.arch_file.partition(":")[2])], None
    else:
        found = candidates_from_table(path, args.top) if is_table else candidates_from_json(path, args.top)
        run = runs.find_run(path, None if is_table else _read_json(path))
    config = runs.read_config(run, flag="run") if run is not None else {}
    settings = config.get("settings", {})
    space_file = runs.load_run_space_file(args.space_file, settings, run, "run")
    spaces = {c.arch.space for c in found}
    for c in found:
        space = get_space(c.arch.space)
        try:
            space.validate(c.arch)
        except ArchError as e:
            raise ArchError(f"{path}{f' (trial {c.trial})' if is_table and c.trial is not None else ''}: {e}") from None
        if not has_modules(space):
            raise UserError(f"{path}: space {c.arch.space} has no modules to build and train (its architectures are scored by a "
                            "benchmark table); retrain a psvit or psvit_ext architecture")
    knobs = resolve_recipe(args.recipe, {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
        "warmup_epochs": args.warmup_epochs, "min_lr": args.min_lr, "smoothing": args.smoothing, "mixup": args.mixup,
        "cutmix": args.cutmix, "aa": args.aa, "drop_path": args.drop_path, "model_ema": args.model_ema,
        "ema_decay": args.ema_decay, "clip_grad": args.clip_grad, "amp": args.amp,
    })
    if knobs["aa"] in ("none", ""):
        knobs["aa"] = None
    if (knobs["mixup"] or knobs["cutmix"]) and args.num_workers > 1:
        if knobs["batch_size"] % (2 * args.num_workers):
            raise UserError(f"--batch-size {knobs['batch_size']}: with Mixup/CutMix every worker's share must be even; "
                            f"use a multiple of {2 * args.num_workers}")
    scale = {"scale": args.scale, "custom_scale": None} if args.scale else \
        {"scale": "proxy", "custom_scale": config.get("proxy_scale")}
    supernet = args.supernet or (runs.run_supernet(run, config) if args.init == "supernet" else None)
    if args.init == "supernet" and supernet is None:
        raise UserError(f"--init supernet: no supernet checkpoint found for {path} (no search run folder with supernet.pt); "
                        "pass --supernet PATH")
    if supernet is not None and not Path(supernet).is_file():
        raise UserError(f"--supernet {supernet}: file does not exist")
    out = Path(args.out) if args.out else Path(new_out_dir("retrain", "-".join(sorted(spaces))))
    outs = [out] if len(found) == 1 else [out / c.label for c in found]
    if args.resume and not out.is_dir():
        raise UserError(f"--resume: {out} does not exist")
    if len(found) > 1 and not args.resume:
        held = [o for o in outs if (o / CHECKPOINT).exists()]
        if held:
            raise UserError(f"{held[0]} already holds a retrain checkpoint; pass --resume to continue it or choose another --out")
    # the run's train/validation split, so that validation accuracy is measured where the search scored the architecture
    split_seed, val_fraction = runs.data_split(config) if run is not None and not args.data and args.seed is None else (None, 0.1)
    cfgs = []
    for c, o in zip(found, outs):
        source = {"file": str(path), "run": str(run) if run else None, "trial": c.trial, "inherited_acc": c.inherited_acc}
        cfgs.append(RetrainConfig(
            space=c.arch.space, arch=c.arch.to_dict(), data=args.data or settings.get("data", "digits"),
            seed=args.seed if args.seed is not None else settings.get("seed", 0), split_seed=split_seed, val_fraction=val_fraction,
            **scale, recipe=args.recipe, **knobs, init=args.init, supernet=supernet, calib_batches=settings.get("calib_batches", 10),
            out=str(o), resume=args.resume and (len(found) == 1 or (o / CHECKPOINT).exists()), device=args.device, threads=args.threads,
            export=parse_formats(args.export), latency=not args.no_latency, space_file=space_file, source=source,
        ))
    for cfg in cfgs:
        cfg.check()
    return cfgs


def report(metrics: dict) -> None:
    inherited = metrics["inherited_val_acc"]
    print(f"retrained {metrics['out']}: {metrics['epochs']} epochs, {metrics['wall_time_s']:.0f}s, data {metrics['data']['name']}")
    print(f"validation accuracy {metrics['val_acc']:.4f}" + (f" (inherited supernet weights: {inherited:.4f})" if inherited is not None else "")
          + (f", test accuracy {metrics['test_acc']:.4f}" if metrics["test_acc"] is not None else "") + f", chance {metrics['chance']:.3f}")
    latency = f", latency {metrics['latency_ms']:.2f} ms on {metrics['latency']['device']}" if metrics["latency_ms"] is not None else ""
    print(f"target scale ({metrics['target_scale']['img_size']}x{metrics['target_scale']['img_size']}): "
          f"{metrics['target_macs'] / 1e9:.2f} G MACs, {metrics['target_params'] / 1e6:.1f} M params{latency}")
    for e in metrics["exports"]:
        print(f"exported {e['format']}: {e['path']} (max abs difference to torch {e['max_abs_diff']:.2g})")
    print(f"metrics: {Path(metrics['out']) / METRICS}", flush=True)


def write_selection(results: list[dict], arch_file: str) -> Path:
    """selection.csv (the candidates by validation accuracy) and selected.json (the most accurate, as a best.json
    nas.retrain reads back) beside the candidates' folders; ties go to the higher inherited accuracy."""
    import pandas as pd

    rows = pd.DataFrame([{"label": Path(m["out"]).name, "trial": m["source"].get("trial"), "val_acc": m["val_acc"],
                          "inherited_acc": m["inherited_val_acc"], "target_macs": m["target_macs"], "params": m["target_params"],
                          "epochs": m["epochs"], "out": m["out"], "arch": json.dumps(m["arch"])} for m in results])
    rows = rows.sort_values(["val_acc", "inherited_acc"], ascending=False, kind="stable").reset_index(drop=True)
    folder = Path(results[0]["out"]).parent
    write_text_atomic(folder / "selection.csv", rows.to_csv(index=False))
    top, source = rows.iloc[0], results[0]["source"]
    selected = {"space": results[0]["space"], "arch": json.loads(top["arch"]), "accuracy": float(top["val_acc"]),
                "macs": int(top["target_macs"]), "params": int(top["params"]),
                "trial": None if pd.isna(top["trial"]) else int(top["trial"]), "run": source.get("run"),
                "inherited_acc": None if pd.isna(top["inherited_acc"]) else float(top["inherited_acc"]),
                "out": top["out"], "split": f"validation (trained alone {int(top['epochs'])} epochs, best of the top {len(rows)} of {arch_file})"}
    write_text_atomic(folder / "selected.json", json.dumps(selected, indent=2) + "\n")
    inherited = "" if selected["inherited_acc"] is None else f", inherited {selected['inherited_acc']:.3f}"
    print(f"selected {top['label']} (validation {top['val_acc']:.4f}, the best of {len(rows)}{inherited}) -> {folder / 'selected.json'}; "
          f"retrain it longer: python -m nas.retrain {folder / 'selected.json'} --epochs N", flush=True)
    return folder / "selected.json"


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfgs = plan(args)
    trainers: list[Retrainer] = []  # every check (data, scale, checkpoints) before anything is written
    for cfg in cfgs:  # one plan: the same data, seed and scale for every architecture, so the data is loaded once
        trainers.append(Retrainer(cfg, bundle=trainers[0].bundle if trainers else None))
    if args.num_workers > 1 or (args.parallel and len(cfgs) > 1):
        from nas.training.distributed import retrain_in_parallel, retrain_with_ray_train

        del trainers  # Ray workers build their own
        if args.num_workers > 1:
            results = [retrain_with_ray_train(cfg, args.num_workers, args.use_gpu, args.address) for cfg in cfgs]
        else:
            results = retrain_in_parallel(cfgs, args.cpus_per_trial, args.gpus_per_trial, args.address)
    else:
        results = []
        for k, trainer in enumerate(trainers):
            if len(trainers) > 1:
                print(f"[{k + 1}/{len(trainers)}] retraining {trainer.out}", flush=True)
            results.append(trainer.run())
    for metrics in results:
        report(metrics)
    if len(results) > 1:
        write_selection(results, args.arch_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
