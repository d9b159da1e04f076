"""Scale: how a scale-free Arch becomes tensors (input size, stem stride, widths, heads, classes)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Scale:
    name: str
    img_size: int
    stem_stride: int
    embed_dims: tuple[int, ...]
    num_heads: tuple[int, ...]
    num_classes: int = 1000
    in_chans: int = 3

    def grids(self) -> tuple[int, ...]:
        """Token grid side per stage: the stem divides by stem_stride, every stage boundary halves."""
        side = self.img_size // self.stem_stride
        out = []
        for _ in self.embed_dims:
            out.append(side)
            side //= 2
        return tuple(out)

    def check(self) -> None:
        if self.img_size % self.stem_stride:
            raise ValueError(f"scale {self.name}: img_size {self.img_size} is not a multiple of stem_stride {self.stem_stride}")
        grids = self.grids()
        for i in range(len(grids) - 1):
            if grids[i] % 2 or grids[i + 1] < 1:
                raise ValueError(f"scale {self.name}: stage {i} grid {grids[i]} cannot be halved exactly")
        if len(self.embed_dims) != len(self.num_heads):
            raise ValueError(f"scale {self.name}: {len(self.embed_dims)} widths but {len(self.num_heads)} head counts")
        for d, h in zip(self.embed_dims, self.num_heads):
            if d % h:
                raise ValueError(f"scale {self.name}: width {d} is not divisible by {h} heads")

    def with_overrides(self, img_size: int | None = None, num_classes: int | None = None, in_chans: int | None = None) -> "Scale":
        kw = {k: v for k, v in dict(img_size=img_size, num_classes=num_classes, in_chans=in_chans).items() if v is not None}
        return replace(self, **kw) if kw else self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Scale":
        """A Scale from its dict; a key this version does not know (an earlier version's) raises ValueError."""
        d = dict(d)
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"scale field {unknown[0]!r} is not known to this version")
        d["embed_dims"] = tuple(d["embed_dims"])
        d["num_heads"] = tuple(d["num_heads"])
        return cls(**d)
