"""`psvit_ext`: the PSViT skeleton on four stages, extended with SPM, MAF, Strip-MLP and super tokens.

Stage rules (grids at 224x224: 56, 28, 14, 7 tokens per side):
- global MHSA and attention sharing only from stage 1 on (3136 tokens in stage 0 make global
  attention cost more than the whole budget);
- MAF only in stages 0 and 1: its GLD weight is (L/2 x L) in the stage's token count L, the design
  MAFormer uses for its early stages;
- super-token cell sizes shrink with the grid (8 or 4 tokens per side in stage 0 down to 1, plain
  global attention among the tokens, in stage 3);
- the MLP ratio is a choice only where the block has a plain MLP (mhsa, shared, maf).
"""
from .registry import register_space
from .scale import Scale
from .space import SearchSpace, StageRule

_RATIOS = (2, 3, 4)
_STRIPS = (1, 3, 5, 7)
_MERGES = ("pool", "conv", "spm")

PSVIT_EXT = register_space(
    SearchSpace(
        name="psvit_ext",
        description="PSViT + SPM merges + MAF + Strip-MLP + super-token attention",
        stages=(
            StageRule(depths=(1, 2, 3), blocks=("maf", "strip", "stoken"), mlp_ratios=_RATIOS, strip_widths=_STRIPS, grids=(4, 8)),
            StageRule(depths=(2, 3, 4, 5), blocks=("mhsa", "shared", "maf", "strip", "stoken"), mlp_ratios=_RATIOS, strip_widths=_STRIPS, grids=(2, 4)),
            StageRule(depths=(3, 5, 7), blocks=("mhsa", "shared", "strip", "stoken"), mlp_ratios=_RATIOS, strip_widths=_STRIPS, grids=(1, 2)),
            StageRule(depths=(1, 2, 3), blocks=("mhsa", "shared", "strip", "stoken"), mlp_ratios=_RATIOS, strip_widths=_STRIPS, grids=(1,)),
        ),
        merges=(_MERGES, _MERGES, _MERGES),
        target=Scale(name="target", img_size=224, stem_stride=4, embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8)),
        proxy=Scale(name="proxy", img_size=32, stem_stride=2, embed_dims=(32, 64, 96, 128), num_heads=(1, 2, 3, 4), num_classes=10),
        rules=(
            "stage 0 (56x56 tokens at 224): maf, strip, stoken; no global attention",
            "maf only in stages 0 and 1 (its GLD weight grows with the square of the stage's token count)",
            "'shared' reuses the attention map of the previous layer, which must be an 'mhsa' layer of the same stage",
            "stoken grid (cell size, tokens per side): stage 0 {4, 8}, stage 1 {2, 4}, stage 2 {1, 2}, stage 3 {1}",
            "mlp_ratio only for blocks with a plain MLP (mhsa, shared, maf)",
            "each stage boundary merges by 2x2 token pooling, a strided 3x3 convolution, or SPM (MSA + GLE)",
        ),
    )
)
