"""The standalone network of one architecture (ArchNet), the weight-sharing Supernet, and extraction.

Both share stem, position embedding, final norm and head; a stage of ArchNet holds one block per
layer, a stage of the Supernet one block per (layer index, block type) allowed there, built at the
widest elastic choice. Parameter names differ only by that block-type (or merge-operator) key, which
is what `Supernet.extract` maps and slices.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from timm.layers import trunc_normal_
from timm.models import register_model

from search_spaces import Arch, ArchError, Layer, Scale, SearchSpace, get_reference, get_space, load_arch, reference_names
from search_spaces.vocabulary import is_attention_source, reuses_attention

from .blocks import center_slice, make_block, make_merge, widest_layer
from .calibration import recalibrated
from .sharing import share_across_types


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class Stem(nn.Module):
    """Convolutional stem: log2(stem_stride) 3x3 stride-2 convolutions, widths doubling up to the first
    stage's width, GELU between them (one stride-1 3x3 convolution for stem_stride 1), LN after; plus a
    learned position embedding.

    Overlapping convolutions give every token a local neighbourhood, which attention-only paths need
    to learn from small data (a patchify stem leaves them near chance on 32x32 inputs).
    """

    def __init__(self, scale: Scale):
        super().__init__()
        dim, side = scale.embed_dims[0], scale.img_size // scale.stem_stride
        widths = self.widths(scale)
        layers, c_in = [], scale.in_chans
        stride = 2 if scale.stem_stride > 1 else 1
        for k, c_out in enumerate(widths):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1))
            if k < len(widths) - 1:
                layers.append(nn.GELU())
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, side, side, dim))
        trunc_normal_(self.pos_embed, std=0.02)

    @staticmethod
    def widths(scale: Scale) -> list[int]:
        n = int(math.log2(scale.stem_stride)) if scale.stem_stride >= 1 else -1
        if n < 0 or 2**n != scale.stem_stride:
            raise ValueError(f"scale {scale.name}: stem_stride must be a power of two (1, 2, 4, ...), got {scale.stem_stride}")
        dim = scale.embed_dims[0]
        return [max(dim >> (n - 1 - k), 8) if k < n - 1 else dim for k in range(max(n, 1))]

    def forward(self, x):
        return self.norm(self.convs(x).permute(0, 2, 3, 1)) + self.pos_embed

    @staticmethod
    def cost(scale: Scale) -> tuple[int, int]:
        macs = params = 0
        side, c_in = scale.img_size, scale.in_chans
        for c_out in Stem.widths(scale):
            side = (side + 1) // 2 if scale.stem_stride > 1 else side
            macs += side * side * 9 * c_in * c_out
            params += 9 * c_in * c_out + c_out
            c_in = c_out
        dim = scale.embed_dims[0]
        n = (scale.img_size // scale.stem_stride) ** 2
        return macs, params + 2 * dim + n * dim


class Head(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x):  # (B, H, W, C)
        return self.fc(self.norm(x).mean(dim=(1, 2)))

    @staticmethod
    def cost(dim: int, num_classes: int) -> tuple[int, int]:
        return dim * num_classes, 2 * dim + (dim * num_classes + num_classes if num_classes > 0 else 0)


def maps_handed_on(kinds, every_source: bool = False) -> list[bool | str]:
    """Per layer of a stage (its block types in order), whether it forms its attention map for the next layer:
    True where the next one reuses it; with `every_source`, "detached" (without gradient) at every other attention
    source, for the block-wise alignment of a 'shared' layer there. Only an attention source is ever asked
    (blocks.attention: the map is not formed otherwise)."""
    kinds = list(kinds)
    reused = [j + 1 < len(kinds) and reuses_attention(kinds[j + 1]) for j in range(len(kinds))]
    return [is_attention_source(k) and (True if r else "detached" if every_source else False) for k, r in zip(kinds, reused)]


def run_block(block: nn.Module, x, attn, layer: Layer | None, hand_map: bool | str):
    return block(x, attn, layer, need_map=hand_map) if hand_map else block(x, attn, layer)


def run_stage(x, downsample: nn.Module | None, blocks, layers: tuple[Layer, ...] | None, maps: list[bool | str]):
    """One stage of any network: the merge, then the blocks in turn, each handed the previous block's
    attention map (formed where `maps` says); with `layers`, each block runs at its layer's elastic sizes."""
    if downsample is not None:
        x = downsample(x)
    attn = None
    for j, block in enumerate(blocks):
        x, attn = run_block(block, x, attn, layers[j] if layers is not None else None, maps[j])
    return x


class Stage(nn.Module):
    def __init__(self, downsample: nn.Module | None, blocks: list[nn.Module], maps: list[bool | str]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.maps = maps

    def forward(self, x):
        return run_stage(x, self.downsample, self.blocks, None, self.maps)


class ArchNet(nn.Module):
    """The network of one architecture at one scale; what timm.create_model builds and extract returns."""

    def __init__(self, arch: Arch, scale: Scale, drop_path_rate: float = 0.0):
        super().__init__()
        scale.check()
        self.arch, self.scale = arch, scale
        self.num_classes = scale.num_classes
        self.num_features = scale.embed_dims[-1]
        self.stem = Stem(scale)
        total = sum(arch.depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        stages, k = [], 0
        for i, (layers, dim, heads, side) in enumerate(zip(arch.stages, scale.embed_dims, scale.num_heads, scale.grids())):
            down = make_merge(arch.merges[i - 1], scale.embed_dims[i - 1], dim) if i else None
            blocks = [make_block(layer, dim, heads, side, scale, rates[k + j]) for j, layer in enumerate(layers)]
            k += len(layers)
            stages.append(Stage(down, blocks, maps_handed_on(layer.block for layer in layers)))
        self.stages = nn.ModuleList(stages)
        self.head = Head(self.num_features, scale.num_classes)
        self.apply(_init_weights)

    def forward_features(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x):
        return self.head(self.forward_features(x))

    def get_classifier(self):
        return self.head.fc


class SuperStage(nn.Module):
    """A stage holding every merge operator and, per layer index, every block type allowed there."""

    def __init__(self, downsample: nn.ModuleDict | None, blocks: list[nn.ModuleDict]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)

    def pick(self, layers: tuple[Layer, ...], merge: str | None) -> tuple[nn.Module | None, list[nn.Module]]:
        """The merge and the blocks that run for these layers."""
        down = self.downsample[merge] if self.downsample is not None else None
        return down, [slot[layer.block] for slot, layer in zip(self.blocks, layers)]

    def forward(self, x, layers: tuple[Layer, ...], merge: str | None, trace: list | None = None):
        """With `trace`, each module's input and output are appended to it: ("merge", None, input, output, None) and
        ("block", j, input, output, the attention map handed in)."""
        down, blocks = self.pick(layers, merge)
        if trace is None:
            return run_stage(x, down, blocks, layers, maps_handed_on(layer.block for layer in layers))
        if down is not None:
            y = down(x)
            trace.append(("merge", None, x, y, None))
            x = y
        attn = None
        maps = maps_handed_on((layer.block for layer in layers), every_source=True)  # the aligned 'shared' layers read them
        for j, (block, layer) in enumerate(zip(blocks, layers)):
            y, new_attn = run_block(block, x, attn, layer, maps[j])
            trace.append(("block", j, x, y, attn))
            x, attn = y, new_attn
        return x


class Supernet(nn.Module):
    """Every choice of a space at once; `supernet(x, arch)` runs one architecture's path.

    Weights are shared per (stage, layer index, block type), built at each block type's widest layer, except
    what every block type has in common at a layer index (the norms and the channel MLP: supernet.sharing),
    which is one module for all the types there; a smaller value of an elastic field (MLP ratio, strip width) runs on a slice of the widest weight,
    a field that sets no weight (super tokens or MAF windows per side) is taken from the arch at run time.
    """

    def __init__(self, space: SearchSpace, scale: Scale | str = "target"):
        super().__init__()
        scale = space.scale(scale)
        scale.check()
        self.space, self.scale = space, scale
        self.stem = Stem(scale)
        stages = []
        for i, (rule, dim, heads, side) in enumerate(zip(space.stages, scale.embed_dims, scale.num_heads, scale.grids())):
            down = None
            if i:
                down = nn.ModuleDict({op: make_merge(op, scale.embed_dims[i - 1], dim) for op in space.merges[i - 1]})
            widest = {b: widest_layer(b, rule) for b in rule.blocks}
            blocks = [nn.ModuleDict({b: make_block(widest[b], dim, heads, side, scale) for b in rule.blocks_at(j)})
                      for j in range(max(rule.depths))]
            for slot in blocks:
                share_across_types(slot)
            stages.append(SuperStage(down, blocks))
        self.stages = nn.ModuleList(stages)
        self.head = Head(scale.embed_dims[-1], scale.num_classes)
        self.apply(_init_weights)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but the names of one shared tensor (supernet.sharing) must hold equal values: loading a
        state dict of another sharing layout would otherwise keep whichever of its tensors came last."""
        groups: dict[int, list[str]] = {}
        for name, tensor in super().state_dict(keep_vars=True).items():
            groups.setdefault(id(tensor), []).append(name)
        for names in groups.values():
            given = [n for n in names if n in state_dict]
            for other in given[1:]:
                a, b = state_dict[given[0]], state_dict[other]
                if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape or not torch.equal(a, b):
                    raise RuntimeError(f"{given[0]} and {other} differ, but they are one tensor in this supernet "
                                       "(shared across block types): the state dict is of another layout")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _check(self, arch: Arch) -> None:
        if arch.space != self.space.name:
            raise ArchError(f"space: {arch.space!r} does not match the supernet's space {self.space.name!r}")

    def forward(self, x, arch: Arch, trace: list | None = None):
        """The logits of `arch`'s path; with `trace` (a list), what every merge and block of the path took and gave,
        as (stage, kind, layer, input, output, attention map handed in) tuples (for block-wise distillation)."""
        self._check(arch)
        x = self.stem(x)
        for i, (stage, layers) in enumerate(zip(self.stages, arch.stages)):
            steps = [] if trace is not None else None
            x = stage(x, layers, arch.merges[i - 1] if i else None, steps)
            if trace is not None:
                trace += [(i, *entry) for entry in steps]
        return self.head(x)

    def path_modules(self, arch: Arch) -> list[nn.Module]:
        """The modules `self(x, arch)` runs, in order: stem, each stage's merge and blocks, head."""
        self._check(arch)
        mods: list[nn.Module] = [self.stem]
        for i, (stage, layers) in enumerate(zip(self.stages, arch.stages)):
            down, blocks = stage.pick(layers, arch.merges[i - 1] if i else None)
            mods += ([down] if down is not None else []) + blocks
        return mods + [self.head]

    def supernet_name(self, name: str, arch: Arch) -> str:
        """The supernet parameter or buffer behind an ArchNet one: insert the block type or merge operator."""
        parts = name.split(".")
        if parts[0] == "stages":
            i = int(parts[1])
            if parts[2] == "downsample":
                parts.insert(3, arch.merges[i - 1])
            elif parts[2] == "blocks":
                parts.insert(4, arch.stages[i][int(parts[3])].block)
        return ".".join(parts)

    def extract(self, arch: Arch, drop_path_rate: float = 0.0, calib=None) -> ArchNet:
        """A standalone ArchNet holding copies of this path's weights (elastic sizes sliced).

        `calib`: training batches (inputs, or (input, label) pairs) on which the path's BatchNorm statistics
        are re-estimated before they are copied, as evaluation does (supernet.calibration); without it the
        supernet's statistics, collected over all the paths it trained, are copied as they are.
        """
        self.space.validate(arch)
        if calib is not None:
            with recalibrated(self, arch, calib):
                return self.extract(arch, drop_path_rate)
        net = ArchNet(arch, self.scale, drop_path_rate=drop_path_rate)
        state = {}
        for name, target in net.state_dict().items():
            path, leaf = self.supernet_name(name, arch).rsplit(".", 1)
            module = self.get_submodule(path)
            tensor = getattr(module, leaf)  # the attribute, so a weight a module computes from another's is copied too
            if tensor.shape != target.shape:
                is_kernel = isinstance(module, nn.modules.conv._ConvNd) and name.endswith("weight")
                index = tuple(
                    center_slice(t, s) if is_kernel and d >= 2 else slice(0, t)
                    for d, (s, t) in enumerate(zip(tensor.shape, target.shape))
                )[:tensor.dim()]
                tensor = tensor[index]
                if tensor.dim() != target.dim():  # a shared Linear's weight behind a block's 1x1 convolution
                    tensor = tensor.reshape(target.shape)
            state[name] = tensor.detach().clone()
        net.load_state_dict(state)
        return net.to(next(self.parameters()).device)


def resolve_arch(arch, space_name: str) -> Arch:
    """An Arch from an Arch, a dict, JSON text, a reference of the space by name ("stvit_s" or
    "psvit_ext:stvit_s") or a path to a JSON file, validated against the space."""
    space = get_space(space_name)
    if isinstance(arch, Arch):
        parsed = arch
    elif isinstance(arch, dict):
        parsed = Arch.from_dict(arch)
    elif isinstance(arch, (str, Path)) and str(arch).lstrip().startswith("{"):
        parsed = Arch.from_json(str(arch))
    elif isinstance(arch, str) and arch in reference_names(space_name):
        parsed = get_reference(space_name, arch)
    elif isinstance(arch, (str, Path)):
        parsed = load_arch(arch)
    else:
        raise ArchError(f"arch must be an Arch, a dict, JSON text, a reference name or a JSON file path; got {type(arch).__name__}")
    return space.validate(parsed)


def create_arch_net(space_name: str, arch=None, scale: Scale | str = "target", img_size: int | None = None,
                    num_classes: int | None = None, in_chans: int | None = None, drop_path_rate: float = 0.0) -> ArchNet:
    if arch is None:
        raise ArchError(f"timm.create_model({space_name!r}) needs arch=<Arch, dict, JSON text, reference name or JSON path>")
    space = get_space(space_name)
    scale = space.scale(scale).with_overrides(img_size=img_size, num_classes=num_classes, in_chans=in_chans)
    return ArchNet(resolve_arch(arch, space_name), scale, drop_path_rate=drop_path_rate)


def register_space_model(space_name: str):
    """Register a timm entrypoint named after a (user-added) space: timm.create_model(space_name, arch=...)."""

    def entrypoint(pretrained: bool = False, **kwargs) -> ArchNet:
        return _create(space_name, pretrained, kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = space_name
    entrypoint.__module__ = __name__
    return register_model(entrypoint)


def _create(space_name: str, pretrained: bool, kwargs: dict) -> ArchNet:
    if pretrained:
        raise ValueError(f"no pretrained weights exist for {space_name!r}; train the architecture with python -m nas.retrain")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return create_arch_net(space_name, **kwargs)


@register_model
def psvit(pretrained: bool = False, **kwargs) -> ArchNet:
    return _create("psvit", pretrained, kwargs)


@register_model
def psvit_ext(pretrained: bool = False, **kwargs) -> ArchNet:
    return _create("psvit_ext", pretrained, kwargs)
