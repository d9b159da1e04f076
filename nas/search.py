"""python -m nas.search --space psvit_ext --flops 4.5G [--params 22M] [--latency 8ms [--device cpu|cuda]]
    [--sampler local|tpe|nsga2|random|gp|qmc] [--objectives acc,flops|acc,latency] [--trials N] [--seed S]
    [--data ...] [--supernet results/<run>/supernet.pt] [--address auto] [--gpus-per-trial 0.25]
python -m nas.search --resume results/<run> [--repair]

Trains the supernet if none is given, then searches it: Ray Tune runs the trials, an Optuna sampler
proposes them (define-by-run over the space's choices). Limits are checked with the analytic cost
model (MACs, params) and the device's latency predictor at the target scale before a trial touches
the supernet; the sampler learns the boundary through Optuna's constraints. A trial evaluates one architecture with inherited weights (BatchNorm
recalibrated) on the validation split. Results go to results/<run>/.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from search_spaces import get_space, load_space_file
from supernet.blocks.registry import has_modules

from nas import runs
from nas.cli import Parser, run_cli, seed_type
from nas.errors import UserError
from nas.measure.latency import resolve_device
from nas.runs import MAX_SELECT, MAX_TRIALS, OBJECTIVES, SAMPLERS, SearchSettings
from nas.searching.devices import devices_line
from nas.searching.driver import check_inputs
from nas.searching.evaluators import make_evaluator, parse_evaluator
from nas.searching.limits import check_latency_reachable, check_reachable
from nas.searching.repair import repair_run
from nas.training.sampling import STRATEGIES
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
    p.add_argument("--seed", type=seed_type(), default=d.seed)
    p.add_argument("--data", default=d.data, help="digits (default), npz:PATH, folder:PATH or a timm data set name")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="training images held out for scoring trials (default 0.1)")
    p.add_argument("--scale", default=d.scale, help="scale the supernet is trained at: proxy (default) or target")
    p.add_argument("--supernet", default=None, help="a trained supernet.pt (default: train one in the run folder)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="supernet training epochs when none is given")
    p.add_argument("--merge-fit-epochs", type=int, default=d.merge_fit_epochs,
                   help=f"supernet epochs after --epochs that fit only the merges its largest path does not run (default {d.merge_fit_epochs}; 0: none)")
    p.add_argument("--strategy", default=d.strategy, help=f"supernet path sampling: {', '.join(STRATEGIES)}")
    p.add_argument("--student-labels", type=float, default=d.student_labels,
                   help="share of label cross-entropy in a student path's loss, the rest distillation (default 0.5)")
    p.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto); default: a private local instance")
    p.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial)
    p.add_argument("--gpus-per-trial", type=float, default=d.gpus_per_trial,
                   help="GPU share of a trial (default: where CUDA is visible, as many trials per GPU as its free memory holds; else 0)")
    p.add_argument("--concurrency", type=int, default=0, help="trials at once (default: what the resources allow)")
    p.add_argument("--out", default=None, help="run folder (default results/<space>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the search in this run folder")
    p.add_argument("--repair", action="store_true", help="with --resume: rebuild a damaged journal from what is on disk, then resume")
    p.add_argument("--space-file", default=None, help="a Python file that registers extra spaces")
    p.add_argument("--evaluator", default=d.evaluator,
                   help="what scores an architecture: supernet (default: inherited accuracy) or table:PATH (a benchmark table, e.g. "
                        "NAS-Bench-201's with --space nb201; --device then names its latency column lat_<device>)")
    p.add_argument("--score", default=d.score, help=f"with a table evaluator: the column scored (default {d.score})")
    p.add_argument("--no-references", action="store_true", help="do not make the space's reference members the first trials")
    s = p.add_argument_group("selection stage (after the search, or on a finished run with --resume)")
    s.add_argument("--select", type=int, default=None, metavar="K",
                   help="train the K best distinct feasible architectures and the feasible references alone, epochs allocated by "
                        "successive halving (rungs decided on all candidates alike), and pick the best on validation: selection.csv, selected.json")
    s.add_argument("--select-epochs", type=int, default=d.select_epochs, help=f"the last rung's epochs (default {d.select_epochs})")
    s.add_argument("--select-seeds", type=int, default=d.select_seeds, help=f"seeds per candidate, at least 2 (default {d.select_seeds})")
    s.add_argument("--select-final-seeds", type=int, default=None,
                   help=f"seeds of the candidates at the last rung, where the choice and the verdict are made: at least --select-seeds "
                        f"(default {d.select_final_seeds}, or --select-seeds where more)")
    return p


def check_selection_args(args) -> None:
    if args.select is not None and not 1 <= args.select <= MAX_SELECT:
        raise UserError(f"--select must be at least 1 (and at most {MAX_SELECT}): the number of searched architectures "
                        f"trained alone, got {args.select}")
    if not 1 <= args.select_epochs <= 100_000:
        raise UserError(f"--select-epochs must be at least 1, got {args.select_epochs}")
    if not 2 <= args.select_seeds <= 100:
        raise UserError(f"--select-seeds must be from 2 to 100 (a comparison over seeds needs two), got {args.select_seeds}")
    if args.select_final_seeds is None:
        args.select_final_seeds = max(SearchSettings.select_final_seeds, args.select_seeds)
    if not args.select_seeds <= args.select_final_seeds <= 100:
        raise UserError(f"--select-final-seeds must be from --select-seeds ({args.select_seeds}) to 100, got {args.select_final_seeds}")


def settings_from_args(args) -> SearchSettings:
    space_file_sha256 = load_space_file(args.space_file)
    space = get_space(args.space)
    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler {args.sampler!r} is not known; allowed: {', '.join(SAMPLERS)}")
    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    if args.trials > MAX_TRIALS:
        raise UserError(f"--trials {args.trials}: a search takes at most {MAX_TRIALS:,} trials")
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    if not objectives or objectives[0] != "acc" or any(o not in OBJECTIVES for o in objectives) or len(set(objectives)) != len(objectives):
        raise UserError(f"--objectives {args.objectives!r}: start with acc, then any of flops, params, latency (e.g. acc,flops)")
    flops = parse_count(args.flops, "--flops", "4.5G") if args.flops is not None else None
    params = parse_count(args.params, "--params", "22M") if args.params is not None else None
    latency = parse_latency_ms(args.latency) if args.latency is not None else None
    if args.latency_batch < 1 or args.latency_threads < 0:
        raise UserError("--latency-batch must be at least 1 and --latency-threads at least 0")
    evaluator, _ = parse_evaluator(args.evaluator)
    if evaluator == "supernet":
        resolve_device(args.device)
        if not has_modules(space):
            raise UserError(f"--space {space.name} has no supernet (its operations have no modules); give --evaluator table:PATH, a "
                            "benchmark table of its architectures (e.g. ../shared/data/nb201/nb201_cifar10.csv for nb201)")
    elif args.supernet or args.select is not None:
        raise UserError(f"--evaluator {args.evaluator}: the table's score is final; --supernet and --select go with the supernet evaluator")
    check_selection_args(args)
    if args.scale not in ("proxy", "target"):
        raise UserError(f"--scale {args.scale!r} is not known; allowed: proxy, target")
    if not 0 < args.cpus_per_trial < math.inf or (args.gpus_per_trial is not None and not 0 <= args.gpus_per_trial < math.inf):
        raise UserError("--cpus-per-trial must be positive and --gpus-per-trial at least 0")
    if args.gpus_per_trial and not args.address and not torch.cuda.is_available():
        raise UserError(f"--gpus-per-trial {args.gpus_per_trial}: no GPU is visible here; leave it at 0 or join a cluster with --address")
    if args.supernet and not Path(args.supernet).is_file():
        raise UserError(f"--supernet {args.supernet}: file does not exist")
    if not 0 < args.val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    if not 1 <= args.epochs <= 100_000:
        raise UserError(f"--epochs must be at least 1 (and at most 100,000), got {args.epochs}")
    if not 0 <= args.merge_fit_epochs <= 100_000:
        raise UserError(f"--merge-fit-epochs must be between 0 and 100,000, got {args.merge_fit_epochs}")
    if args.concurrency < 0:
        raise UserError(f"--concurrency must be at least 0 (0: what the resources allow), got {args.concurrency}")
    if args.strategy not in STRATEGIES:
        raise UserError(f"--strategy {args.strategy!r} is not known; allowed: {', '.join(STRATEGIES)}")
    if not 0 <= args.student_labels <= 1:
        raise UserError(f"--student-labels must be between 0 and 1 (the labels' share of a student's loss), got {args.student_labels}")
    settings = SearchSettings(
        space=space.name, flops=flops, params=params, latency_ms=latency, sampler=args.sampler, objectives=objectives,
        trials=args.trials, seed=args.seed, data=args.data, val_fraction=args.val_fraction, scale=args.scale, supernet=args.supernet, epochs=args.epochs,
        merge_fit_epochs=args.merge_fit_epochs,
        strategy=args.strategy, student_labels=args.student_labels, address=args.address, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
        concurrency=args.concurrency, space_file=str(Path(args.space_file).resolve()) if args.space_file else None,
        space_file_sha256=space_file_sha256,
        device=args.device, latency_batch=args.latency_batch, latency_threads=args.latency_threads,
        evaluator=args.evaluator, score=args.score, references=not args.no_references, select=args.select or 0,
        select_epochs=args.select_epochs, select_seeds=args.select_seeds, select_final_seeds=args.select_final_seeds,
    )
    if settings.address:
        from nas.cluster import check_address

        check_address(settings.address)
    return settings


def latency_predictor(settings: SearchSettings):
    """The device's latency predictor for the space (built and cached on first use), or None if unused (no latency
    limit or objective, or a table that holds the latencies)."""
    if not settings.uses_latency or settings.evaluator != "supernet":
        return None
    from nas.measure.latency import load_predictor

    return load_predictor(get_space(settings.space), device=settings.device, batch_size=settings.latency_batch,
                          threads=settings.latency_threads or None)


# ------------------------------------------------------------------ the whole run
def search(settings: SearchSettings, run_dir: Path, evaluator, inputs=None) -> dict:
    """Supernet (given or trained; none for a table), trials, result files; the summary of the results.
    `inputs`: what check_inputs returned, when the caller checked them before creating the run folder."""
    from nas.cluster import start_ray
    from nas.searching.devices import plan_trial_devices
    from nas.searching.driver import prepare_supernet, run_trials
    from nas.searching.results import write_results

    t0 = time.time()
    ray = None
    if evaluator.kind == "supernet":
        bundle, given = inputs or check_inputs(settings)
        supernet_state, ckpt_path = prepare_supernet(settings, run_dir, bundle, given)
        ray = start_ray(settings.address)
        devices = plan_trial_devices(settings, supernet_state, bundle, ray.cluster_resources().get("GPU", 0))
        evaluator.attach(supernet_state, bundle, devices["gpus_per_trial"])
        predictor = evaluator.predictor
        extra = {"supernet": str(ckpt_path), "supernet_sha256": runs.sha256(ckpt_path), "proxy_scale": supernet_state["scale"],
                 "data": bundle.describe(), "latency_predictor": None if predictor is None else
                 {"key": predictor.key, "slope": predictor.slope, "intercept_ms": predictor.intercept}}
    else:
        devices = {"gpus_per_trial": 0.0, "given": False, "trials_on": "cpu"}
        extra = {}
    runs.write_config(settings, run_dir, {**extra, "evaluator": evaluator.describe(), "devices": devices})
    print(f"searching {settings.space}: {settings.trials} trials, sampler {settings.sampler}, objectives {','.join(settings.objectives)}, "
          f"limits {', '.join(f'{k} <= {v:g}' for k, v in settings.limits().items()) or 'none'}, evaluator {settings.evaluator}", flush=True)
    interrupted = run_trials(settings, run_dir, evaluator, devices["gpus_per_trial"])
    return {**write_results(settings, run_dir, time.time() - t0), "interrupted": interrupted}


def resume_settings(args, parser: Parser) -> tuple[SearchSettings, bool]:
    """The run's recorded settings, with --trials raised (and --select set) if given, and whether its search is finished.

    Only --trials (to extend the search) and --space-file (the run's own space file, checked against the
    sha256 it recorded) may accompany --resume; any other flag is refused rather than silently ignored.
    """
    run_dir = Path(args.resume)
    settings = runs.read_settings(run_dir)
    given = [a.option_strings[0] for a in parser._actions
             if a.dest not in ("help", "resume", "repair", "trials", "space_file", "select", "select_epochs", "select_seeds",
                           "select_final_seeds")
             and getattr(args, a.dest) != a.default]
    if given:
        raise UserError(f"--resume continues a run with the settings it recorded; {given[0]} cannot be changed "
                        "(allowed with --resume: --trials N to extend the search, --select K to choose among its best by training "
                        "them, --space-file for a run of a custom space)")
    check_selection_args(args)
    if args.select is not None:
        if parse_evaluator(settings.evaluator)[0] != "supernet":
            raise UserError(f"--select: run {run_dir} was scored by {settings.evaluator}; the selection trains the supernet's candidates")
        given = (args.select, args.select_epochs, args.select_seeds, args.select_final_seeds)
        recorded = (settings.select, settings.select_epochs, settings.select_seeds, settings.select_final_seeds)
        if (run_dir / "select").is_dir() and settings.select and given != recorded:
            raise UserError(f"--select: run {run_dir} has a selection started with --select {recorded[0]} --select-epochs {recorded[1]} "
                            f"--select-seeds {recorded[2]} --select-final-seeds {recorded[3]}; resume it with those "
                            f"(or move {run_dir / 'select'} away to start another)")
        settings.select, settings.select_epochs, settings.select_seeds, settings.select_final_seeds = given
    if settings.space_file:
        runs.load_run_space_file(args.space_file, asdict(settings), run_dir, "--resume")
    elif args.space_file:
        raise UserError(f"--space-file: run {run_dir} searched the built-in space {settings.space!r} and needs no space file")
    if args.trials != parser.get_default("trials"):
        if args.trials < settings.trials:
            raise UserError(f"--trials {args.trials}: run {run_dir} already asks for {settings.trials}; give more to extend it")
        if args.trials > MAX_TRIALS:
            raise UserError(f"--trials {args.trials}: a search takes at most {MAX_TRIALS:,} trials")
        settings.trials = args.trials
    get_space(settings.space)
    settings.run_dir = str(run_dir)
    if args.repair:
        repair_run(settings, run_dir, make_evaluator(settings, latency_predictor(settings)))
    from nas.searching.driver import finished_trials

    done = len(finished_trials(run_dir))
    if done >= settings.trials and (run_dir / "trials.csv").is_file():
        if args.select is None:
            print(f"{run_dir}: nothing to add: {done} of {settings.trials} trials are finished and its results are written; "
                  f"give --trials N (more than {settings.trials}) to extend it, or --select K to train its best")
        return settings, True
    return settings, False


@run_cli
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repair and not args.resume:
        raise UserError("--repair goes with --resume RUN: it repairs that run's journal, then resumes it")
    if args.resume:
        settings, finished = resume_settings(args, parser)
        run_dir = Path(settings.run_dir)
        if finished:
            return select(settings, run_dir) if args.select is not None else 0
        evaluator = make_evaluator(settings)
        print(devices_line(settings), flush=True)
        evaluator.predictor = latency_predictor(settings)
        inputs = None
        print(f"resuming {run_dir}", flush=True)
    else:
        settings = settings_from_args(args)
        run_dir = Path(args.out) if args.out else runs.new_run_dir(settings.space)
        runs.check_new_run_dir(run_dir)
        settings.run_dir = str(run_dir)
        evaluator = make_evaluator(settings)  # a table is read and checked here
        check_reachable(settings, evaluator)
        inputs = check_inputs(settings) if evaluator.kind == "supernet" else None
        print(devices_line(settings), flush=True)  # the first line of a search whose input was accepted
        evaluator.predictor = latency_predictor(settings)
        check_latency_reachable(settings, evaluator)
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_config(settings, run_dir, {"status": "started"})
    summary = search(settings, run_dir, evaluator, inputs)
    if summary["interrupted"]:  # Ctrl-C: Ray Tune ended the trials in flight; what was done is kept
        print(summary["interrupted"], file=sys.stderr, flush=True)
        return 130
    best = summary.get("best")
    if best:
        print(f"best feasible architecture: acc {best['accuracy']:.3f}, {best['macs'] / 1e9:.2f}G MACs, {best['params'] / 1e6:.1f}M params "
              f"-> {run_dir / 'best.json'} (copied to results/best.json)")
    else:
        print("no feasible architecture was evaluated; see report.md")
    print(*summary.get("transfer", []), sep="\n", end="\n" if summary.get("transfer") else "")
    print(f"results: {run_dir}/ (trials.csv, pareto.csv, best.json, report.md)")
    if settings.select:
        return select(settings, run_dir)
    return 0


def select(settings: SearchSettings, run_dir: Path) -> int:
    """The selection stage on a finished search: candidates trained alone under successive halving, the search's best against the references."""
    from nas.reporting.document import write_report
    from nas.searching.selection import run_selection, sentence

    runs.write_config(settings, run_dir, _config_extra(run_dir))  # the selection's settings, for a later --resume
    result = run_selection(settings, run_dir)
    write_report(run_dir)
    selected = result["selected"]
    print(f"selected {selected['label']}: validation {selected['accuracy']:.4f} ({selected['split']}) -> {run_dir / 'selected.json'}")
    print(sentence(selected, result["comparison"]))
    return 0


def _config_extra(run_dir: Path) -> dict:
    """What config.json holds besides the settings, to be written back with the settings the selection adds."""
    config = runs.read_config(run_dir)
    return {k: v for k, v in config.items() if k not in ("kind", "settings", "target_scale", "versions")}


if __name__ == "__main__":
    sys.exit(main())
