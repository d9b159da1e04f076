"""The prepared GPU run: every GPU figure the project needs, in one command that ends within 8 minutes.

    python bench/gpu_check.py [--out FILE] [--budget 480] [--only STEP,...]    # on a CUDA machine
    python bench/gpu_check.py --dry-run                                          # the same steps on the CPU, tiny sizes

Steps, each in a time box (seconds on the GPU; a step over its box is ended and the next one runs):

  supernet_step  the supernet's sandwich step against the three extracted paths' step, 224x224, target widths,
                 batch 64, bfloat16 autocast; channels-last and contiguous inputs both timed (first sandwich)
  compile        torch.compile of the largest path's step (extracted, and through the supernet): compile time,
                 compiled against eager step time
  latency_b1     the latency lookup table against measured latency of 20 held-out architectures (Spearman, MAPE),
  latency_b64    at batch 1 and at batch 64 (CUDA events)
  retrain        retraining images/s of psvit:deit_s against timm's deit_small_patch16_224, batch 128
  memory         peak GPU memory of a supernet sandwich step (and a largest-path step) at batch 128
  pytest_cuda    `pytest -m cuda` on the test files that have CUDA tests
  search         only where ray and optuna import: a search on digits stopped after 2 minutes; trials per
                 minute, the GPU share per trial

Each step prints its figures as it goes; all of them, with the GPU, driver, torch and CUDA versions, are written
to one JSON file, rewritten after every figure: --out, else $OUT/gpu_check.json where $OUT is set, else
results/gpu-check/<gpu|dry-run>.json. The measuring steps run in a worker process (restarted after a step is ended
at its box); Ray, Optuna and thop are not needed for any step but the search. `--dry-run` runs every step on the
CPU at tiny sizes in seconds (CI runs it: tests/test_gpu_check.py), so the script cannot rot unnoticed.
Exit status 0 when every step that ran passed, 1 when one failed or was ended at its box, 2 on bad input.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # on the GPU machine the project is a copied tree, not installed

from gpu_commands import Report, _env, _finish, _kill, finish_search, pytest_cuda, start_search  # noqa: E402
from nas.cli import Parser, run_cli  # noqa: E402
from nas.errors import UserError  # noqa: E402

# name: (time box on the GPU, time box in the dry run), in the order run; the GPU boxes sum to 470 s
BUDGETS = {"supernet_step": (60, 40), "compile": (70, 40), "latency_b1": (55, 40), "latency_b64": (60, 40), "retrain": (45, 40),
           "memory": (20, 40), "pytest_cuda": (40, 60), "search": (120, 60)}
WORKER_STEPS = ("supernet_step", "compile", "latency_b1", "latency_b64", "retrain", "memory")
START_UP_S = 60  # a worker's imports (and CUDA's start) before its first step; counted in that step's box
GOALS = {("supernet_step", "ratio"): ("<=", 1.10), ("latency_b1", "spearman"): (">=", 0.95), ("latency_b1", "mape"): ("<=", 0.10),
         ("latency_b64", "spearman"): (">=", 0.95), ("latency_b64", "mape"): ("<=", 0.10), ("retrain", "ratio"): (">=", 0.80)}


# ------------------------------------------------------------------ the measuring steps, in a worker process
def worker(steps: list[str], part: Path, dry: bool) -> int:
    """Run `steps` in order, appending one JSON line per event to `part`: start, each figure, end."""
    import torch

    import gpu_steps

    device = torch.device("cpu" if dry else "cuda")
    sizes = gpu_steps.DRY if dry else gpu_steps.GPU
    with part.open("a") as log:
        def event(**kw):
            log.write(json.dumps(kw, default=str) + "\n")
            log.flush()

        for name in steps:
            event(step=name, event="start", time=time.time())
            try:
                gpu_steps.STEPS[name](sizes, device, lambda key, value, name=name: event(step=name, figure=key, value=value))
                event(step=name, event="end", status="ok", time=time.time())
            except Exception as e:  # a failed step is recorded and the next one runs
                event(step=name, event="end", status="failed", error=f"{type(e).__name__}: {str(e)[:300]}", time=time.time())
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return 0


def run_worker_steps(steps: list[str], report: Report, dry: bool, deadline: float) -> None:
    """The worker runs the steps; a step over its box (or past the deadline) is ended with the worker, and a new
    worker goes on with the next one."""
    pending = list(steps)
    while pending:
        part = Path(tempfile.mkstemp(prefix="gpu-check-", suffix=".jsonl")[1])
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", ",".join(pending), "--part", str(part)]
        proc = subprocess.Popen(cmd + (["--dry-run"] if dry else []), env=_env(), start_new_session=True)
        current, started, offset = None, time.time(), 0
        limit = min(deadline, started + BUDGETS[pending[0]][dry] + START_UP_S)  # the worker's start-up counts in its first box
        try:
            while True:
                running = proc.poll() is None
                with part.open() as f:
                    f.seek(offset)
                    lines = f.read()
                complete = lines[:lines.rfind("\n") + 1]
                offset += len(complete)
                for line in complete.splitlines():
                    e = json.loads(line)
                    if e.get("event") == "start":
                        current, started = e["step"], e["time"]
                        report.step(current)["status"] = "running"
                        limit = min(deadline, started + BUDGETS[current][dry])
                    elif e.get("event") == "end":
                        _finish(report, e["step"], e["status"], e["time"] - started, e.get("error"))
                        pending.remove(e["step"])
                        current, limit = None, min(deadline, e["time"] + START_UP_S)  # until the next start
                    else:
                        report.step(e["step"])["figures"][e["figure"]] = e["value"]
                        report.write()
                if not running:
                    break
                if time.time() > limit:
                    _kill(proc)
                    name = current or pending[0]
                    why = "the run's deadline (--budget) passed" if time.time() >= deadline else f"over its {BUDGETS[name][dry]} s box"
                    _finish(report, name, "timed out", time.time() - started, f"ended: {why}")
                    pending.remove(name)
                    break
                time.sleep(0.2)
            if not running and pending:  # the worker died inside a step (a crash, not an exception) or before its first
                name = current or pending[0]
                _finish(report, name, "failed", time.time() - started, f"the worker process exited with {proc.returncode} (see its output)")
                pending.remove(name)
        finally:
            if proc.poll() is None:
                _kill(proc)
            part.unlink(missing_ok=True)
        if time.time() >= deadline:
            for name in pending:
                _finish(report, name, "skipped", 0.0, "no time left before the 8-minute deadline")
            return


# ------------------------------------------------------------------ the driver
def environment(dry: bool) -> dict:
    import torch

    env = {"mode": "dry-run" if dry else "gpu", "started": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
           "torch": torch.__version__, "cuda": torch.version.cuda, "host": platform.node()}
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        if q.returncode == 0 and q.stdout.strip():
            env["gpu"], env["driver"], env["gpu_memory"] = [s.strip() for s in q.stdout.strip().splitlines()[0].split(",")]
    for m in ("timm", "ray", "optuna"):
        try:
            env[m] = importlib.metadata.version(m)
        except importlib.metadata.PackageNotFoundError:
            env[m] = None
    return env


def _boxed(report: Report, name: str, dry: bool, deadline: float, run) -> None:
    """Run a command step with its box, cut to what is left before the deadline."""
    box = min(BUDGETS[name][dry], deadline - time.time())
    if box <= 1:
        return _finish(report, name, "skipped", 0.0, "no time left before the deadline")
    run(box)


def judge(report: Report) -> None:
    """The issue's goals, from the figures of this one run (GPU runs only)."""
    goals = {}
    for (step, key), (op, bound) in GOALS.items():
        value = report.data["steps"].get(step, {}).get("figures", {}).get(key)
        if isinstance(value, (int, float)):
            goals[f"{step}.{key}"] = {"value": value, "goal": f"{op} {bound}", "met": value <= bound if op == "<=" else value >= bound}
    report.data["goals"] = goals
    report.write()
    for name, g in goals.items():
        print(f"goal {name} {g['goal']}: {g['value']:.3f} {'met' if g['met'] else 'NOT met'}")


@run_cli
def main(argv=None) -> int:
    p = Parser(prog="python bench/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes (seconds), as CI runs it")
    p.add_argument("--out", default=None, help="the JSON file (default $OUT/gpu_check.json, else results/gpu-check/)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run (default 480: 8 minutes)")
    p.add_argument("--only", default=None, help=f"comma-separated steps, from: {', '.join(BUDGETS)}")
    p.add_argument("--box", action="append", default=[], metavar="STEP=SECONDS", help="another time box for a step (repeatable)")
    p.add_argument("--worker", default=None, help=argparse_suppress())
    p.add_argument("--part", default=None, help=argparse_suppress())
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker.split(","), Path(args.part), args.dry_run)
    steps = [s.strip() for s in args.only.split(",")] if args.only else list(BUDGETS)
    unknown = [s for s in steps if s not in BUDGETS]
    if unknown:
        raise UserError(f"--only: unknown step {unknown[0]!r}; steps: {', '.join(BUDGETS)}")
    for box in args.box:
        name, _, seconds = box.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = 0.0
        if name not in BUDGETS or not value > 0:
            raise UserError(f"--box {box!r}: expected STEP=SECONDS, a positive number of seconds, STEP one of {', '.join(BUDGETS)}")
        BUDGETS[name] = (value, value)
    if args.budget <= 0:
        raise UserError(f"--budget must be positive, got {args.budget:g}")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise UserError("no CUDA device is visible here; on a CPU run `python bench/gpu_check.py --dry-run` (tiny sizes)")
    default = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else \
        ROOT / "results" / "gpu-check" / ("dry-run.json" if args.dry_run else "gpu.json")
    report = Report(Path(args.out) if args.out else default, {**environment(args.dry_run), "budget_s": args.budget, "steps": {}})
    print(f"gpu_check ({report.data['mode']}): {report.data.get('gpu', 'cpu')}, torch {report.data['torch']}; "
          f"steps {', '.join(steps)}; figures in {report.path}", flush=True)
    if args.dry_run:  # the worker's steps and the search run side by side: one thread each, or 2 cores oversubscribe
        os.environ["OMP_NUM_THREADS"] = "1"
    t0 = time.time()
    deadline = t0 + args.budget
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        # the dry run's search runs beside the other steps (on the CPU their figures are no timings to keep apart)
        search = start_search(True, tmp) if args.dry_run and "search" in steps else None
        run_worker_steps([s for s in steps if s in WORKER_STEPS], report, args.dry_run, deadline)
        if "pytest_cuda" in steps:
            _boxed(report, "pytest_cuda", args.dry_run, deadline, lambda box: pytest_cuda(report, args.dry_run, box, tmp))
        if "search" in steps:
            search = search or start_search(False, tmp)
            _boxed(report, "search", args.dry_run, deadline, lambda box: finish_search(report, search, box))
    report.data["wall_s"] = round(time.time() - t0, 1)
    if not args.dry_run:
        judge(report)
    report.write()
    failed = [n for n, s in report.data["steps"].items() if s["status"] in ("failed", "timed out")]
    print(f"gpu_check: {len(steps) - len(failed)}/{len(steps)} steps passed or skipped in {report.data['wall_s']:.0f}s"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}; {report.path}")
    return 1 if failed else 0


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
