"""The choices an architecture makes, as rows a report counts, and its compact one-line summary."""
from __future__ import annotations

import pandas as pd

from search_spaces import Arch
from search_spaces.vocabulary import CHOICE_FIELDS, reuses_attention


def arch_choices(arch: Arch) -> list[tuple[int, str, str]]:
    """(rank, choice, value) for every choice one architecture makes; rank orders the choices in tables.
    Per-layer choices occur once per layer that has them, the others once per architecture."""
    found = [(i, f"merge after stage {i}", m) for i, m in enumerate(arch.merges)]
    found += [(10 + s, f"depth of stage {s}", str(d)) for s, d in enumerate(arch.depths)]
    for s, l, layer in arch.layers():
        found.append((20 + s, f"blocks in stage {s}", layer.block))
        if reuses_attention(layer.block):
            found.append((30, "shared-attention position", f"stage {s}, layer {l}"))
        found += [(31 + list(CHOICE_FIELDS).index(name), CHOICE_FIELDS[name].label, f"{value:g}") for name, value in layer.choices]
    return found


def choice_statistics(trials: pd.DataFrame, groups: dict[str, pd.Index]) -> pd.DataFrame:
    """How often each value of each choice occurs, in percent of the choice's occurrences, within each group of
    rows (groups: column name -> row labels of trials). NaN where the group never makes that choice."""
    occurrences = pd.DataFrame([(row, *found) for row, text in trials["arch"].items() for found in arch_choices(Arch.from_json(text))],
                               columns=["row", "rank", "choice", "value"])
    keys = ["rank", "choice", "value"]
    every = occurrences.groupby(keys).size().index
    table = pd.DataFrame(index=every)
    for name, rows in groups.items():
        counts = occurrences[occurrences["row"].isin(rows)].groupby(keys).size().reindex(every, fill_value=0)
        totals = counts.groupby(level="choice").transform("sum")
        table[name] = 100 * counts / totals.where(totals > 0)
    table = table.reset_index()
    table["number"] = pd.to_numeric(table["value"], errors="coerce")
    return table.sort_values(["rank", "number", "value"]).drop(columns=["rank", "number"]).reset_index(drop=True)


def arch_summary(arch_json: str) -> str:
    """'[merges] blocks of stage 0; blocks of stage 1; ...', each block followed by its choices' values
    (joined by '/' where it has several), e.g. 'mhsa4' or 'strip3'."""
    arch = Arch.from_json(arch_json)
    stages = "; ".join(",".join(layer.block + "/".join(f"{v:g}" for _, v in layer.choices) for layer in stage)
                       for stage in arch.stages)
    return f"[{'/'.join(arch.merges)}] {stages}"
