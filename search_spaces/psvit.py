"""`psvit`: the PSViT compact set and nothing else.

A three-stage ViT of multi-head self-attention blocks with 2x2 token pooling between stages. The
choices are where tokens are pooled (the stage depths, over a compact range of total depths) and
which layers reuse the previous layer's attention map (block 'shared').
"""
from .registry import register_space
from .scale import Scale
from .space import SearchSpace, StageRule

_BLOCKS = ("mhsa", "shared")

PSVIT = register_space(
    SearchSpace(
        name="psvit",
        description="PSViT: token pooling positions (stage depths) and attention sharing",
        stages=(
            StageRule(depths=(1, 2, 3, 4), blocks=_BLOCKS),
            StageRule(depths=(2, 3, 4, 5, 6, 7, 8), blocks=_BLOCKS),
            StageRule(depths=(1, 2, 3, 4, 5, 6), blocks=_BLOCKS),
        ),
        merges=(("pool",), ("pool",)),
        total_depths=(10, 11, 12, 13, 14),
        target=Scale(name="target", img_size=224, stem_stride=8, embed_dims=(176, 352, 704), num_heads=(2, 4, 8)),
        proxy=Scale(name="proxy", img_size=32, stem_stride=4, embed_dims=(32, 64, 128), num_heads=(1, 2, 4), num_classes=10),
        rules=(
            "stage depths d1+d2+d3 lie in the allowed totals: tokens are pooled after layer d1 and after layer d1+d2",
            "'shared' reuses the attention map of the previous layer, which must be an 'mhsa' layer of the same stage",
            "every merge is 2x2 token pooling",
        ),
    )
)
