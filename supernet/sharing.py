"""Cross-family weight sharing: at one layer position, the parts every block type has in common are one module.

A block is a token mixer and a channel MLP (the MetaFormer split). The supernet holds one block per (layer index,
block type); without sharing, each type at a position has its own norms and its own MLP, so four or five disjoint
copies of the bulk of a layer's weights compete for the training steps, and an architecture that mixes types in
an order no training step ran inherits weights that never worked together (the search's proposals scored near
chance). Here each block class names its common parts by role (`SHARED_PARTS`: role -> attribute path), and at
every layer position the types that name a role get one module for it:

- "mixer_norm": the LayerNorm before the token mixer (MHSA, shared MHSA, MAF's local attention, super tokens);
- "mlp_norm": the LayerNorm before the channel MLP (MHSA, shared MHSA, MAF, Strip-MLP's channel mixing);
- "mlp_fc1", "mlp_fc2": the channel MLP's two projections (MLP, GRN MLP, ConvFFN), one Linear at the widest
  hidden width of any type there; a type's MLP ratio runs on the first rows (fc1) or columns (fc2), as the
  elastic widths do. A ConvFFN runs the Linear's weight as a 1x1 convolution.

Only the supernet shares: a standalone ArchNet builds each block whole, and `Supernet.extract` copies (and
slices, and reshapes to a 1x1 kernel where the block has one) the shared weights into it.
"""
from __future__ import annotations

from torch import nn

ROLES = ("mixer_norm", "mlp_norm", "mlp_fc1", "mlp_fc2")


def shared_parts(block: nn.Module) -> dict[str, str]:
    return dict(getattr(type(block), "SHARED_PARTS", {}))


def _replacement(role: str, modules: list[nn.Module]) -> nn.Module:
    if role in ("mixer_norm", "mlp_norm"):
        dims = {m.normalized_shape for m in modules}
        if len(dims) != 1:
            raise ValueError(f"{role}: the block types' norms have different shapes {sorted(dims)}")
        return nn.LayerNorm(modules[0].normalized_shape)
    rows = [m.weight.shape[0] for m in modules]
    cols = [m.weight.shape[1] for m in modules]
    if role == "mlp_fc1":  # dim -> hidden: the widest hidden holds every type's
        if len(set(cols)) != 1:
            raise ValueError(f"mlp_fc1: the block types' MLPs take different widths {sorted(set(cols))}")
        return nn.Linear(cols[0], max(rows))
    if len(set(rows)) != 1:
        raise ValueError(f"mlp_fc2: the block types' MLPs give different widths {sorted(set(rows))}")
    return nn.Linear(max(cols), rows[0])


def share_across_types(slot: nn.ModuleDict, roles: tuple[str, ...] = ROLES) -> dict[str, list[str]]:
    """Give the blocks of one layer position (block type -> block) one module per role that two or more of them
    name; returns role -> the types sharing it."""
    sharing = {}
    for role in roles:
        members = [(name, block, shared_parts(block)[role]) for name, block in slot.items() if role in shared_parts(block)]
        if len(members) < 2:
            continue
        module = _replacement(role, [block.get_submodule(path) for _, block, path in members])
        for _, block, path in members:
            parent, _, leaf = path.rpartition(".")
            setattr(block.get_submodule(parent) if parent else block, leaf, module)
        sharing[role] = [name for name, _, _ in members]
    return sharing
