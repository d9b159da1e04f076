"""`psvit_ext`: the PSViT skeleton on four stages, extended with SPM, MAF, Strip-MLP and super tokens.

The target scale is STViT-S's and PVT's (widths 64, 128, 320, 512, heads 1, 2, 5, 8; 56, 28, 14, 7 tokens
per side at 224x224); the proxy has 32, 16, 8, 4 tokens per side on 32x32 inputs. Every choice is
scale-free: super tokens and MAF windows are counted per side of the stage's grid, not in tokens per
cell, so an architecture splits each stage alike at the proxy and at 224x224, and no two choices that
the target prices differently are the same computation at the proxy (tests/test_scale_free.py). Each block type has its FFN width (`mlp_ratio`) as a choice, so every family can trade
width for cost under a limit. Costs quoted in the rules are the cost model's (nas.spaces prints them).
"""
from .arch import Layer
from .references import arch_of, reference, repeat
from .registry import register_space
from .scale import Scale
from .space import SearchSpace, StageRule

_RATIOS = (2, 3, 4)
_STRIPS = (1, 3, 5, 7)
_GLD = (0.25, 0.5)
_MERGES = ("pool", "conv", "spm")

PSVIT_EXT = register_space(
    SearchSpace(
        name="psvit_ext",
        description="PSViT + SPM merges + MAF + Strip-MLP + super-token attention",
        stages=(
            StageRule(depths=(1, 2, 3), blocks=("maf", "strip", "stoken"), mlp_ratios=_RATIOS, strip_widths=_STRIPS, grids=(7, 14),
                      gld_ratios=_GLD, windows=(8,)),
            StageRule(depths=(2, 3, 4, 5), blocks=("mhsa", "shared", "maf", "strip", "stoken"), mlp_ratios=_RATIOS, strip_widths=_STRIPS,
                      grids=(7, 14), gld_ratios=_GLD, windows=(4,)),
            StageRule(depths=(2, 3, 4, 5, 6, 7, 8, 9), blocks=("mhsa", "shared", "strip", "stoken"), mlp_ratios=_RATIOS,
                      strip_widths=_STRIPS, grids=(7, 14)),
            StageRule(depths=(1, 2, 3), blocks=("mhsa", "shared", "strip", "stoken"), mlp_ratios=_RATIOS, strip_widths=_STRIPS, grids=(7,)),
        ),
        merges=(_MERGES, _MERGES, _MERGES),
        target=Scale(name="target", img_size=224, stem_stride=4, embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8)),
        # 32x32 inputs, a stride-1 stem: token grids 32/16/8/4, so that every choice the target prices differently is a
        # different computation at the proxy too (with 16/8/4/2, grids 7 and 14 were one global attention in stages 1-2 and
        # strip widths 3/5/7 one operator in stage 3); half the target's head count of widths keeps a step ~2.3x the old one's
        proxy=Scale(name="proxy", img_size=32, stem_stride=1, embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4), num_classes=10),
        rules=(
            "stage 0 (56x56 tokens at 224): maf, strip, stoken; no global MHSA: an MHSA layer there would cost 1.36-1.41 GMACs "
            "(a third of a 4.5G budget) against 0.06-0.13 for a super-token layer and 0.12-0.24 for a Strip-MLP layer",
            "maf only in stages 0 and 1, where MAFormer uses it: its GLD weight is (gld_ratio x L) x L in the stage's token "
            "count L (2.46-4.92M params per block at 56x56, 0.15-0.31M at 28x28); a MAF block costs 0.63-1.16 GMACs in "
            "stage 0 and 0.20-0.32 in stage 1",
            "'shared' reuses the attention map of the previous layer, which must be an 'mhsa' layer of the same stage",
            "grid, super tokens per side: 7 or 14 in stages 0-2, 7 in stage 3; at 224 the cells are 8 or 4 tokens in stage 0, "
            "4 or 2 in stage 1, 2 or 1 (global MHSA) in stage 2, 1 in stage 3 (STViT-S: 8, 4, 1, 1)",
            "windows, MAF windows per side: 8 in stage 0, 4 in stage 1 (7x7-token windows at 224, as in MAFormer)",
            "mlp_ratio, FFN hidden width over stage width, for every block type: 2, 3 or 4 (the MLP of mhsa, shared and maf, "
            "the ConvFFN of stoken (STViT: 4), the channel mixing of strip (Strip-MLP: 3))",
            "gld_ratio, MAF's global tokens per token: 0.25 or 0.5 (MAFormer: 0.5)",
            "each stage boundary merges by 2x2 token pooling, a strided 3x3 convolution, or SPM (MSA + GLE)",
        ),
    )
)


_STOKEN = {g: Layer("stoken", grid=g, mlp_ratio=4) for g in (7, 14)}
_MHSA = Layer("mhsa", mlp_ratio=4)


@reference("psvit_ext")
def stvit_s():
    """STViT-S (Huang et al., "Vision Transformer with Super Token Sampling", CVPR 2023; github.com/hhb072/STViT):
    widths 64, 128, 320, 512, depths 3, 5, 9, 3, heads 1, 2, 5, 8, super-token cells 8, 4, 1, 1 (7, 7, 14, 7
    super tokens per side at 224), ConvFFN 4C; 25M params, 4.4 GMACs, 83.6% top-1.

    Here: the same blocks, depths and cells, 3x3 stride-2 convolution merges. Counted at 224x224: 4.08 GMACs
    (-7.2%), 24.6M params (-1.6%). The MACs STViT-S has and this member lacks are outside the blocks: STViT's
    stem is four 3x3 convolutions (strides 2, 1, 2, 1; 32 then 64 channels at 112x112 and 56x56, about 0.30 G),
    ours two stride-2 ones (0.07 G); its head is a 1x1 convolution to 1024 channels with BN and Swish before
    the pooled classifier (0.03 G, 1.0M more params than our LayerNorm + linear head); its merges add BN where
    ours add LN. With those, 4.08 + 0.23 + 0.03 = 4.34 G, within 1.5% of the paper's 4.4 G.
    """
    return arch_of("psvit_ext", ("conv", "conv", "conv"), repeat(_STOKEN[7], 3), repeat(_STOKEN[7], 5), repeat(_STOKEN[14], 9),
                   repeat(_STOKEN[7], 3))


@reference("psvit_ext")
def strip_mlp_t():
    """Strip-MLP-T* (Cao et al., "Strip-MLP: Efficient Token Interaction for Vision MLP", ICCV 2023;
    github.com/Med-Process/Strip_MLP): widths 80, 160, 320, 640, depths 2, 2, 6, 2, strip width 3, channel
    mixing 3C; 18M params, 2.5 GMACs, 81.2% top-1.

    Here: the same blocks, depths, strip width and channel mixing, 3x3 stride-2 convolution merges, but the
    space's widths 64, 128, 320, 512 (its stages 0, 1 and 3 are narrower): 2.23 GMACs (-11%), 15.4M params
    (-15%), a Strip-MLP-T*-like member rather than the model itself. The space has one width per stage for
    every block type, so that all families are compared at equal width.
    """
    strip = Layer("strip", strip_width=3, mlp_ratio=3)
    return arch_of("psvit_ext", ("conv", "conv", "conv"), repeat(strip, 2), repeat(strip, 2), repeat(strip, 6), repeat(strip, 2))


@reference("psvit_ext")
def pvt_spm():
    """PVT-Small with SPM merges (Wang et al., "Pyramid Vision Transformer", ICCV 2021: widths 64, 128, 320,
    512, depths 3, 4, 6, 3, heads 1, 2, 5, 8, spatial-reduction attention with ratios 8, 4, 2, 1, MLP ratios
    8, 8, 4, 4; 24.5M params, 3.8 GMACs, 79.8%) with its three stride-2 patch embeddings replaced by stepwise
    patch merging (Yu et al., arXiv 2409.06963, which reports about +0.8 GMACs and +0.8M params for PVT-Tiny).

    Here: SPM at the three boundaries, the same widths, depths and heads. The space has no spatial-reduction
    attention; the closest is super-token attention with 7 super tokens per side in stages 0-2 (cells 8, 4,
    2 at 224: keys pooled 64, 16 and 4 to one, as SRA's ratios 8, 4, 2 pool them; STA also pools the
    queries and maps back), and global MHSA in stage 3 (ratio 1). MLP ratio 4 everywhere (the space's
    largest; PVT uses 8 in stages 0-1). Counted at 224x224: 3.36 GMACs, 20.3M params.
    """
    return arch_of("psvit_ext", ("spm", "spm", "spm"), repeat(_STOKEN[7], 3), repeat(_STOKEN[7], 4), repeat(_STOKEN[7], 6),
                   repeat(_MHSA, 3))


@reference("psvit_ext")
def maformer():
    """MAFormer-like (Wang et al., "MAFormer: A Transformer Network with Multi-scale Attention Fusion for
    Visual Recognition", arXiv 2209.01620): MAF blocks (7x7 local windows, GLD with N = 0.5 global tokens per
    token, cross-attention fusion) in the early stages and plain ViT blocks later, as the paper describes; no
    code or per-stage configuration of its models was found.

    Here: MAF with MLP ratio 4, GLD ratio 0.5 and 7x7-token windows at 224 (8 and 4 windows per side) in
    stages 0 and 1, global MHSA (MLP ratio 4) in stages 2 and 3, depths 1, 2, 6, 2 (one MAF block in stage 0:
    each costs 1.16 GMACs at 56x56), 3x3 stride-2 convolution merges, the space's widths: 3.97 GMACs, 22.7M
    params, so that it fits the 4.5G budget it is compared under.
    """
    return arch_of("psvit_ext", ("conv", "conv", "conv"),
                   [Layer("maf", mlp_ratio=4, gld_ratio=0.5, windows=8)], repeat(Layer("maf", mlp_ratio=4, gld_ratio=0.5, windows=4), 2),
                   repeat(_MHSA, 6), repeat(_MHSA, 2))
