"""MAF, multi-scale attention fusion (MAFormer): a local window-attention stream and a global GLD
stream on the same input, fused by cross attention (queries local, keys/values global)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath, trunc_normal_

from .attention import Attention
from .elastic import ElasticMlp, hidden_features
from .registry import register_block_module


def padded_side(side: int, window: int) -> int:
    return math.ceil(side / window) * window


class WindowAttention(nn.Module):
    """MHSA inside non-overlapping windows of a (B, H, W, C) grid, zero-padded to whole windows."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.window = window
        self.attn = Attention(dim, num_heads)

    def forward(self, x):
        B, H, W, C = x.shape
        w = self.window
        Hp, Wp = padded_side(H, w), padded_side(W, w)
        if (Hp, Wp) != (H, W):
            x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
        x = x.reshape(B, Hp // w, w, Wp // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)
        x, _ = self.attn(x)
        x = x.reshape(B, Hp // w, Wp // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        return x[:, :H, :W].contiguous()


class GlobalDownsample(nn.Module):
    """GLD: a fully connected layer along the token axis, L tokens -> ratio*L tokens, plus a position embedding."""

    def __init__(self, dim: int, tokens: int, ratio: float):
        super().__init__()
        self.out_tokens = max(1, int(tokens * ratio))
        self.fc = nn.Linear(tokens, self.out_tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.out_tokens, dim))
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x):  # (B, L, C) -> (B, ratio*L, C)
        return self.fc(x.transpose(1, 2)).transpose(1, 2) + self.pos_embed


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
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


@register_block_module("maf", elastic=("mlp_ratio",))
class MafBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, side: int, mlp_ratio: float, window: int = 7, gld_ratio: float = 0.5, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.local_attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ElasticMlp(dim, hidden_features(dim, mlp_ratio))
        self.norm_global = nn.LayerNorm(dim)
        self.gld = GlobalDownsample(dim, side * side, gld_ratio)
        self.norm3 = nn.LayerNorm(dim)
        self.fuse = CrossAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @classmethod
    def build(cls, layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0) -> "MafBlock":
        return cls(dim, num_heads, side, layer.mlp_ratio, scale.window_size, scale.gld_ratio, drop_path=drop_path)

    def forward(self, x, attn=None, layer=None):
        B, H, W, C = x.shape
        hidden = hidden_features(C, layer.mlp_ratio) if layer is not None else None
        g = self.gld(self.norm_global(x).reshape(B, H * W, C))
        x = x + self.drop_path(self.local_attn(self.norm1(x)))
        t = x.reshape(B, H * W, C)
        t = t + self.drop_path(self.mlp(self.norm2(t), hidden))
        t = t + self.drop_path(self.fuse(self.norm3(t), g))
        return t.reshape(B, H, W, C), None

    @staticmethod
    def cost(dim: int, num_heads: int, side: int, layer, scale) -> tuple[int, int]:
        c, n, w = dim, side * side, scale.window_size
        n_pad = padded_side(side, w) ** 2
        m = max(1, int(n * scale.gld_ratio))
        hidden = hidden_features(c, layer.mlp_ratio)
        wa_macs, wa_params = Attention.cost(w * w, c)
        macs = wa_macs * (n_pad // (w * w))
        mlp_macs, mlp_params = ElasticMlp.cost(n, c, hidden)
        macs += mlp_macs
        macs += c * n * m  # GLD along the token axis
        macs += n * c * c + 2 * m * c * c + 2 * n * m * c + n * c * c  # q, kv, attention, proj
        params = wa_params + mlp_params + 8 * c
        params += n * m + m + m * c  # GLD fc and position embedding
        params += 4 * (c * c + c)  # q, kv, proj
        return macs, params
