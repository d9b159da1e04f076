"""Spaces by name. A new space is one module that builds a SearchSpace and calls register_space."""
from __future__ import annotations

from .space import SearchSpace

_SPACES: dict[str, SearchSpace] = {}


class UnknownSpaceError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def register_space(space: SearchSpace) -> SearchSpace:
    if space.name in _SPACES:
        raise ValueError(f"a space named {space.name!r} is already registered")
    _SPACES[space.name] = space
    return space


def list_spaces() -> list[str]:
    return sorted(_SPACES)


def get_space(name: str) -> SearchSpace:
    try:
        return _SPACES[name]
    except KeyError:
        raise UnknownSpaceError(f"unknown space {name!r}; known spaces: {', '.join(list_spaces())}") from None
