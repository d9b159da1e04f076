"""python -m nas.search --space psvit_ext --flops 4.5G [--params 22M] [--latency 8ms [--device cpu|cuda]]
    [--sampler tpe|nsga2|random|gp|qmc] [--objectives acc,flops|acc,latency] [--trials N] [--seed S]
    [--data ...] [--supernet results/<run>/supernet.pt] [--address auto] [--gpus-per-trial 0.25]
python -m nas.search --resume results/<run>

Trains the supernet if none is given, then searches it: Ray Tune runs the trials, an Optuna sampler
proposes them (define-by-run over the space's choices). Limits are checked with the analytic cost
model (MACs, params) and the device's latency predictor at the target scale before a trial touches
the supernet; the sampler learns the boundary through Optuna's constraints. A trial evaluates one architecture with inherited weights (BatchNorm
recalibrated) on the validation split. Results go to results/<run>/.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from search_spaces import get_space, load_space_file

from nas import runs
from nas.cli import Parser, run_cli
from nas.errors import UserError
from nas.measure.costs import arch_costs, extreme_arch
from nas.measure.latency import resolve_device
from nas.runs import OBJECTIVES, SAMPLERS, SearchSettings
from nas.units import parse_count, parse_latency_ms


# ------------------------------------------------------------------ argument checking
def build_parser() -> Parser:
    d = SearchSettings()
    p = Parser(prog="python -m nas.search", description=__doc__.split("\n\n")[1])
    p.add_argument("--space", default=d.space)
    p.add_argument("--flops", default=None, help="MAC limit at the target scale: 4.5G, 4500M, 4.5e9")
    p.add_argument("--params", default=None, help="parameter limit: 22M")
    p.add_argument("--latency", default=None, help="latency limit at the target scale on --device: 8ms")
    p.add_argument("--device", default=d.device, help="device whose latency is predicted and measured: auto (cuda if present), cpu, cuda")
    p.add_argument("--latency-batch", type=int, default=d.latency_batch, help="batch size of the latency figures (default 1)")
    p.add_argument("--latency-threads", type=int, default=d.latency_threads, help="CPU threads of the latency figures (default: torch's)")
    p.add_argument("--sampler", default=d.sampler, help=f"Optuna sampler: {', '.join(SAMPLERS)}")
    p.add_argument("--objectives", default=",".join(d.objectives), help="acc,flops (default), acc,latency, acc,params or acc")
    p.add_argument("--trials", type=int, default=d.trials, help="architectures proposed (infeasible ones included)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--data", default=d.data, help="digits (default), npz:PATH, folder:PATH or a timm data set name")
    p.add_argument("--scale", default=d.scale, help="scale the supernet is trained at: proxy (default) or target")
    p.add_argument("--supernet", default=None, help="a trained supernet.pt (default: train one in the run folder)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="supernet training epochs when none is given")
    p.add_argument("--strategy", default=d.strategy, help="supernet path sampling: sandwich, uniform, stratified")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto); default: a private local instance")
    p.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    p.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial)
    p.add_argument("--concurrency", type=int, default=0, help="trials at once (default: what the resources allow)")
    p.add_argument("--out", default=None, help="run folder (default results/<space>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the search in this run folder")
    p.add_argument("--space-file", default=None, help="a Python file that registers extra spaces")
    return p


def settings_from_args(args) -> SearchSettings:
    space_file_sha256 = load_space_file(args.space_file)
    space = get_space(args.space)
    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler {args.sampler!r} is not known; allowed: {', '.join(SAMPLERS)}")
    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    if not objectives or objectives[0] != "acc" or any(o not in OBJECTIVES for o in objectives) or len(set(objectives)) != len(objectives):
        raise UserError(f"--objectives {args.objectives!r}: start with acc, then any of flops, params, latency (e.g. acc,flops)")
    flops = parse_count(args.flops, "--flops", "4.5G") if args.flops is not None else None
    params = parse_count(args.params, "--params", "22M") if args.params is not None else None
    latency = parse_latency_ms(args.latency) if args.latency is not None else None
    if args.latency_batch < 1 or args.latency_threads < 0:
        raise UserError("--latency-batch must be at least 1 and --latency-threads at least 0")
    resolve_device(args.device)
    if args.scale not in ("proxy", "target"):
        raise UserError(f"--scale {args.scale!r} is not known; allowed: proxy, target")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UserError("--cpus-per-trial must be positive and --gpus-per-trial at least 0")
    if args.gpus_per_trial > 0 and not args.address and not torch.cuda.is_available():
        raise UserError(f"--gpus-per-trial {args.gpus_per_trial}: no GPU is visible here; leave it at 0 or join a cluster with --address")
    if args.supernet and not Path(args.supernet).is_file():
        raise UserError(f"--supernet {args.supernet}: file does not exist")
    settings = SearchSettings(
        space=space.name, flops=flops, params=params, latency_ms=latency, sampler=args.sampler, objectives=objectives,
        trials=args.trials, seed=args.seed, data=args.data, scale=args.scale, supernet=args.supernet, epochs=args.epochs,
        strategy=args.strategy, address=args.address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        concurrency=args.concurrency, space_file=str(Path(args.space_file).resolve()) if args.space_file else None,
        space_file_sha256=space_file_sha256,
        device=args.device, latency_batch=args.latency_batch, latency_threads=args.latency_threads,
    )
    if settings.address:
        from nas.cluster import check_address

        check_address(settings.address)
    return settings


def latency_predictor(settings: SearchSettings):
    """The device's latency predictor for the space (built and cached on first use), or None if unused."""
    if not settings.uses_latency:
        return None
    from nas.measure.latency import load_predictor

    return load_predictor(get_space(settings.space), device=settings.device, batch_size=settings.latency_batch,
                          threads=settings.latency_threads or None)


def check_reachable(settings: SearchSettings, predictor=None) -> None:
    """A limit below the space's cheapest architecture is reported now, not after a fruitless search."""
    space = get_space(settings.space)
    target = space.target
    for key, limit, flag, unit, scale in (("macs", settings.flops, "--flops", "G MACs", 1e9), ("params", settings.params, "--params", "M params", 1e6)):
        if limit is None:
            continue
        cheapest = arch_costs(extreme_arch(space, target, largest=False, key=key), target)
        least = getattr(cheapest, key)
        if least > limit:
            raise UserError(f"{flag} {limit / scale:g}{unit[0]}: no architecture of {space.name} fits; the smallest has "
                            f"{least / scale:.2f}{unit} at the target scale ({target.img_size}x{target.img_size})")
    if settings.latency_ms is not None:
        fastest = predictor.predict(predictor.fastest(space))
        if fastest > settings.latency_ms:
            raise UserError(f"--latency {settings.latency_ms:g}ms: no architecture of {space.name} is predicted to fit on "
                            f"{predictor.key}; the fastest is predicted at {fastest:.2f} ms ({target.img_size}x{target.img_size}, "
                            f"batch {settings.latency_batch})")


# ------------------------------------------------------------------ the whole run
def search(settings: SearchSettings, run_dir: Path, predictor=None) -> dict:
    """Supernet (given or trained), trials, result files; the summary of the results."""
    from nas.searching.driver import prepare_supernet, run_trials
    from nas.searching.results import write_results

    t0 = time.time()
    supernet_state, bundle, ckpt_path = prepare_supernet(settings, run_dir)
    runs.write_config(settings, run_dir, {"supernet": str(ckpt_path), "supernet_sha256": runs.sha256(ckpt_path),
                                          "proxy_scale": supernet_state["scale"], "data": bundle.describe(),
                                          "latency_predictor": None if predictor is None else
                                          {"key": predictor.key, "slope": predictor.slope, "intercept_ms": predictor.intercept}})
    print(f"searching {settings.space}: {settings.trials} trials, sampler {settings.sampler}, objectives {','.join(settings.objectives)}, "
          f"limits {', '.join(f'{k} <= {v:g}' for k, v in settings.limits().items()) or 'none'}", flush=True)
    run_trials(settings, run_dir, supernet_state, bundle, predictor)
    return write_results(settings, run_dir, time.time() - t0)


@run_cli
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume:
        run_dir = Path(args.resume)
        settings = runs.read_settings(run_dir)
        load_space_file(settings.space_file, settings.space_file_sha256)
        predictor = latency_predictor(settings)
        print(f"resuming {run_dir}", flush=True)
    else:
        settings = settings_from_args(args)
        predictor = latency_predictor(settings)
        check_reachable(settings, predictor)
        run_dir = Path(args.out) if args.out else runs.new_run_dir(settings.space)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"--out {run_dir} already exists and is not empty; use --resume {run_dir} to continue it")
        settings.run_dir = str(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_config(settings, run_dir, {"status": "started"})
    summary = search(settings, run_dir, predictor)
    best = summary.get("best")
    if best:
        print(f"best feasible architecture: acc {best['accuracy']:.3f}, {best['macs'] / 1e9:.2f}G MACs, {best['params'] / 1e6:.1f}M params "
              f"-> {run_dir / 'best.json'} (copied to results/best.json)")
    else:
        print("no feasible architecture was evaluated; see report.md")
    print(f"results: {run_dir}/ (trials.csv, pareto.csv, best.json, report.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
