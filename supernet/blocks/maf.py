"""MAF, multi-scale attention fusion (MAFormer): a local window-attention stream and a global GLD
stream on the same input, fused by cross attention (queries local, keys/values global)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath, trunc_normal_

from search_spaces.vocabulary import cells_per_side

from .attention import Attention
from .elastic import ElasticMlp, hidden_features
from .registry import register_block_module


def padded_side(side: int, window: int) -> int:
    return math.ceil(side / window) * window


class WindowAttention(nn.Module):
    """MHSA inside non-overlapping window x window windows of a (B, H, W, C) grid. A grid the windows do not
    divide is zero-padded to whole windows, and the padded positions are masked as keys."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = Attention(dim, num_heads)

    def forward(self, x, window: int):
        B, H, W, C = x.shape
        w = window
        Hp, Wp = padded_side(H, w), padded_side(W, w)
        key_bias = None
        if (Hp, Wp) != (H, W):
            x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
            real = torch.zeros(Hp, Wp, dtype=torch.bool, device=x.device)
            real[:H, :W] = True
            real = real.reshape(Hp // w, w, Wp // w, w).permute(0, 2, 1, 3).reshape(-1, 1, 1, w * w)  # (windows, 1, 1, keys)
            key_bias = torch.zeros(real.shape, dtype=x.dtype, device=x.device).masked_fill(~real, float("-inf"))
            key_bias = key_bias.repeat(B, 1, 1, 1)
        x = x.reshape(B, Hp // w, w, Wp // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)
        x, _ = self.attn(x, key_bias=key_bias)
        x = x.reshape(B, Hp // w, Wp // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        return x[:, :H, :W].contiguous()

    @staticmethod
    def cost(dim: int, side: int, window: int) -> tuple[int, int]:
        macs, params = Attention.cost(window * window, dim)
        return macs * (padded_side(side, window) // window) ** 2, params


def gld_tokens(tokens: int, ratio: float) -> int:
    return max(1, int(tokens * ratio))


class GlobalDownsample(nn.Module):
    """GLD: a fully connected layer along the token axis, L tokens -> ratio*L tokens, plus a position
    embedding. A smaller ratio runs on the first rows of the widest one's weight and embedding."""

    def __init__(self, dim: int, tokens: int, ratio: float):
        super().__init__()
        self.tokens = tokens
        self.out_tokens = gld_tokens(tokens, ratio)
        self.fc = nn.Linear(tokens, self.out_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.out_tokens, dim))
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x, ratio: float | None = None):  # (B, L, C) -> (B, ratio*L, C)
        m = self.out_tokens if ratio is None else gld_tokens(self.tokens, ratio)
        y = F.linear(x.transpose(1, 2), self.fc.weight[:m], self.fc.bias[:m]).transpose(1, 2)
        return y + self.pos_embed[:, :m]


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context):
        B, N, C = x.shape
        M = context.shape[1]
        h = self.num_heads
        q = self.q(x).reshape(B, N, h, C // h).transpose(1, 2)
        k, v = self.kv(context).reshape(B, M, 2, h, C // h).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v, scale=self.scale).transpose(1, 2).reshape(B, N, C))


@register_block_module("maf", elastic=("mlp_ratio", "gld_ratio"))
class MafBlock(nn.Module):
    """x + WindowAttention(LN(x)), x + MLP(LN(x)), then x + CrossAttention(LN(x), GLD(LN(x_in))).

    The local windows split the stage's grid into `windows` x `windows` parts, whatever the scale
    (search_spaces.vocabulary.cells_per_side); the GLD keeps `gld_ratio` of the stage's tokens.
    """

    SHARED_PARTS = {"mixer_norm": "norm1", "mlp_norm": "norm2", "mlp_fc1": "mlp.fc1", "mlp_fc2": "mlp.fc2"}  # supernet.sharing

    def __init__(self, dim: int, num_heads: int, side: int, mlp_ratio: float, gld_ratio: float, windows: int, drop_path: float = 0.0):
        super().__init__()
        self.side, self.windows = side, windows
        self.norm1 = nn.LayerNorm(dim)
        self.local_attn = WindowAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ElasticMlp(dim, hidden_features(dim, mlp_ratio))
        self.norm_global = nn.LayerNorm(dim)
        self.gld = GlobalDownsample(dim, side * side, gld_ratio)
        self.norm3 = nn.LayerNorm(dim)
        self.fuse = CrossAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @classmethod
    def build(cls, layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0) -> "MafBlock":
        return cls(dim, num_heads, side, layer.mlp_ratio, layer.gld_ratio, layer.windows, drop_path=drop_path)

    def forward(self, x, attn=None, layer=None):
        B, H, W, C = x.shape
        hidden = hidden_features(C, layer.mlp_ratio) if layer is not None else None
        windows = layer.windows if layer is not None else self.windows
        g = self.gld(self.norm_global(x).reshape(B, H * W, C), layer.gld_ratio if layer is not None else None)
        x = x + self.drop_path(self.local_attn(self.norm1(x), cells_per_side(self.side, windows)))
        t = x.reshape(B, H * W, C)
        t = t + self.drop_path(self.mlp(self.norm2(t), hidden))
        t = t + self.drop_path(self.fuse(self.norm3(t), g))
        return t.reshape(B, H, W, C), None

    @staticmethod
    def cost(dim: int, num_heads: int, side: int, layer, scale) -> tuple[int, int]:
        c, n = dim, side * side
        m = gld_tokens(n, layer.gld_ratio)
        macs, params = WindowAttention.cost(c, side, cells_per_side(side, layer.windows))
        mlp_macs, mlp_params = ElasticMlp.cost(n, c, hidden_features(c, layer.mlp_ratio))
        macs += mlp_macs + c * n * m  # MLP, GLD along the token axis
        macs += n * c * c + 2 * m * c * c + 2 * n * m * c + n * c * c  # cross attention: q, kv, QK^T and AV, proj
        params += mlp_params + 8 * c  # MLP, four LayerNorms
        params += n * m + m + m * c  # GLD fc and position embedding
        params += 4 * (c * c + c)  # q, kv, proj
        return macs, params
