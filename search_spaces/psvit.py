"""`psvit`: the PSViT compact set and nothing else.

A three-stage ViT of multi-head self-attention blocks with 2x2 token pooling between stages. The
choices are where tokens are pooled (the stage depths, over a compact range of total depths) and
which layers reuse the previous layer's attention map (block 'shared').

The target scale is derived from DeiT-S: head dimension 64 everywhere and a 384-wide middle stage at
14x14 tokens (DeiT-S's grid), so that twelve MHSA layers in the middle stage with the outer stages empty
is DeiT-S with a convolutional stem (the `deit_s` reference). A stage of depth 0 pools at once: the
first stage's depth is the position of the first pooling, PSViT's choice, and may be "before any layer".
"""
from .arch import Layer
from .references import arch_of, reference, repeat
from .registry import register_space
from .scale import Scale
from .space import SearchSpace, StageRule

_BLOCKS = ("mhsa", "shared")

PSVIT = register_space(
    SearchSpace(
        name="psvit",
        description="PSViT: token pooling positions (stage depths) and attention sharing",
        stages=(
            StageRule(depths=(0, 1, 2, 3, 4), blocks=_BLOCKS),
            StageRule(depths=(4, 5, 6, 7, 8, 9, 10, 11, 12), blocks=_BLOCKS),
            StageRule(depths=(0, 1, 2, 3), blocks=_BLOCKS),
        ),
        merges=(("pool",), ("pool",)),
        total_depths=(10, 11, 12, 13, 14),
        target=Scale(name="target", img_size=224, stem_stride=8, embed_dims=(128, 384, 768), num_heads=(2, 6, 12)),
        proxy=Scale(name="proxy", img_size=32, stem_stride=4, embed_dims=(32, 64, 128), num_heads=(1, 2, 4), num_classes=10),
        rules=(
            "stage depths d0+d1+d2 lie in the allowed totals: tokens are pooled after layer d0 and after layer d0+d1 "
            "(d0 = 0: at once, after the stem; d2 = 0: just before the head)",
            "'shared' reuses the attention map of the previous layer, which must be an 'mhsa' layer of the same stage",
            "every merge is 2x2 token pooling",
        ),
    )
)


@reference("psvit")
def deit_s():
    """DeiT-S (Touvron et al., "Training data-efficient image transformers", ICML 2021): 16x16 patches
    (14x14 tokens at 224), 12 layers of width 384 with 6 heads of 64 and MLP ratio 4, a class token;
    4.6 GMACs, 22.1M params (timm's deit_small_patch16_224, counted by nas.profile: 4.60 G, 22.1 M).

    Here: the same twelve MHSA layers on the 14x14 grid at width 384 (stage 1), with the outer stages
    empty (pooling at once, and just before the head). Where it must differ: a convolutional stem of
    three stride-2 3x3 convolutions (32, 64, 128 channels) to 28x28 tokens, then 2x2 pooling into the 384-wide
    stage, instead of one 16x16 patch projection; a last 2x2 pooling into 768 channels and a mean-pooled
    LayerNorm head instead of the class token. Counted at 224x224: 4.67 GMACs (+1.5%), 22.6M params (+2.3%):
    the stem (0.13 G) and the two pooling projections (0.02 G) against DeiT's patch projection (0.06 G).
    """
    mhsa = Layer("mhsa", mlp_ratio=4)
    return arch_of("psvit", ("pool", "pool"), [], repeat(mhsa, 12), [])
