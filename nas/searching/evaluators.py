"""What scores an architecture for the search: one small interface, as Archai's evaluators are.

An evaluator answers two questions. `costs(arch)`: MACs (or the table's FLOPs), parameters and, when the
search asks for it, latency at the target scale; cheap, asked in the driver before a trial runs, so that an
architecture over a limit costs nothing and the sampler is told. `score(arch, payload)`: its accuracy on the
validation split, asked in a Ray worker; `payload` is what the driver ships to the workers once through
Ray's object store (a supernet's weights and the data; nothing for a table). The driver, the trials, the
result files and the report are the same whichever evaluator is used:

- SupernetEvaluator: the analytic cost model and the device's latency predictor; inherited accuracy from a
  trained supernet, BatchNorm recalibrated on fixed batches (the default);
- TableEvaluator (`--evaluator table:PATH`): a benchmark table such as NAS-Bench-201's, one row per
  architecture with its FLOPs, parameters, latencies and accuracies;
- standalone training scores the selection stage's candidates (nas.searching.selection).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from search_spaces import Arch, file_sha256, get_space, load_space_file

from nas.errors import UserError
from nas.measure.costs import arch_costs, extreme_arch

TABLE_COLUMNS = ("arch", "mflops", "params_m")  # and the --score column; lat_<device> for latency


class Evaluator:
    kind = ""
    predictor = None  # a latency predictor, where latency is predicted rather than looked up

    def costs(self, arch: Arch) -> dict:
        """{"macs", "params", "latency_ms"} at the target scale (latency None unless the search uses it; all None when
        the evaluator knows nothing of the architecture)."""
        raise NotImplementedError

    def payload(self):
        """What score() needs in a worker, shipped once per search through the object store."""
        return None

    def score(self, arch: Arch, payload) -> float:
        raise NotImplementedError

    def least(self, key: str) -> tuple[float, Arch]:
        """The smallest `key` ("macs" or "params") any architecture has, and that architecture."""
        raise NotImplementedError

    def worst_costs(self) -> dict:
        """Costs no architecture exceeds: what the sampler is told for one the evaluator has no costs for."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind}


class SupernetEvaluator(Evaluator):
    """Inherited accuracy from a trained supernet; costs from the analytic model and the latency predictor."""

    kind = "supernet"

    def __init__(self, settings, predictor=None):
        self.space_name, self.space_file, self.space_file_sha256 = settings.space, settings.space_file, settings.space_file_sha256
        self.predictor = predictor
        self.calib_batches, self.cpus = settings.calib_batches, settings.cpus_per_trial
        self.run_dir = settings.run_dir
        self.state = self.bundle = None
        self.gpus = 0.0

    def attach(self, supernet_state: dict, bundle, gpus_per_trial: float) -> "SupernetEvaluator":
        """The trained supernet and the data the workers evaluate on (not pickled with the proposer)."""
        self.state, self.bundle, self.gpus = supernet_state, bundle, gpus_per_trial
        return self

    def __getstate__(self):  # Ray Tune pickles the searcher, and the proposer with it: never the weights
        return {**self.__dict__, "state": None, "bundle": None}

    def _space(self):
        load_space_file(self.space_file, self.space_file_sha256)
        return get_space(self.space_name)

    def costs(self, arch: Arch) -> dict:
        c = arch_costs(arch, self._space().target)
        return {"macs": c.macs, "params": c.params, "latency_ms": self.predictor.predict(arch) if self.predictor is not None else None}

    def least(self, key: str) -> tuple[float, Arch]:
        space = self._space()
        arch = extreme_arch(space, space.target, largest=False, key=key)
        return getattr(arch_costs(arch, space.target), key), arch

    def payload(self):
        return {"supernet_state": self.state, "bundle": self.bundle}

    def score(self, arch: Arch, payload) -> float:
        from nas.measure.evaluate import evaluate

        torch.set_num_threads(max(1, int(self.cpus)))
        net, val_loader, calib_loader = worker_supernet(self, payload)
        return evaluate(net, arch, val_loader, calib_loader, self.calib_batches)

    def describe(self) -> dict:
        return {"kind": self.kind, "calib_batches": self.calib_batches}


_WORKER_CACHE: dict = {}


def worker_supernet(evaluator: SupernetEvaluator, payload: dict):
    """The supernet and loaders of this worker, built once per worker (and run) from the object store."""
    key = evaluator.run_dir
    if key not in _WORKER_CACHE:
        from search_spaces import Scale
        from supernet import Supernet

        from nas.data import make_loader
        from nas.measure.evaluate import calibration_loader

        state, bundle = payload["supernet_state"], payload["bundle"]
        net = Supernet(evaluator._space(), Scale.from_dict(state["scale"]))
        net.load_state_dict(state["model"])
        gpu = bool(evaluator.gpus) and torch.cuda.is_available()
        net.eval().to("cuda" if gpu else "cpu")
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = (net, make_loader(bundle, "val", 256), calibration_loader(bundle))
    return _WORKER_CACHE[key]


class TableEvaluator(Evaluator):
    """A benchmark table: one row per architecture, `arch` (the space's text form, e.g. a NAS-Bench-201 cell string,
    or Arch JSON), `mflops`, `params_m`, latency columns `lat_<device>` and score columns (accuracy as a fraction or
    in percent). An architecture the table does not hold has no costs: it is recorded as infeasible ("not in the
    table") and the sampler is told so."""

    kind = "table"

    def __init__(self, space_name: str, path: str, score: str, device: str | None = None, flag: str = "--evaluator"):
        self.space_name, self.path, self.score_column = space_name, str(path), score
        where = f"{flag} table:{path}"
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{where}: file does not exist")
        try:
            df = pd.read_csv(p)
        except (ValueError, OSError, UnicodeDecodeError) as e:
            raise UserError(f"{where}: not a readable CSV table ({(str(e).splitlines() or [type(e).__name__])[0][:100]})") from None
        needed = [*TABLE_COLUMNS, score]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            scores = [c for c in df.columns if c.endswith("_acc")]
            raise UserError(f"{where}: the table has no column {', '.join(missing)}; a table needs {', '.join(needed)}"
                            + (f" (--score: one of {', '.join(scores)})" if score in missing and scores else ""))
        self.latency_column = None
        if device is not None:
            self.latency_column = f"lat_{device}"
            if self.latency_column not in df.columns:
                devices = [c[4:] for c in df.columns if c.startswith("lat_")]
                raise UserError(f"--device {device}: {where} has no latency column {self.latency_column}; its devices: "
                                f"{', '.join(devices) or 'none'}")
        numeric = ["mflops", "params_m", score] + ([self.latency_column] if self.latency_column else [])
        for column in numeric:
            values = pd.to_numeric(df[column], errors="coerce")
            bad = ~np.isfinite(values) | (values < 0)
            if bad.any():
                raise UserError(f"{where}: column {column} holds {df[column][bad].iloc[0]!r} (row {int(bad.idxmax()) + 2}); "
                                "it must hold finite numbers >= 0")
            df[column] = values
        percent = df[score].max() > 1.0
        space = get_space(space_name)
        self.rows: dict[str, tuple] = {}
        for k, row in enumerate(df.itertuples(index=False)):
            try:
                arch = space.parse_arch(getattr(row, "arch"))
            except Exception as e:  # noqa: BLE001 -- ArchError, a JSON error: one line naming the row
                raise UserError(f"{where}: row {k + 2}: arch is not an architecture of {space_name} ({str(e)[:120]})") from None
            acc = float(getattr(row, score)) / (100.0 if percent else 1.0)
            latency = float(getattr(row, self.latency_column)) if self.latency_column else None
            self.rows[arch.key()] = (float(row.mflops) * 1e6, float(row.params_m) * 1e6, latency, acc)  # plain: pickled per worker
        self.sha256 = file_sha256(p)
        self.percent = bool(percent)

    def costs(self, arch: Arch) -> dict:
        row = self.rows.get(arch.key())
        if row is None:
            return {"macs": None, "params": None, "latency_ms": None}
        return {"macs": row[0], "params": row[1], "latency_ms": row[2]}

    def score(self, arch: Arch, payload) -> float:
        return self.rows[arch.key()][3]

    def least(self, key: str) -> tuple[float, Arch]:
        k = 0 if key == "macs" else 1
        arch, row = min(self.rows.items(), key=lambda item: item[1][k])
        return row[k], Arch.from_json(arch)

    def worst_costs(self) -> dict:
        rows = self.rows.values()
        return {"macs": max(r[0] for r in rows), "params": max(r[1] for r in rows),
                "latency_ms": max(r[2] for r in rows) if self.latency_column else None}

    def fastest(self) -> tuple[float, Arch]:
        arch, row = min(self.rows.items(), key=lambda item: item[1][2])
        return row[2], Arch.from_json(arch)

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(Path(self.path).resolve()), "sha256": self.sha256, "rows": len(self.rows),
                "score": self.score_column, "score_in_percent": self.percent, "latency_column": self.latency_column}


def parse_evaluator(spec: str) -> tuple[str, str | None]:
    """(kind, path) of an --evaluator value: supernet, or table:PATH."""
    if spec == "supernet":
        return "supernet", None
    if spec.startswith("table:") and len(spec) > len("table:"):
        return "table", spec[len("table:"):]
    raise UserError(f"--evaluator {spec!r}: allowed: supernet (the default: inherited accuracy), table:PATH (a benchmark table)")


def make_evaluator(settings, predictor=None) -> Evaluator:
    """The evaluator the settings name; a table is read and checked here, before anything is written."""
    kind, path = parse_evaluator(settings.evaluator)
    if kind == "table":
        device = settings.device if settings.uses_latency else None
        return TableEvaluator(settings.space, path, settings.score, device)
    return SupernetEvaluator(settings, predictor)


def timed_score(evaluator: Evaluator, arch: Arch, payload) -> tuple[float, float]:
    t0 = time.time()
    return evaluator.score(arch, payload), time.time() - t0
