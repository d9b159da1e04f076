"""The nb201 space (NAS-Bench-201's cells) and the table evaluator, on a 50-row table made here."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import assert_user_error, run_main, run_module
from nas.searching.evaluators import TableEvaluator
from search_spaces import get_space
from search_spaces.nb201 import from_cell, to_cell


def _table(path, rows: int | None = 50, seed: int = 0):
    """`rows` distinct cells (None: every cell whose first edge is not `none`, 12,500 of 15,625) with FLOPs and params
    from their operations, an accuracy in percent and two latencies."""
    import itertools

    from search_spaces import Arch, Layer
    from search_spaces.nb201 import OPS

    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    if rows is None:
        cells = [to_cell(Arch("nb201", (tuple(Layer(op) for op in ops),), ())) for ops in itertools.product(OPS, repeat=6)
                 if ops[0] != "none"]
        rows = len(cells)
    else:
        cells, k = [], 0
        while len(cells) < rows:
            cell = to_cell(space.sample(k))
            k += 1
            if cell not in cells:
                cells.append(cell)
    convs = np.array([c.count("conv_3x3") * 9 + c.count("conv_1x1") for c in cells], float)
    df = pd.DataFrame({"nb201_index": range(rows), "arch": cells, "cifar10_test_acc": rng.uniform(60, 94, rows).round(3),
                       "mflops": 15.6 + 10.0 * convs, "params_m": 0.07 + 0.08 * convs, "lat_raspi4": 5.0 + 2.0 * convs,
                       "lat_pixel3": 2.0 + 1.0 * convs, "oneshot_supernet_acc": rng.uniform(10, 80, rows)})
    df.to_csv(path, index=False)
    return df


def test_cells_round_trip_and_the_space_is_the_benchmark_s():
    space = get_space("nb201")
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    arch = space.parse_arch(cell)
    assert [layer.block for layer in arch.stages[0]] == ["nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect",
                                                         "nor_conv_3x3", "skip_connect"]
    assert to_cell(arch) == cell and space.cardinality() == 5**6
    assert space.parse_arch(arch.to_json()) == arch  # Arch JSON too
    with pytest.raises(ValueError, match="edge 'conv~0' is not one of none"):
        from_cell("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")


def test_table_evaluator_gives_the_table_s_costs_and_scores(tmp_path):
    df = _table(tmp_path / "t.csv")
    evaluator = TableEvaluator("nb201", str(tmp_path / "t.csv"), "cifar10_test_acc", device="raspi4")
    space = get_space("nb201")
    for _, row in df.iterrows():
        arch = space.parse_arch(row["arch"])
        assert evaluator.costs(arch) == {"macs": row["mflops"] * 1e6, "params": row["params_m"] * 1e6, "latency_ms": row["lat_raspi4"]}
        assert evaluator.score(arch, None) == row["cifar10_test_acc"] / 100  # percent in, a fraction out
    absent = next(a for a in (space.sample(s) for s in range(1000, 2000)) if to_cell(a) not in set(df["arch"]))
    assert evaluator.costs(absent) == {"macs": None, "params": None, "latency_ms": None}
    least, arch = evaluator.least("macs")
    assert least == df["mflops"].min() * 1e6 and to_cell(arch) == df.loc[df["mflops"].idxmin(), "arch"]
    assert evaluator.fastest()[0] == df["lat_raspi4"].min()
    other = TableEvaluator("nb201", str(tmp_path / "t.csv"), "oneshot_supernet_acc")
    assert other.score(space.parse_arch(df["arch"][3]), None) == df["oneshot_supernet_acc"][3] / 100


@pytest.mark.slow
def test_a_search_over_the_table_scores_its_rows_and_marks_the_rest_infeasible(tmp_path):
    df = _table(tmp_path / "t.csv", rows=None).set_index("arch")  # a fifth of the cells missing
    proc = run_module("nas.search", "--space", "nb201", "--evaluator", f"table:{tmp_path / 't.csv'}", "--flops", "60M",
                      "--latency", "30ms", "--device", "raspi4", "--sampler", "random", "--trials", "40", "--out", str(tmp_path / "run"),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith("devices: none trained or measured: costs and scores from table:")
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert len(trials) == 40 and not (tmp_path / "run" / "supernet.pt").exists()
    cells = trials["arch"].map(lambda a: to_cell(get_space("nb201").parse_arch(a)))
    inside = cells.isin(df.index)
    assert inside.any() and (~inside).any()
    assert trials.loc[~inside, "macs"].isna().all() and not trials.loc[~inside, "feasible"].any()
    rows = df.loc[cells[inside]]
    fits = (rows["mflops"].to_numpy() <= 60) & (rows["lat_raspi4"].to_numpy() <= 30)
    assert (trials.loc[inside, "feasible"].to_numpy() == fits).all()
    assert np.allclose(trials.loc[inside, "macs"], rows["mflops"] * 1e6)
    scored = trials[trials["feasible"]]
    assert np.allclose(scored["acc"], df.loc[cells[trials["feasible"]], "cifar10_test_acc"] / 100)
    assert np.allclose(scored["latency_measured_ms"], df.loc[cells[trials["feasible"]], "lat_raspi4"])
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["accuracy"] == scored["acc"].max() and best["split"].startswith("the table's cifar10_test_acc")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["evaluator"]["kind"] == "table" and config["evaluator"]["rows"] == 12500 and config["evaluator"]["score_in_percent"]


@pytest.fixture
def table(tmp_path):
    _table(tmp_path / "t.csv")
    pd.read_csv(tmp_path / "t.csv").drop(columns=["mflops"]).to_csv(tmp_path / "no_flops.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("args, fragment", [
    (["--evaluator", "table:{t}/no_flops.csv", "--flops", "60M"], "has no column mflops; a table needs arch, mflops, params_m, cifar10_test_acc"),
    (["--evaluator", "table:{t}/t.csv", "--latency", "20ms", "--device", "tpu"],
     "--device tpu: --evaluator table:{t}/t.csv has no latency column lat_tpu; its devices: raspi4, pixel3"),
    (["--evaluator", "table:{t}/t.csv", "--score", "imagenet_acc"], "has no column imagenet_acc"),
    (["--evaluator", "table:{t}/missing.csv"], "file does not exist"),
    (["--evaluator", "table:{t}/t.csv", "--flops", "1M"], "no architecture of nb201 fits; the smallest has 0.02G MACs in"),
    (["--evaluator", "table:{t}/t.csv", "--select", "2"], "the table's score is final; --supernet and --select go with the supernet"),
    (["--flops", "60M"], "--space nb201 has no supernet (its operations have no modules); give --evaluator table:PATH"),
    (["--evaluator", "cache:x"], "--evaluator 'cache:x': allowed: supernet"),
])
def test_bad_table_input_is_one_line_and_writes_nothing(table, args, fragment):
    proc = run_main("nas.search", "--space", "nb201", *[a.format(t=table) for a in args], cwd=table)
    assert_user_error(proc, fragment.format(t=table))
    assert not (table / "results").exists()
