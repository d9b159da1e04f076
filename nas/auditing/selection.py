"""Which architectures an audit ranks: the run's Pareto members, then the rest stratified over the MAC
range of the run's evaluated architectures, so that the audit covers the region the search explored."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from search_spaces import Arch

from nas.errors import UserError


def arch_id(arch_json: str) -> str:
    """A short stable name for an architecture (its canonical JSON's sha256), used for folders and tables."""
    return hashlib.sha256(Arch.from_json(arch_json).key().encode()).hexdigest()[:12]


def evenly_spaced(count: int, k: int) -> np.ndarray:
    """k distinct positions spread evenly over `count` ordered items, the first and the last among them (none for k=0)."""
    return np.unique(np.linspace(0, count - 1, min(k, count)).round().astype(int))


def choose_architectures(trials: pd.DataFrame, n: int, seed: int, pareto_share: float = 1 / 3) -> pd.DataFrame:
    """`n` distinct evaluated feasible architectures of the run: its Pareto members (at most `pareto_share` of n,
    spread over their MAC range), then one per equal-width MAC bin over the evaluated trials' range, drawn with
    `seed` (an empty bin gives its place to the unchosen trial nearest its centre). Columns: trial, macs, params,
    acc (the search's inherited accuracy), is_pareto, arch, arch_id; sorted by MACs."""
    ok = trials[(trials["status"] == "ok") & trials["feasible"] & trials["evaluated"] & trials["acc"].notna()]
    ok = ok.assign(arch_id=ok["arch"].map(arch_id)).drop_duplicates("arch_id")
    if len(ok) < n:
        raise UserError(f"--archs {n}: the run evaluated {len(ok)} distinct feasible architecture(s); give --archs {len(ok)} or fewer, "
                        "or run the search longer (--resume --trials N)")
    pareto = ok[ok["is_pareto"]].sort_values("macs")
    k = min(len(pareto), max(1, int(n * pareto_share)))
    chosen = pareto.iloc[evenly_spaced(len(pareto), k)]
    rest = ok.drop(chosen.index)
    bins = n - len(chosen)
    if bins:
        rng = np.random.default_rng(seed)
        edges = np.linspace(rest["macs"].min(), rest["macs"].max(), bins + 1)
        which = np.clip(np.searchsorted(edges, rest["macs"], side="right") - 1, 0, bins - 1)
        picked = []
        for b in range(bins):
            members = rest.index[(which == b) & ~rest.index.isin(picked)]
            if len(members):
                picked.append(rng.choice(members))
            else:
                left = rest.drop(picked)
                picked.append((left["macs"] - (edges[b] + edges[b + 1]) / 2).abs().idxmin())
        chosen = pd.concat([chosen, rest.loc[picked]])
    columns = ["trial", "macs", "params", "acc", "is_pareto", "arch", "arch_id"]
    return chosen[columns].sort_values(["macs", "trial"]).reset_index(drop=True)


def architectures_from(audit_csv, trials: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """The architectures another audit ranked (its audit.csv), for comparing supernets on the same ground truth;
    one this run also evaluated gets its trial and search accuracy, any other trial -1 (its inherited accuracy
    is measured all the same). With `n`, only n of them, evenly spaced in the file's order (an audit lists its
    architectures by MACs), the first and the last always kept: a cheaper ground truth over the same range."""
    try:
        other = pd.read_csv(audit_csv)
    except (OSError, ValueError) as e:
        raise UserError(f"--archs-from {audit_csv}: not a readable audit.csv ({str(e).splitlines()[0][:100]})") from None
    if "arch" not in other.columns:
        raise UserError(f"--archs-from {audit_csv}: no arch column; give the audit.csv an earlier nas.audit wrote")
    if n is not None:
        if n > len(other):
            raise UserError(f"--archs {n}: --archs-from {audit_csv} holds {len(other)} architectures; give --archs {len(other)} or fewer")
        other = other.iloc[evenly_spaced(len(other), n)]
    rows = []
    for text in other["arch"]:
        found = trials[trials["arch"].map(arch_id) == arch_id(text)]
        rows.append({"trial": int(found["trial"].iloc[0]) if len(found) else -1, "macs": np.nan, "params": np.nan,
                     "acc": float(found["acc"].iloc[0]) if len(found) else np.nan,
                     "is_pareto": bool(found["is_pareto"].iloc[0]) if len(found) else False, "arch": text, "arch_id": arch_id(text)})
    return pd.DataFrame(rows)
