"""bench/isolated_optimum.py's neighbourhood and climb on small made-up landscapes whose answers are known."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from isolated_optimum import climb_ends, costliest, neighbour_rows  # noqa: E402

from search_spaces.nb201 import OPS  # noqa: E402


def test_every_neighbour_differs_from_its_cell_in_exactly_one_edge_and_none_repeats():
    k = len(OPS)
    codes = np.array([[a, b] for a in range(k) for b in range(k)])[::-1]  # rows in an order of their own
    nbrs = neighbour_rows(codes)
    assert nbrs.shape == (k * k, 2 * (k - 1))
    for row, found in enumerate(nbrs):
        assert len(set(found)) == len(found) and row not in found
        assert all((codes[n] != codes[row]).sum() == 1 for n in found)


def test_steepest_ascent_stops_at_the_best_feasible_neighbour_and_never_crosses_an_infeasible_cell():
    # a path 0 - 1 - 2 - 3 - 4: cell 2 is over the limit, so the climb from 0 or 1 stops at 1, from 3 or 4 at 4
    acc = np.array([1.0, 2.0, 9.0, 3.0, 4.0])
    feasible = np.array([True, True, False, True, True])
    nbrs = np.array([[1, 1], [0, 2], [1, 3], [2, 4], [3, 3]])
    assert climb_ends(acc, feasible, nbrs).tolist() == [1, 1, -1, 4, 4]


def test_the_costliest_share_is_the_rows_at_or_above_that_cost_quantile():
    rows = np.arange(100, 120)
    cost = np.arange(20.0)[::-1]  # row 100 the costliest
    assert costliest(rows, cost, 0.1).tolist() == [100, 101]
    assert costliest(rows, cost, 0.5).tolist() == list(range(100, 110))
    assert costliest(rows, np.full(20, 3.0), 0.1).tolist() == rows.tolist()  # ties at the top all count
