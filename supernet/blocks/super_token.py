"""Super-token attention block (STViT, CVPR 2023).

Tokens are pooled into super tokens, one per cell x cell tokens; one association step computes each
token's affinity to the 3x3 neighbouring super tokens (without gradient, as in STViT), super tokens
are the affinity-weighted means of their tokens, MHSA runs among the super tokens, and the result is
mapped back with the same affinities. Cell 1 is plain global MHSA among all tokens.

The choice (`grid`) is the number of super tokens per side; the cell size follows from the stage's token
grid (search_spaces.vocabulary.cells_per_side), so an architecture partitions a stage alike at every
scale: STViT-S's cells 8, 4, 1, 1 at 224x224 are 7, 7, 14, 7 super tokens per side.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath

from search_spaces.vocabulary import cells_per_side

from .attention import Attention
from .elastic import hidden_features
from .registry import register_block_module


class SuperTokenAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = Attention(dim, num_heads)

    def forward(self, x, g: int):  # (B, H, W, C), cells of g x g tokens
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
    def cost(dim: int, side: int, cell: int) -> tuple[int, int]:
        c = dim
        if cell == 1:
            return Attention.cost(side * side, c)
        cells = math.ceil(side / cell)
        n_pad, m = (cells * cell) ** 2, cells * cells
        a_macs, a_params = Attention.cost(m, c)
        return 27 * n_pad * c + a_macs, a_params


def _pointwise(x, weight, bias):
    """A 1x1 convolution of NCHW `x` with a (out, in, 1, 1) kernel or a Linear's (out, in) weight (the supernet's
    shared MLP projections, supernet.sharing)."""
    return F.conv2d(x, weight.reshape(weight.shape[0], weight.shape[1], 1, 1), bias)


class ConvFfn(nn.Module):
    """1x1 expand, GELU, residual depthwise 3x3 on the hidden features, 1x1 project (NCHW). A smaller
    hidden width runs on the first channels of the widest one's weights."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x, hidden: int | None = None):
        h = hidden or self.dw.out_channels
        x = self.act(_pointwise(x, self.fc1.weight[:h], self.fc1.bias[:h]))
        x = x + F.conv2d(x, self.dw.weight[:h], self.dw.bias[:h], padding=1, groups=h)
        return _pointwise(x, self.fc2.weight[:, :h], self.fc2.bias)

    @staticmethod
    def cost(tokens: int, dim: int, hidden: int) -> tuple[int, int]:
        return 2 * tokens * dim * hidden + 9 * tokens * hidden, 2 * dim * hidden + hidden + dim + 10 * hidden


@register_block_module("stoken", elastic=("mlp_ratio",))
class SuperTokenBlock(nn.Module):
    """x + DWConv3x3(x) (position encoding); x + STA(LN(x)); x + ConvFFN(BN(x)), hidden width mlp_ratio x C
    (STViT: 4C)."""

    SHARED_PARTS = {"mixer_norm": "norm1", "mlp_fc1": "ffn.fc1", "mlp_fc2": "ffn.fc2"}  # supernet.sharing

    def __init__(self, dim: int, num_heads: int, side: int, grid: int, mlp_ratio: float, drop_path: float = 0.0):
        super().__init__()
        self.side, self.grid = side, grid
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SuperTokenAttention(dim, num_heads)
        self.norm2 = nn.BatchNorm2d(dim)
        self.ffn = ConvFfn(dim, hidden_features(dim, mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @classmethod
    def build(cls, layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0) -> "SuperTokenBlock":
        return cls(dim, num_heads, side, layer.grid, layer.mlp_ratio, drop_path=drop_path)

    def forward(self, x, attn=None, layer=None):
        grid = layer.grid if layer is not None else self.grid
        hidden = hidden_features(x.shape[-1], layer.mlp_ratio) if layer is not None else None
        x = x + self.pos(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x), cells_per_side(self.side, grid)))  # the built grid: a plain int when traced
        y = x.permute(0, 3, 1, 2)
        y = y + self.drop_path(self.ffn(self.norm2(y), hidden))
        return y.permute(0, 2, 3, 1), None

    @staticmethod
    def cost(dim: int, num_heads: int, side: int, layer, scale) -> tuple[int, int]:
        c, n = dim, side * side
        a_macs, a_params = SuperTokenAttention.cost(c, side, cells_per_side(side, layer.grid))
        f_macs, f_params = ConvFfn.cost(n, c, hidden_features(c, layer.mlp_ratio))
        macs = 9 * n * c + a_macs + f_macs
        params = 10 * c + 2 * c + a_params + 2 * c + f_params  # position conv, LN, attention, BN, ConvFFN
        return macs, params
