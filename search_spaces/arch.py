"""The Arch record: one architecture as plain, scale-free data that round-trips through JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .vocabulary import CHOICE_FIELDS, MERGE_TYPES

FORMAT_VERSION = 2  # 2: super-token grid and MAF windows per side, FFN widths for every block, GLD ratio


class ArchError(ValueError):
    """An architecture (or its JSON) that is not legal; the message names the field and what is allowed."""


@dataclass(frozen=True, init=False, repr=False)
class Layer:
    """One layer's choices: its block type and a value for each choice field that block type carries
    (search_spaces.vocabulary says which), e.g. Layer("mhsa", mlp_ratio=4), Layer("stoken", grid=2).

    Any registered choice field reads as an attribute (layer.strip_width); one not set reads as None.
    """

    block: str
    choices: tuple[tuple[str, Any], ...]  # (field, value) of the fields set, in the vocabulary's order

    def __init__(self, block: str, **values):
        unknown = [name for name in values if name not in CHOICE_FIELDS]
        if unknown:
            raise TypeError(f"Layer() got an unexpected keyword argument {unknown[0]!r}")
        object.__setattr__(self, "block", block)
        object.__setattr__(self, "choices", tuple((n, values[n]) for n in CHOICE_FIELDS if values.get(n) is not None))

    def __getattr__(self, name: str):
        if name in CHOICE_FIELDS:
            return next((v for n, v in self.__dict__.get("choices", ()) if n == name), None)
        raise AttributeError(f"'Layer' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"Layer({', '.join([repr(self.block)] + [f'{n}={v!r}' for n, v in self.choices])})"

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, **dict(self.choices)}


@dataclass(frozen=True)
class Arch:
    space: str
    stages: tuple[tuple[Layer, ...], ...]
    merges: tuple[str, ...]
    version: int = field(default=FORMAT_VERSION)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    def layers(self):
        """(stage index, layer index, Layer) for every layer that runs."""
        for i, stage in enumerate(self.stages):
            for j, layer in enumerate(stage):
                yield i, j, layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "version": self.version,
            "merges": list(self.merges),
            "stages": [[layer.to_dict() for layer in stage] for stage in self.stages],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def key(self) -> str:
        """A compact canonical string, usable as a dictionary or cache key."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> "Arch":
        if not isinstance(data, dict):
            raise ArchError(f"an architecture must be a JSON object, got {type(data).__name__}")
        if "arch" in data and isinstance(data["arch"], dict):  # a best.json / result record wrapping the arch
            data = data["arch"]
        for key in ("space", "stages", "merges"):
            if key not in data:
                raise ArchError(f"architecture has no '{key}' field; required fields: space, version, merges, stages")
        unknown = sorted(set(data) - {"space", "version", "merges", "stages"})
        if unknown:
            raise ArchError(f"unknown field {unknown[0]!r}; an architecture has the fields space, version, merges, stages")
        version = data.get("version", FORMAT_VERSION)
        if type(version) is not int or version != FORMAT_VERSION:
            earlier = (" (version 1 files predate super tokens and MAF windows counted per side and the FFN-width and GLD"
                       " choices; search again)" if version == 1 else "")
            raise ArchError(f"version: {version!r} is not supported; allowed: {FORMAT_VERSION}{earlier}")
        if not isinstance(data["space"], str):
            raise ArchError(f"space: must be a string, got {data['space']!r}")
        if not isinstance(data["merges"], list) or not all(isinstance(m, str) for m in data["merges"]):
            raise ArchError(f"merges: must be a list of strings from {', '.join(MERGE_TYPES)}")
        if not isinstance(data["stages"], list) or not all(isinstance(s, list) for s in data["stages"]):
            raise ArchError("stages: must be a list of stages, each a list of layers")
        stages = []
        allowed = ("block", *CHOICE_FIELDS)
        for i, stage in enumerate(data["stages"]):
            layers = []
            for j, layer in enumerate(stage):
                where = f"stages[{i}][{j}]"
                if not isinstance(layer, dict) or "block" not in layer:
                    raise ArchError(f"{where}: must be an object with a 'block' field")
                unknown = sorted(set(layer) - set(allowed))
                if unknown:
                    raise ArchError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
                layers.append(Layer(**layer))
            stages.append(tuple(layers))
        return cls(space=data["space"], stages=tuple(stages), merges=tuple(data["merges"]), version=version)

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        except RecursionError:
            raise ArchError("JSON nested too deeply to be an architecture") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "Arch":
        path = Path(path)
        if not path.is_file():
            raise ArchError(f"architecture file {str(path)!r} does not exist")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ArchError(f"cannot read architecture file {str(path)!r}: {e}") from None
        try:
            return cls.from_json(text)
        except ArchError as e:
            raise ArchError(f"{path}: {e}") from None

    def save(self, path: str | Path) -> None:
        from .atomic import write_text_atomic

        write_text_atomic(path, self.to_json(indent=2) + "\n")
