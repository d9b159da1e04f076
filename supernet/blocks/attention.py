"""Multi-head self-attention (MHSA) and PSViT's attention-sharing MHSA.

Attention is written out as softmax(QK^T)V where a following 'shared' layer needs the map: it has no Q/K of its
own, skips QK^T and applies the previous layer's map to its V. Where no layer reuses it (`need_map=False`: window
attention, super tokens, an MHSA block whose next layer computes its own; the stage runner in supernet.model asks
a block for its map only where the next layer reuses it), torch's fused kernel runs instead, which never holds the
(heads, N, N) map: on 2 CPU cores 3-5x faster forward and backward at the proxy's 256-1024 tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath

from search_spaces.vocabulary import reuses_attention

from .elastic import ElasticMlp, hidden_features
from .registry import register_block_module


class DetachedMap:
    """The attention map of a layer whose next layer computes its own, formed without gradient only when read
    (`form`). The block-wise alignment of a 'shared' layer after it reads it, and a step aligns one other block
    type per layer, so most of these maps were formed for nothing (bench/lazy_map_cost.py: about 0.07 s of a 1.2 s step)."""

    def __init__(self, attention: "Attention", q, k, key_bias):
        self._args = attention, q.detach(), k.detach(), key_bias

    def form(self):
        attention, q, k, key_bias = self._args
        with torch.no_grad():
            return attention._map(q, k, key_bias)


def formed(attn):
    """The map a block was handed, formed if it is a `DetachedMap`."""
    return attn.form() if isinstance(attn, DetachedMap) else attn


class Attention(nn.Module):
    """Global MHSA on (B, N, C) tokens; returns the output and the attention map (B, heads, N, N)."""

    def __init__(self, dim: int, num_heads: int, shared: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.shared = shared
        if shared:
            self.v = nn.Linear(dim, dim)
        else:
            self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, attn=None, key_bias=None, need_map: bool | str = False):
        """`key_bias` (broadcast to (B, heads, N, N)) is added to the logits: -inf there masks a key. Without
        `need_map` the map is not formed and None is returned in its place (a shared layer returns the map it was given);
        with need_map="detached" the output is the fused kernel's and the map a `DetachedMap`, formed without gradient
        when read (by a reader that detaches it anyway: block-wise alignment)."""
        B, N, C = x.shape
        if self.shared:
            if attn is None:
                raise ValueError("a shared-attention layer needs the previous layer's attention map")
            v = self.v(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        else:
            q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            if need_map is not True:
                x = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias, scale=self.scale)
                attn = DetachedMap(self, q, k, key_bias) if need_map == "detached" else None
                return self.proj(x.transpose(1, 2).reshape(B, N, C)), attn
            attn = self._map(q, k, key_bias)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x), attn

    def _map(self, q, k, key_bias):
        logits = (q * self.scale) @ k.transpose(-2, -1)
        return (logits if key_bias is None else logits + key_bias).softmax(dim=-1)

    @staticmethod
    def cost(tokens: int, dim: int, shared: bool = False) -> tuple[int, int]:
        n, c = tokens, dim
        if shared:
            return 2 * n * c * c + n * n * c, 2 * (c * c + c)
        return 4 * n * c * c + 2 * n * n * c, 4 * (c * c + c)


@register_block_module("mhsa", "shared", elastic=("mlp_ratio",))
class MhsaBlock(nn.Module):
    """Pre-norm transformer block on (B, H, W, C) tokens: x + MHSA(LN(x)), x + MLP(LN(x)).

    With shared=True the attention reuses the map handed in by the previous block.
    """

    SHARED_PARTS = {"mixer_norm": "norm1", "mlp_norm": "norm2", "mlp_fc1": "mlp.fc1", "mlp_fc2": "mlp.fc2"}  # supernet.sharing

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, shared: bool = False, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, shared=shared)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ElasticMlp(dim, hidden_features(dim, mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @classmethod
    def build(cls, layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0) -> "MhsaBlock":
        return cls(dim, num_heads, layer.mlp_ratio, shared=reuses_attention(layer.block), drop_path=drop_path)

    def forward(self, x, attn=None, layer=None, need_map: bool | str = False):
        """`need_map`: form the attention map and return it (the next layer reuses it; "detached": without gradient);
        else None is returned."""
        B, H, W, C = x.shape
        hidden = hidden_features(C, layer.mlp_ratio) if layer is not None else None
        t = x.reshape(B, H * W, C)
        y, attn = self.attn(self.norm1(t), attn, need_map=need_map)
        t = t + self.drop_path(y)
        t = t + self.drop_path(self.mlp(self.norm2(t), hidden))
        return t.reshape(B, H, W, C), attn

    @staticmethod
    def cost(dim: int, num_heads: int, side: int, layer, scale) -> tuple[int, int]:
        n = side * side
        a_macs, a_params = Attention.cost(n, dim, shared=reuses_attention(layer.block))
        m_macs, m_params = ElasticMlp.cost(n, dim, hidden_features(dim, layer.mlp_ratio))
        return a_macs + m_macs, a_params + m_params + 4 * dim
