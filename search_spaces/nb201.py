"""`nb201`: NAS-Bench-201's cell space (Dong & Yang, ICLR 2020), searched against a table, not a supernet.

A cell is a DAG of 4 nodes whose 6 edges each carry one of 5 operations; 5^6 = 15,625 cells. Here a cell
is one stage of 6 layers, one per edge in NAS-Bench-201's order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2),
each layer's block type the edge's operation, and the space's text form is the benchmark's own cell
string, `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.

There is no supernet for it: an architecture's costs and score come from a table of the benchmark
(`--evaluator table:PATH`, the file the user names; `../shared/data/nb201/` holds one with test accuracy,
FLOPs, parameters, latency on seven devices and two supernets' inherited accuracy), so the search layer
(Ray Tune, the Optuna samplers, limits, Pareto fronts) is measured against a known optimum.
"""
from __future__ import annotations

from .arch import Arch, ArchError, Layer
from .registry import register_space
from .scale import Scale
from .space import SearchSpace, StageRule
from .vocabulary import register_block_type

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), in the order of the cell string

for _op in OPS:
    register_block_type(_op)


def from_cell(text: str) -> Arch:
    """The Arch of a NAS-Bench-201 cell string."""
    nodes = [part for part in str(text).strip().strip("+").split("+") if part]
    edges = [edge for node in nodes for edge in node.strip("|").split("|")]
    if len(nodes) != 3 or len(edges) != len(EDGES):
        raise ArchError(f"{text!r} is not a NAS-Bench-201 cell (|op~0|+|op~0|op~1|+|op~0|op~1|op~2|)")
    layers = []
    for edge, (_, source) in zip(edges, EDGES):
        op, _, index = edge.partition("~")
        if op not in OPS or index != str(source):
            raise ArchError(f"{text!r}: edge {edge!r} is not one of {', '.join(OPS)} from node {source}")
        layers.append(Layer(op))
    return Arch("nb201", (tuple(layers),), ())


def to_cell(arch: Arch) -> str:
    ops = [layer.block for layer in arch.stages[0]]
    return "|" + "|+|".join("|".join(f"{ops[k]}~{EDGES[k][1]}" for k in range(len(EDGES)) if EDGES[k][0] == node)
                            for node in (1, 2, 3)) + "|"


_CIFAR = Scale(name="target", img_size=32, stem_stride=1, embed_dims=(16,), num_heads=(1,), num_classes=10)

NB201 = register_space(
    SearchSpace(
        name="nb201",
        description="NAS-Bench-201's cell: 6 edges, 5 operations each, costs and scores from a table (--evaluator table:PATH)",
        stages=(StageRule(depths=(len(EDGES),), blocks=OPS),),
        merges=(),
        target=_CIFAR,
        proxy=Scale(name="proxy", img_size=32, stem_stride=1, embed_dims=(16,), num_heads=(1,), num_classes=10),
        rules=(
            "one stage of 6 layers, one per edge of the cell in NAS-Bench-201's order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2",
            "each edge's operation: none, skip_connect, nor_conv_1x1, nor_conv_3x3 or avg_pool_3x3",
            "costs (FLOPs, parameters, latency) and scores are the table's; there is no supernet for this space",
        ),
        text_format=(from_cell, to_cell),
    )
)
