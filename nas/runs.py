"""The run store: a search run's folder and everything read from or written to it.

results/<run>/ holds config.json (the settings, scales, versions, data, supernet hash), the Optuna
journal (the sampler's history; `--resume` reloads it), evaluations.jsonl (the driver's durable record
of each trial result it received), supernet.pt and the result tables. Every command that reads a run
reads it through this module; a run folder is data: nothing in it is executed.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from search_spaces import file_sha256, get_space, load_space_file
from search_spaces.atomic import write_text_atomic

from nas.errors import UserError
from nas.journal import EVALUATIONS, JOURNAL, append_evaluation, journal, read_evaluations, study_trials  # noqa: F401 (the run store's)

RUN_KIND = "psvit-nas search"
CONFIG = "config.json"
AUDIT = "audit"  # nas.audit's folder in a run: audit.csv, audit.json, audit.png, section.md (appended to report.md)
RESULTS_ROOT = Path("results")
SAMPLERS = ("tpe", "local", "evolution", "nsga2", "random", "gp", "qmc")
OBJECTIVES = {"acc": ("acc", "max"), "flops": ("macs", "min"), "params": ("params", "min"), "latency": ("latency_ms", "min")}
SCALES = ("proxy", "target")
MAX_TRIALS = 100_000
MAX_SELECT = 1000  # Optuna's samplers and the journal slow down long before; NAS-Bench-201 has 15,625 cells


@dataclass
class SearchSettings:
    space: str = "psvit_ext"
    flops: float | None = None  # MAC limit at the target scale
    params: float | None = None
    latency_ms: float | None = None
    sampler: str = "local"  # local search: lowest regret over 24 NAS-Bench-201 tasks (docs/benchmarks.md, issue 33)
    objectives: tuple[str, ...] = ("acc", "flops")
    trials: int = 100
    seed: int = 0
    data: str = "digits"
    val_fraction: float = 0.1  # of the training images, held out as the validation split trials are scored on
    scale: str = "proxy"
    supernet: str | None = None
    epochs: int = 6  # the supernet's (TrainConfig's default)
    merge_fit_epochs: int = 3  # the supernet's merge fitting after its epochs: worst merge swap 51% -> 16% (0 in a run made before it)
    strategy: str = "sandwich"
    student_labels: float = 0.5  # share of label cross-entropy in a student path's loss (teacher strategies)
    calib_batches: int = 10
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: a share of a local GPU chosen from its free memory, else 0 (CPU)
    concurrency: int = 0  # 0: as many as the resources allow
    run_dir: str = ""
    space_file: str | None = None
    space_file_sha256: str | None = None
    device: str = "auto"  # where latency is measured and predicted
    latency_batch: int = 1
    latency_threads: int = 0  # 0: torch's default
    evaluator: str = "supernet"  # what scores an architecture: supernet (inherited accuracy) or table:PATH
    score: str = "cifar10_test_acc"  # a table evaluator's score column
    references: bool = True  # the space's reference members within the limits are the first trials
    select: int = 0  # the selection stage: the K best distinct architectures (and the references) trained alone; 0: none
    select_epochs: int = 10  # the selection's longest training (its last rung)
    select_seeds: int = 3  # seeds each candidate is trained with, in lockstep, at every rung but the last
    select_final_seeds: int = 8  # seeds at the last rung, where the choice and the verdict are made: a reference 2 points
    #                              ahead is called lost in 87% of simulated selections (6: 79%, 3: 50%; bench/selection_sim.py)

    @property
    def uses_latency(self) -> bool:
        return self.latency_ms is not None or "latency" in self.objectives

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in (("macs", self.flops), ("params", self.params), ("latency_ms", self.latency_ms)) if v is not None}

    def cost_column(self) -> str:
        """The trials column the Pareto front is drawn against: the second objective's, else MACs."""
        return OBJECTIVES[self.objectives[1]][0] if len(self.objectives) > 1 else "macs"


# What each stored setting must be: (accepted types, check, what is allowed).
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_RULES = {
    "space": (lambda v: isinstance(v, str) and v != "", "a space name"),
    "flops": (lambda v: v is None or (_number(v) and v > 0), "null or a positive number of MACs"),
    "params": (lambda v: v is None or (_number(v) and v > 0), "null or a positive number of parameters"),
    "latency_ms": (lambda v: v is None or (_number(v) and v > 0), "null or a positive number of milliseconds"),
    "sampler": (lambda v: v in SAMPLERS, ", ".join(SAMPLERS)),
    "objectives": (lambda v: isinstance(v, (list, tuple)) and len(v) >= 1 and v[0] == "acc" and len(set(v)) == len(v)
                   and all(o in OBJECTIVES for o in v), "a list starting with acc, then any of flops, params, latency"),
    "trials": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "seed": (_integer, "an integer"),
    "data": (lambda v: isinstance(v, str) and v != "", "a data spec (digits, npz:PATH, folder:PATH, a timm name)"),
    "val_fraction": (lambda v: _number(v) and 0 < v < 1, "a number between 0 and 1"),
    "scale": (lambda v: v in SCALES, ", ".join(SCALES)),
    "supernet": (lambda v: v is None or isinstance(v, str), "null or a checkpoint path"),
    "epochs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "merge_fit_epochs": (lambda v: _integer(v) and 0 <= v <= 100_000, "an integer from 0 to 100,000"),
    "strategy": (lambda v: isinstance(v, str), "a path-sampling strategy name"),
    "student_labels": (lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "calib_batches": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "address": (lambda v: v is None or isinstance(v, str), "null or a Ray address"),
    "cpus_per_trial": (lambda v: _number(v) and v > 0, "a positive number"),
    "gpus_per_trial": (lambda v: v is None or (_number(v) and v >= 0), "null (chosen from free GPU memory) or a number >= 0"),
    "concurrency": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "run_dir": (lambda v: isinstance(v, str), "a folder path"),
    "space_file": (lambda v: v is None or isinstance(v, str), "null or a file path"),
    "space_file_sha256": (lambda v: v is None or (isinstance(v, str) and len(v) == 64), "null or a sha256 hex digest"),
    "device": (lambda v: isinstance(v, str), "auto, cpu, cuda or cuda:N"),
    "latency_batch": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "latency_threads": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "evaluator": (lambda v: isinstance(v, str) and (v == "supernet" or v.startswith("table:")), "supernet or table:PATH"),
    "score": (lambda v: isinstance(v, str) and v != "", "a column name"),
    "references": (lambda v: isinstance(v, bool), "true or false"),
    "select": (lambda v: _integer(v) and 0 <= v <= MAX_SELECT, f"an integer from 0 to {MAX_SELECT}"),
    "select_epochs": (lambda v: _integer(v) and 1 <= v <= 100_000, "an integer >= 1"),
    "select_seeds": (lambda v: _integer(v) and 2 <= v <= 100, "an integer from 2 to 100"),
    "select_final_seeds": (lambda v: _integer(v) and 2 <= v <= 100, "an integer from 2 to 100"),
}


def settings_from_dict(values, where: str) -> SearchSettings:
    """SearchSettings from a config.json's `settings`, every field checked; a UserError names the first bad one."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: 'settings' must be an object; runs are the folders nas.search writes")
    names = {f.name for f in fields(SearchSettings)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{where}: settings.{unknown[0]} is not a search setting; known: {', '.join(sorted(names))}")
    for name, value in values.items():
        ok, allowed = _RULES[name]
        if not ok(value):
            raise UserError(f"{where}: settings.{name} is {json.dumps(value)[:60]}; allowed: {allowed}")
    for name in ("space", "objectives", "trials"):
        if name not in values:
            raise UserError(f"{where}: settings.{name} is missing; runs are the folders nas.search writes")
    values = {"merge_fit_epochs": 0, **values}  # a run recorded before merge fitting: its supernet stays as it was trained
    return SearchSettings(**{**values, "objectives": tuple(values["objectives"])})


# ------------------------------------------------------------------ folders
def new_run_dir(space: str, prefix: str = "", root: Path = RESULTS_ROOT) -> Path:
    """A fresh, not yet created folder results/<prefix><space>-<time>[-k]."""
    base = root / f"{prefix}{space}-{time.strftime('%Y%m%d-%H%M%S')}"
    run, k = base, 1
    while run.exists():
        k += 1
        run = base.with_name(f"{base.name}-{k}")
    return run


PORTABLE_NAME = re.compile(r"[A-Za-z0-9._+=,@-]{1,255}")  # POSIX's portable file name characters, and + = , @
MAX_PATH_BYTES = 1024


def check_folder_path(folder: Path, flag: str = "--out") -> None:
    """A path a folder can be created at (or exists at): neither it nor a parent is a file, it is no symbolic link
    (dangling or not), and every folder name still to be created is a plain portable name of at most 255 bytes."""
    folder = Path(folder)
    if len(os.fsencode(str(folder))) > MAX_PATH_BYTES:
        raise UserError(f"{flag}: the path is {len(os.fsencode(str(folder)))} bytes long; at most {MAX_PATH_BYTES} are allowed")
    too_long = next((part for part in folder.parts if len(os.fsencode(part)) > 255), None)
    if too_long is not None:
        raise UserError(f"{flag}: the folder name {ascii(too_long[:40] + '...')} is {len(os.fsencode(too_long))} bytes long; "
                        "a folder name is a plain portable name of at most 255 bytes")
    if folder.is_symlink():
        raise UserError(f"{flag} {ascii(str(folder))}: is a symbolic link (to {ascii(os.readlink(folder))}); give a plain folder")
    to_create = [p for p in (folder, *folder.parents) if not p.exists() and str(p) not in ("", ".")]
    for p in reversed(to_create):
        if p.is_symlink():
            raise UserError(f"{flag} {ascii(str(folder))}: {ascii(str(p))} is a dangling symbolic link; give a plain folder")
        if p.name not in ("..",) and not PORTABLE_NAME.fullmatch(p.name):
            raise UserError(f"{flag} {ascii(str(folder))}: {ascii(p.name)} is not a plain portable folder name; use at most 255 "
                            "letters, digits and . _ - + = , @")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == folder else f"{existing} is a file"
        raise UserError(f"{flag} {folder}: {where}; give a folder (it is created when missing)")


def check_new_run_dir(run_dir: Path, flag: str = "--out") -> None:
    """A folder a new run may be written to: absent, or an empty folder; never a file or a run with content."""
    check_folder_path(run_dir, flag)
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"{flag} {run_dir} already exists and is not empty; use --resume {run_dir} to continue it")


# ------------------------------------------------------------------ config.json
def versions() -> dict:
    import optuna
    import ray
    import timm
    import torch

    return {"torch": torch.__version__, "timm": timm.__version__, "optuna": optuna.__version__, "ray": ray.__version__,
            "python": sys.version.split()[0]}


def write_config(settings: SearchSettings, run_dir: Path, extra: dict) -> None:
    space = get_space(settings.space)
    config = {"kind": RUN_KIND, "settings": asdict(settings), "target_scale": space.target.to_dict(), "versions": versions(), **extra}
    write_text_atomic(run_dir / CONFIG, json.dumps(config, indent=2, default=str) + "\n")


def read_config(run_dir: Path, flag: str = "--resume") -> dict:
    """A run's config.json, checked to be a nas.search configuration with valid settings."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise UserError(f"{flag} {run_dir}: directory does not exist")
    if not path.is_file():
        raise UserError(f"{flag} {run_dir}: not a search run (no config.json); runs are the folders under results/ that nas.search wrote")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UserError(f"{flag} {run_dir}: config.json is not valid JSON") from None
    if not isinstance(config, dict) or config.get("kind") != RUN_KIND:
        raise UserError(f"{flag} {run_dir}: config.json is not a nas.search configuration")
    if "settings" not in config:
        raise UserError(f"{path}: has no 'settings'; runs are the folders nas.search writes")
    settings_from_dict(config["settings"], str(path))
    return config


def read_settings(run_dir: Path, flag: str = "--resume") -> SearchSettings:
    config = read_config(run_dir, flag)
    return settings_from_dict(config["settings"], str(Path(run_dir) / CONFIG))


def stored_settings(run_dir: Path) -> dict:
    """The settings of a run as stored (checked), for a report's labels; empty when the folder has no config.json."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UserError(f"{path}: not valid JSON; remove it or restore the one nas.search wrote") from None
    if not isinstance(config, dict) or "settings" not in config:
        raise UserError(f"{path}: has no 'settings'; runs are the folders nas.search writes")
    settings_from_dict(config["settings"], str(path))
    return config["settings"]


def run_supernet(run: Path | None, config: dict) -> str | None:
    """The run's supernet checkpoint: the path config.json records, else <run>/supernet.pt."""
    if run is None:
        return None
    for candidate in (config.get("supernet"), run / "supernet.pt"):
        if isinstance(candidate, (str, Path)) and candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def find_run(path: Path, data) -> Path | None:
    """The search run an arch file or a pareto.csv belongs to: its own folder, or the `run` a best.json names."""
    if (path.parent / CONFIG).is_file():
        return path.parent
    named = data.get("run") if isinstance(data, dict) else None
    if isinstance(named, str):
        for candidate in (Path(named), path.parent.parent / named, path.parent / Path(named).name):
            if (candidate / CONFIG).is_file():
                return candidate
    return None


def load_run_space_file(given: str | None, settings: dict, run_dir, flag: str) -> str | None:
    """Run the --space-file given on this command line for a run made with one: it must be given again (a run
    folder never names code to run) and its sha256 must be the one the run recorded. Returns the file given."""
    recorded = settings.get("space_file")
    if recorded and not given:
        raise UserError(f"{flag} {run_dir}: its space {settings.get('space')!r} came from {recorded}; give that file again with "
                        "--space-file (a run folder never runs code; the file's sha256 is checked)")
    load_space_file(given, settings.get("space_file_sha256") if recorded else None)
    return given


def data_split(config: dict) -> tuple[int, float]:
    """(seed, validation fraction) of the train/validation split a run's trials were scored on."""
    settings, data = config.get("settings", {}), config.get("data") or {}
    return int(data.get("split_seed", settings.get("seed", 0))), float(data.get("val_fraction", settings.get("val_fraction", 0.1)))


def selection_section(run_dir: Path) -> str | None:
    """The markdown section the selection stage left for the run's report.md, if it ran."""
    path = Path(run_dir) / "select" / "section.md"
    return path.read_text() if path.is_file() else None


def audit_section(run_dir: Path) -> str | None:
    """The markdown section nas.audit left for the run's report.md, if it audited the run."""
    path = Path(run_dir) / AUDIT / "section.md"
    return path.read_text() if path.is_file() else None


def sha256(path: Path) -> str:
    return file_sha256(path)
