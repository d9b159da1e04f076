"""The hand-designed models a space's papers compare against, as named members of the space.

A space module declares each one as a function returning its Arch, decorated with @reference(space);
the function's docstring cites the paper's configuration and says where the member must differ from
it. A reference is named `space:name` wherever an architecture file is accepted
(`python -m nas.profile psvit_ext:stvit_s`, `python -m nas.retrain psvit_ext:stvit_s`) and by its bare
name where the space is known (`timm.create_model("psvit_ext", arch="stvit_s")`).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from .arch import Arch, ArchError, Layer
from .registry import get_space

_REFERENCES: dict[str, dict[str, Callable[[], Arch]]] = {}


def reference(space_name: str):
    """Decorator: register `fn() -> Arch` as the reference member `fn.__name__` of the space."""

    def register(fn: Callable[[], Arch]) -> Callable[[], Arch]:
        _REFERENCES.setdefault(space_name, {})[fn.__name__] = fn
        return fn

    return register


def arch_of(space_name: str, merges: tuple[str, ...], *stages) -> Arch:
    """An Arch from per-stage lists of Layers (a shorthand for declaring references)."""
    return Arch(space_name, tuple(tuple(stage) for stage in stages), tuple(merges))


def repeat(layer: Layer, n: int) -> list[Layer]:
    return [layer] * n


def reference_names(space_name: str) -> list[str]:
    return list(_REFERENCES.get(space_name, {}))


def get_reference(space_name: str, name: str) -> Arch:
    """The reference member `name` of the space, validated."""
    space = get_space(space_name)
    known = _REFERENCES.get(space_name, {})
    if name not in known:
        listed = ", ".join(f"{space_name}:{n}" for n in known) or "none"
        raise ArchError(f"{space_name} has no reference architecture {name!r}; its references: {listed}")
    return space.validate(known[name]())


def reference_doc(space_name: str, name: str) -> str:
    get_reference(space_name, name)
    return inspect.getdoc(_REFERENCES[space_name][name]) or ""


def is_reference_spec(spec: str) -> bool:
    """Whether `spec` has the form space:name of a registered space (and is not an existing file)."""
    space_name, sep, name = str(spec).partition(":")
    return bool(sep) and space_name in _spaces() and name.isidentifier() and not Path(spec).exists()


def _spaces() -> list[str]:
    from .registry import list_spaces

    return list_spaces()


def load_arch(spec: str | Path) -> Arch:
    """An architecture from a JSON file (an Arch, or a best.json wrapping one) or a reference `space:name`."""
    if is_reference_spec(str(spec)):
        space_name, _, name = str(spec).partition(":")
        return get_reference(space_name, name)
    return Arch.load(spec)
