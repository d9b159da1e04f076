"""What an architecture costs: a MAC counter for any nn.Module and an analytic model for Arch + Scale.

Convention (the papers'): one multiply-accumulate is one FLOP; counted are linear layers, matrix
products (attention's QK^T and AV included), convolutions and fused attention kernels. Norms,
activations, pooling and element-wise ops are not counted, as in fvcore and the DeiT/Swin papers.
torch's FlopCounterMode (like thop) misses the fused attention that timm calls on the CPU
(`_scaled_dot_product_flash_attention_for_cpu`); the counter here registers it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from search_spaces import Arch, Scale, SearchSpace
from search_spaces.vocabulary import is_attention_source
from supernet.blocks import block_cost, merge_cost
from supernet.model import Head, Stem

aten = torch.ops.aten


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {}
for _name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
    if hasattr(aten, _name):
        _EXTRA_FORMULAS[getattr(aten, _name)] = _sdpa_cpu_flop


@dataclass(frozen=True)
class Costs:
    macs: int
    params: int

    def __add__(self, other: "Costs") -> "Costs":
        return Costs(self.macs + other.macs, self.params + other.params)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, inputs: torch.Tensor | tuple, *args) -> int:
    """Multiply-accumulates of one forward pass of `model(inputs, *args)` (batch as given)."""
    was_training = model.training
    model.eval()
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            model(*inputs, *args)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def measure_costs(model: nn.Module, img_size: int, in_chans: int = 3) -> Costs:
    device = next(model.parameters()).device
    return Costs(count_macs(model, torch.zeros(1, in_chans, img_size, img_size, device=device)), count_params(model))


def arch_costs(arch: Arch, scale: Scale, space: SearchSpace | None = None) -> Costs:
    """MACs (batch 1) and parameters of `arch` at `scale`, without building it; exact against count_macs."""
    total = Costs(*Stem.cost(scale))
    grids = scale.grids()
    for i, layers in enumerate(arch.stages):
        dim, heads, side = scale.embed_dims[i], scale.num_heads[i], grids[i]
        if i:
            total += Costs(*merge_cost(arch.merges[i - 1], scale.embed_dims[i - 1], dim, grids[i - 1]))
        for layer in layers:
            total += Costs(*block_cost(layer, dim, heads, side, scale))
    return total + Costs(*Head.cost(scale.embed_dims[-1], scale.num_classes))


def optimal_arch(space: SearchSpace, largest: bool, layer_cost, merge_cost) -> Arch:
    """The legal architecture maximising (largest=True) or minimising an additive cost.

    `layer_cost(stage, layer)` and `merge_cost(boundary, op)` give each part's cost; the total is their
    sum plus constants. Exact: a layer's cost depends only on its stage and choice, so each stage is
    optimised by dynamic programming over layer sequences (the vocabulary's attention-reuse rule is the
    only coupling), then the depth tuples and merges are enumerated.
    """
    better = (lambda a, b: a > b) if largest else (lambda a, b: a < b)
    best_stage: list[dict[int, tuple[float, tuple]]] = []
    for i, rule in enumerate(space.stages):
        cost = {o: layer_cost(i, o) for o in rule.options()}
        # best[n][source_before]: (cost, layers) of the best n-layer sequence after an attention source (or not)
        best = {0: {False: (0, ()), True: (0, ())}}
        for n in range(1, max(rule.depths) + 1):
            best[n] = {}
            for source_before in (False, True):
                cand = None
                for o in rule.legal_options(source_before):
                    rest_cost, rest = best[n - 1][is_attention_source(o.block)]
                    total = cost[o] + rest_cost
                    if cand is None or better(total, cand[0]):
                        cand = (total, (o,) + rest)
                best[n][source_before] = cand
        best_stage.append({d: best[d][False] for d in rule.depths})
    merges = []
    for b, ops in enumerate(space.merges):
        costs_b = {op: merge_cost(b, op) for op in ops}
        merges.append(max(costs_b, key=costs_b.get) if largest else min(costs_b, key=costs_b.get))
    chosen = None
    for depths in space.depth_tuples():
        total = sum(best_stage[i][d][0] for i, d in enumerate(depths))
        if chosen is None or better(total, chosen[0]):
            chosen = (total, depths)
    stages = tuple(best_stage[i][d][1] for i, d in enumerate(chosen[1]))
    return space.validate(Arch(space.name, stages, tuple(merges)))


def extreme_arch(space: SearchSpace, scale: Scale, largest: bool, key: str = "macs") -> Arch:
    """The legal architecture with the most (largest=True) or fewest MACs (or params) at `scale`."""
    pick = 0 if key == "macs" else 1
    grids, dims, heads = scale.grids(), scale.embed_dims, scale.num_heads
    return optimal_arch(
        space, largest,
        layer_cost=lambda i, layer: block_cost(layer, dims[i], heads[i], grids[i], scale)[pick],
        merge_cost=lambda b, op: merge_cost(op, dims[b], dims[b + 1], grids[b])[pick],
    )
