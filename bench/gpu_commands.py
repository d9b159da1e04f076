"""bench/gpu_check.py's JSON report and its steps that run as commands: `pytest -m cuda` and a short search.

Each command runs in its own session for at most its time box, its output in a file (a process it starts may
outlive it), and is ended with everything it started when the box is over.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Report:
    """The JSON file: environment, then per step its status, seconds, box and figures; rewritten on every change."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data
        self.write()

    def step(self, name: str) -> dict:
        return self.data["steps"].setdefault(name, {"status": "pending", "figures": {}})

    def write(self) -> None:
        from search_spaces.atomic import write_text_atomic

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps(self.data, indent=1, default=str) + "\n")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def _finish(report: Report, name: str, status: str, seconds: float, error: str | None = None) -> None:
    entry = report.step(name)
    entry.update(status=status, seconds=round(seconds, 1))
    if error:
        entry["error"] = error
    report.write()
    figures = "; ".join(f"{k} {_short(v)}" for k, v in entry["figures"].items() if not k.startswith("sandwich_"))
    print(f"== {name}: {status} in {seconds:.0f}s{': ' + error if error else ''}{' | ' + figures if figures else ''}", flush=True)


def _kill(proc: subprocess.Popen) -> None:
    """End a step's process and everything it started (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PYTHONUNBUFFERED": "1"}


class Command:
    """A command started in its own session, its output going to a file (a process it starts may outlive it)."""

    def __init__(self, cmd: list[str], cwd: Path):
        self.log, self.started = cwd / f"{Path(cmd[2]).name}-{time.time_ns()}.log", time.time()
        with self.log.open("w") as f:
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=f, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def wait(self, box: float) -> tuple[int | None, str]:
        """(its exit status, or None when it was ended at `box` seconds after its start; its output)."""
        try:
            code = self.proc.wait(timeout=max(0.0, self.started + box - time.time()))
        except subprocess.TimeoutExpired:
            _kill(self.proc)
            code = None
        return code, self.log.read_text(errors="replace")


def pytest_cuda(report: Report, dry: bool, box: float, tmp: Path) -> None:
    """`pytest -m cuda` on the test files that mark CUDA tests; counts from its JUnit XML. On the CPU every one of
    them must be collected and skipped."""
    t0 = time.time()
    files = sorted(str(p) for p in (ROOT / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    figures = report.step("pytest_cuda")["figures"]
    figures["files"] = [Path(f).name for f in files]
    xml = tmp / "junit.xml"
    code, out = Command([sys.executable, "-m", "pytest", "-m", "cuda", *files, "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                         f"--junitxml={xml}"], tmp).wait(box)
    if code is None:
        return _finish(report, "pytest_cuda", "timed out", time.time() - t0, f"ended: over its {box:.0f} s box")
    if not xml.exists():
        return _finish(report, "pytest_cuda", "failed", time.time() - t0, f"exit {code}: {out.strip()[-300:]}")
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    figures.update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"])
    figures["not_passed"] = [f"{case.get('name')}: {child.tag}: {(child.get('message') or '')[:150]}"
                             for case in suite.iter("testcase") for child in case if child.tag in ("failure", "error", "skipped")]
    bad = counts["failures"] + counts["errors"]
    if dry:  # no CUDA: the marked tests are collected and every one skips
        ok = counts["tests"] > 0 and counts["skipped"] == counts["tests"]
    else:
        ok = counts["tests"] > 0 and not bad
    _finish(report, "pytest_cuda", "ok" if ok else "failed", time.time() - t0,
            None if ok else f"{counts['tests']} tests: {bad} failed or errors, {counts['skipped']} skipped")


def start_search(dry: bool, tmp: Path) -> Command | str:
    """A search on digits (--epochs 1, stopped at its box); in the dry run 2 trials of the tests' tiny space on toy
    images. A string says why none can run."""
    missing = [m for m in ("ray", "optuna") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not importable (carry their wheels: docs/gpu.md)"
    if dry:
        args = ["--space-file", str(ROOT / "tests" / "tiny_space.py"), "--space", "tiny_ext", "--flops", "2.3G", "--trials", "2",
                "--data", f"npz:{toy_npz(tmp / 'toy.npz')}"]
    else:
        args = ["--space", "psvit_ext", "--flops", "4.5G", "--trials", "1000", "--data", "digits"]
    return Command([sys.executable, "-m", "nas.search", *args, "--epochs", "1", "--out", str(tmp / "search")], tmp)


def finish_search(report: Report, search: Command | str, box: float) -> None:
    """Trials per minute as the search prints them, the GPU share per trial it chose (config.json's devices)."""
    if isinstance(search, str):
        return _finish(report, "search", "skipped", 0.0, search)
    code, out = search.wait(box)
    seconds = time.time() - search.started
    figures = report.step("search")["figures"]
    rates = re.findall(r"^trial (\d+)/\d+: .*\| ([\d.]+) trials/min$", out, re.M)
    if rates:
        figures.update(trials=int(rates[-1][0]), trials_per_min=float(rates[-1][1]))
    config = search.log.parent / "search" / "config.json"
    if config.exists():
        devices = json.loads(config.read_text()).get("devices", {})
        figures.update({k: devices[k] for k in ("trials_on", "gpus_per_trial", "trials_per_gpu", "peak_bytes", "free_bytes") if k in devices})
    figures["devices_line"] = next((line[:200] for line in out.splitlines() if line.startswith("devices:")), None)
    if code:
        return _finish(report, "search", "failed", seconds, f"exit {code}: {(out.strip().splitlines() or [''])[-1][:300]}")
    if code is None and rates:
        report.step("search")["stopped"] = f"at its {box:.0f} s box, as planned"
    _finish(report, "search", "ok" if rates else "failed", seconds,
            None if rates else "no trial finished" + ("" if code == 0 else f" within its {box:.0f} s box"))


def toy_npz(path: Path, n_train: int = 64, n_test: int = 16, side: int = 16) -> Path:
    """Toy images for the dry run's search: 3 classes told apart by their mean colour."""
    import numpy as np

    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(80, 30, (n, side, side, 3))
        x[np.arange(n), :, :, y] += 90
        return x.clip(0, 255).astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


