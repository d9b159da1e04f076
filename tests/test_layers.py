"""The layers are enforced by import-linter (contracts in pyproject.toml): the project keeps them, and a
deliberate violation in a copy of the packages breaks them."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from conftest import ROOT

CONTRACTS = [c["name"] for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]]

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def _verdicts(stdout: str) -> dict[str, str]:
    """Contract name -> KEPT or BROKEN, from lint-imports' summary (whose lines wrap at 80 columns)."""
    summary = stdout.split("Contracts\n---------", 1)[1].split("Contracts:", 1)[0].replace("\n", "")
    return {name: "KEPT" if f"{name} KEPT" in summary else "BROKEN" if f"{name} BROKEN" in summary else "?" for name in CONTRACTS}


def _copy(tmp_path: Path) -> Path:
    for name in ("nas", "supernet", "search_spaces"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _copy(tmp_path_factory.mktemp("layers"))


def test_the_project_keeps_its_contracts(tree):
    proc = _lint(tree)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(CONTRACTS) == 3 and set(_verdicts(proc.stdout).values()) == {"KEPT"}


@pytest.mark.parametrize("module, line, broken", [
    ("supernet/model.py", "import nas.runs", {0}),
    ("search_spaces/arch.py", "import supernet.blocks", {0}),
    ("nas/runs.py", "import nas.searching.driver", {1, 2}),  # an upward import also closes a cycle with the downward ones
    ("nas/units.py", "import nas.cluster", {1}),  # cluster does not import units: no cycle
    ("nas/measure/costs.py", "import nas.training.sampling", {1, 2}),
    ("nas/reporting/plots.py", "import nas.reporting.document", {2}),
])
def test_a_deliberate_violation_breaks_a_contract(tmp_path, module, line, broken):
    tree = _copy(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # deliberate violation\n")
    proc = _lint(tree)
    assert proc.returncode == 1, proc.stdout[-3000:]
    verdicts = _verdicts(proc.stdout)
    assert verdicts == {name: "BROKEN" if k in broken else "KEPT" for k, name in enumerate(CONTRACTS)}
    assert Path(module).stem in proc.stdout.split("Broken contracts", 1)[1]
