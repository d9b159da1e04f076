"""Parsing the user's quantities: 4.5G, 4500M, 4.5e9 MACs; 22M params; 8ms latency."""
from __future__ import annotations

import math
import re

from nas.errors import UserError

_SUFFIX = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_NUMBER = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)\s*$", re.IGNORECASE)


def parse_count(text: str, what: str, example: str) -> float:
    """A positive count with an optional K/M/G/T suffix ('4.5G', '4500M', '4.5e9')."""
    m = _NUMBER.match(text or "")
    if not m:
        raise UserError(f"{what}: {text!r} is not a number with an optional K, M, G or T suffix (e.g. {example})")
    value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{what}: {text!r} must be a positive number (e.g. {example})")
    return value


def parse_latency_ms(text: str, what: str = "--latency") -> float:
    """A positive latency in milliseconds: '8ms', '8 ms', '0.5s', '8' (ms)."""
    m = re.match(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s|us)?\s*$", text or "", re.IGNORECASE)
    if not m:
        raise UserError(f"{what}: {text!r} is not a latency; use a positive number with ms, s or us (e.g. 8ms)")
    value = float(m.group(1)) * {"ms": 1.0, "s": 1e3, "us": 1e-3, None: 1.0}[m.group(2) and m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{what}: {text!r} must be a positive latency (e.g. 8ms)")
    return value
