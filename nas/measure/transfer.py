"""How much of what a supernet learned its architectures inherit: the transfer ratio and its reading.

The ratio compares a typical architecture with the smallest path, the weakest of the paths a sandwich trains
every step, both above chance: (median architecture - chance) / (smallest path - chance). Near 1, the paths
in between inherit as much as the trained extremes; near 0, they score at chance and a ranking of them is
noise (what the issue "weight sharing that transfers" measured: 0.13).
"""
from __future__ import annotations

import math

RELIABLE = 0.5  # below this, the search's closing lines and report call its ranking unreliable


def transfer_ratio(median: float, smallest: float, chance: float) -> float:
    """(median - chance) / (smallest - chance); nan when the smallest path is not above chance."""
    above = smallest - chance
    return (median - chance) / above if above > 0 else math.nan


def swap_loss(base: float, swapped: float, chance: float) -> float:
    """The share of a path's accuracy above chance that a change costs (0: none, 1: all, above 1: below chance)."""
    above = base - chance
    return (base - swapped) / above if above > 0 else math.nan


def transfer_lines(chance: float, largest: float | None, smallest: float | None, median: float | None) -> list[str]:
    """What the numbers mean, for the search's closing lines and report.md."""
    if largest is None or smallest is None or median is None:
        return []
    ratio = transfer_ratio(median, smallest, chance)
    lines = [f"chance {chance:.3f}; supernet's largest path {largest:.3f}, smallest {smallest:.3f}; median evaluated "
             f"architecture {median:.3f}: transfer ratio {ratio:.2f} (1 = the proposals inherit as much as the smallest path)"]
    if not ratio >= RELIABLE:
        lines.append(f"the transfer ratio is below {RELIABLE}: the architectures evaluated inherit little of what the supernet "
                     "learned, so their ranking is unreliable; train the supernet longer (--epochs) or with another strategy "
                     "(--strategy), and check it with bench/transfer.py")
    return lines
