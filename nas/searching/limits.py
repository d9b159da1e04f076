"""Limits no architecture of the space can meet, reported in one line before a search starts, not after a fruitless one."""
from __future__ import annotations

from search_spaces import get_space

from nas.errors import UserError
from nas.runs import SearchSettings
from nas.searching.evaluators import make_evaluator


def check_reachable(settings: SearchSettings, evaluator=None) -> None:
    """A MAC or parameter limit below the space's cheapest architecture is reported now, not after a fruitless search."""
    space = get_space(settings.space)
    target = space.target
    evaluator = evaluator or make_evaluator(settings)
    where = f"in {evaluator.path}" if evaluator.kind == "table" else f"at the target scale ({target.img_size}x{target.img_size})"
    for key, limit, flag, unit, scale in (("macs", settings.flops, "--flops", "G MACs", 1e9), ("params", settings.params, "--params", "M params", 1e6)):
        if limit is None:
            continue
        least, _ = evaluator.least(key)
        if least > limit:
            raise UserError(f"{flag} {limit / scale:g}{unit[0]}: no architecture of {space.name} fits; the smallest has "
                            f"{least / scale:.2f}{unit} {where}")


def check_latency_reachable(settings: SearchSettings, evaluator) -> None:
    """A latency limit below the fastest architecture (predicted, or a table's), reported before the search starts."""
    space = get_space(settings.space)
    target = space.target
    if settings.latency_ms is None:
        return
    if evaluator.kind == "table":
        fastest, _ = evaluator.fastest()
        if fastest > settings.latency_ms:
            raise UserError(f"--latency {settings.latency_ms:g}ms: no architecture of {space.name} fits on {settings.device}; the "
                            f"fastest in {evaluator.path} takes {fastest:.2f} ms")
        return
    predictor = evaluator.predictor
    if predictor is not None:
        fastest = predictor.predict(predictor.fastest(space))
        if fastest > settings.latency_ms:
            raise UserError(f"--latency {settings.latency_ms:g}ms: no architecture of {space.name} is predicted to fit on "
                            f"{predictor.key}; the fastest is predicted at {fastest:.2f} ms ({target.img_size}x{target.img_size}, "
                            f"batch {settings.latency_batch})")
