"""Plain merges between stages on (B, H, W, C) tokens: PSViT's 2x2 token pooling and a strided 3x3 convolution."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .registry import register_merge_module


@register_merge_module("pool")
class TokenPool(nn.Module):
    """LN, 2x2 average pooling of the token grid, Linear to the next stage's width, LN.

    The last LN puts the next stage's residual stream on the scale the conv and SPM merges hand it (both end
    in a LayerNorm): without it the stream after a pool merge had an RMS of 0.06-0.18 against 1.0 after the
    others, and the blocks every merge shares saw inputs ten times smaller on pool paths."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim_in)
        self.proj = nn.Linear(dim_in, dim_out)
        self.out_norm = nn.LayerNorm(dim_out)

    def forward(self, x):
        x = self.norm(x).permute(0, 3, 1, 2)
        return self.out_norm(self.proj(F.avg_pool2d(x, 2).permute(0, 2, 3, 1)))

    @staticmethod
    def cost(dim_in: int, dim_out: int, side_in: int) -> tuple[int, int]:
        n_out = (side_in // 2) ** 2
        return n_out * dim_in * dim_out, 2 * dim_in + dim_in * dim_out + dim_out + 2 * dim_out


@register_merge_module("conv")
class ConvMerge(nn.Module):
    """3x3 convolution with stride 2, then LN."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, x):
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))

    @staticmethod
    def cost(dim_in: int, dim_out: int, side_in: int) -> tuple[int, int]:
        n_out = (side_in // 2) ** 2
        return 9 * n_out * dim_in * dim_out, 9 * dim_in * dim_out + 3 * dim_out
