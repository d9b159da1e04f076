"""Super-token attention block (STViT, CVPR 2023).

Tokens are pooled into super tokens, one per grid x grid cell; one association step computes each
token's affinity to the 3x3 neighbouring super tokens (without gradient, as in STViT), super tokens
are the affinity-weighted means of their tokens, MHSA runs among the super tokens, and the result is
mapped back with the same affinities. Grid 1 is plain global MHSA among all tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath

from .attention import Attention
from .registry import register_block_module


class SuperTokenAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: int):
        super().__init__()
        self.grid = grid
        self.attn = Attention(dim, num_heads)

    def forward(self, x, grid: int | None = None):  # (B, H, W, C)
        g = grid or self.grid
        B, H, W, C = x.shape
        if g == 1:
            return self.attn(x.reshape(B, H * W, C))[0].reshape(B, H, W, C)
        Hp, Wp = math.ceil(H / g) * g, math.ceil(W / g) * g
        if (Hp, Wp) != (H, W):
            x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
        hh, ww = Hp // g, Wp // g
        m = hh * ww
        pix = x.reshape(B, hh, g, ww, g, C).permute(0, 1, 3, 2, 4, 5).reshape(B, m, g * g, C)

        def neighbours(s):  # (B, C, hh, ww) -> (B, m, 9, C): each cell's 3x3 neighbouring super tokens
            return F.unfold(s, 3, padding=1).reshape(B, C, 9, m).permute(0, 3, 2, 1)

        def fold(t):  # (B, k, 9, m) contributions to neighbours -> (B, k, hh, ww) sums
            return F.fold(t.reshape(B, -1, m), (hh, ww), 3, padding=1)

        with torch.no_grad():
            init = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), (hh, ww))
            affinity = (pix @ neighbours(init).transpose(-1, -2) * C**-0.5).softmax(-1)  # (B, m, g*g, 9)
            affinity_sum = fold(affinity.sum(2).transpose(1, 2).unsqueeze(1))  # (B, 1, hh, ww)
        contrib = (pix.transpose(-1, -2) @ affinity).permute(0, 2, 3, 1)  # (B, C, 9, m)
        stokens = fold(contrib) / (affinity_sum + 1e-12)  # (B, C, hh, ww)
        refined = self.attn(stokens.flatten(2).transpose(1, 2))[0]  # (B, m, C)
        refined = refined.transpose(1, 2).reshape(B, C, hh, ww)
        out = affinity @ neighbours(refined)  # (B, m, g*g, C)
        out = out.reshape(B, hh, ww, g, g, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        return out[:, :H, :W].contiguous()

    @staticmethod
    def cost(dim: int, side: int, grid: int) -> tuple[int, int]:
        c = dim
        if grid == 1:
            return Attention.cost(side * side, c)
        cells = math.ceil(side / grid)
        n_pad, m = (cells * grid) ** 2, cells * cells
        a_macs, a_params = Attention.cost(m, c)
        return 27 * n_pad * c + a_macs, a_params


class ConvFfn(nn.Module):
    """1x1 expand, GELU, residual depthwise 3x3 on the hidden features, 1x1 project (NCHW)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dw(x))


@register_block_module("stoken")
class SuperTokenBlock(nn.Module):
    """x + DWConv3x3(x) (position encoding); x + STA(LN(x)); x + ConvFFN(BN(x)). Hidden width 4C as in STViT."""

    def __init__(self, dim: int, num_heads: int, grid: int, drop_path: float = 0.0):
        super().__init__()
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SuperTokenAttention(dim, num_heads, grid)
        self.norm2 = nn.BatchNorm2d(dim)
        self.ffn = ConvFfn(dim, 4 * dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @classmethod
    def build(cls, layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0) -> "SuperTokenBlock":
        return cls(dim, num_heads, layer.grid, drop_path=drop_path)

    def forward(self, x, attn=None, layer=None):
        grid = layer.grid if layer is not None else None
        x = x + self.pos(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        y = x.permute(0, 3, 1, 2)
        y = y + self.drop_path(self.ffn(self.norm2(y)))
        return y.permute(0, 2, 3, 1), None

    @staticmethod
    def cost(dim: int, num_heads: int, side: int, layer, scale) -> tuple[int, int]:
        c, n = dim, side * side
        a_macs, a_params = SuperTokenAttention.cost(c, side, layer.grid)
        macs = 9 * n * c + a_macs + 8 * n * c * c + 36 * n * c
        params = 10 * c + 2 * c + a_params + 2 * c + (4 * c * c + 4 * c) + 40 * c + (4 * c * c + c)
        return macs, params
