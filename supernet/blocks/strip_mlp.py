"""Strip-MLP block (ICCV 2023): token mixing by strip MLPs along rows then columns (CGSMM) beside
depthwise strip convolutions (LSMM), then ConvNeXt-V2 style channel mixing.

The strip projections mix W tokens of a row with the rows within the strip width; their weights and
the relative-position tables are sized by the stage's grid. Elastic strip width: a width-s strip
runs on the middle s taps of the widest kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath, GlobalResponseNormMlp, trunc_normal_

from .elastic import center_slice, hidden_features
from .registry import register_block_module


class RelativePosition(nn.Module):
    """A (side, side, C) bias indexed by the column-row offset, as in the Strip-MLP code."""

    def __init__(self, dim: int, side: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(2 * side - 1, dim))
        trunc_normal_(self.table, std=0.02)
        idx = torch.arange(side)
        self.register_buffer("index", (idx[None, :] - idx[:, None] + side - 1), persistent=False)

    def forward(self):  # (1, C, side, side)
        return self.table[self.index].permute(2, 0, 1).unsqueeze(0)


class StripProjection(nn.Module):
    """For each channel slot, a side->side token MLP along one axis over a strip of neighbouring lines.

    Input (B', slots, side, side). Implemented as a grouped 1-D convolution: channels = slot x position
    along the mixed axis, kernel taps = neighbouring lines.
    """

    def __init__(self, slots: int, side: int, strip_width: int):
        super().__init__()
        self.slots, self.side, self.strip_width = slots, side, strip_width
        self.proj = nn.Conv1d(slots * side, slots * side, strip_width, padding=strip_width // 2, groups=slots)

    def forward(self, x, strip_width: int | None = None, along_rows: bool = True):
        Bp, S, H, W = x.shape
        if along_rows:  # mix the W tokens of each row: channels (slot, w), sequence h
            x = x.permute(0, 1, 3, 2).reshape(Bp, S * W, H)
        else:  # mix the H tokens of each column: channels (slot, h), sequence w
            x = x.reshape(Bp, S * H, W)
        s = strip_width or self.strip_width
        if s == self.strip_width:
            x = self.proj(x)
        else:
            weight = self.proj.weight[:, :, center_slice(s, self.strip_width)]
            x = F.conv1d(x, weight, self.proj.bias, padding=s // 2, groups=self.slots)
        if along_rows:
            return x.reshape(Bp, S, W, H).permute(0, 1, 3, 2)
        return x.reshape(Bp, S, H, W)


def _groups(dim: int) -> int:
    """P, the number of channel groups that share one strip projection (2 or 4 as in the paper's code)."""
    return 2 if dim % 80 == 0 else 4


class StripTokenMixing(nn.Module):
    def __init__(self, dim: int, side: int, strip_width: int):
        super().__init__()
        half = dim // 2
        self.groups = _groups(dim)
        if half % self.groups:
            raise ValueError(f"Strip-MLP needs width/2 divisible by {self.groups}, got width {dim}")
        slots = half // self.groups
        self.pre = nn.Sequential(nn.BatchNorm2d(dim), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))
        self.inp = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim), nn.GELU())
        # CGSMM: cascaded row and column strip MLPs
        self.pos_rows = RelativePosition(half, side)
        self.pos_cols = RelativePosition(half, side)
        self.strip_rows = StripProjection(slots, side, strip_width)
        self.strip_cols = StripProjection(slots, side, strip_width)
        self.fuse_rows = nn.Conv2d(dim, half, 1, bias=False)
        self.norm_rows = nn.BatchNorm2d(half)
        self.fuse_cols = nn.Conv2d(dim, half, 1, bias=False)
        # LSMM: depthwise strip convolutions re-weighted against the identity
        self.conv_rows = nn.Conv2d(half, half, (3, 7), padding=(1, 3), groups=half, bias=False)
        self.conv_cols = nn.Conv2d(half, half, (7, 3), padding=(3, 1), groups=half, bias=False)
        self.reweight = nn.Sequential(nn.Conv2d(half, half // 2, 1), nn.GELU(), nn.Conv2d(half // 2, half * 3, 1))
        self.out = nn.Conv2d(dim, dim, 1, bias=False)

    def _cgsmm(self, x, strip_width):
        B, C, H, W = x.shape
        P = self.groups
        xr = (x + self.pos_rows()).reshape(B * P, C // P, H, W)
        xr = self.strip_rows(xr, strip_width, along_rows=True).reshape(B, C, H, W)
        xr = F.gelu(self.norm_rows(self.fuse_rows(torch.cat([xr, x], dim=1)))) + self.pos_cols()
        xc = self.strip_cols(xr.reshape(B * P, C // P, H, W), strip_width, along_rows=False).reshape(B, C, H, W)
        return self.fuse_cols(torch.cat([x, xc], dim=1))

    def _lsmm(self, x):
        B, C = x.shape[:2]
        xr, xc = self.conv_rows(x), self.conv_cols(x)
        weights = self.reweight(F.adaptive_avg_pool2d(xr + xc + x, 1)).reshape(B, C, 3).permute(2, 0, 1).softmax(dim=0)
        w = weights[..., None, None]
        return xr * w[0] + xc * w[1] + x * w[2]

    def forward(self, x, strip_width=None):  # NCHW
        x = self.inp(self.pre(x))
        a, b = x.chunk(2, dim=1)
        return self.out(torch.cat([self._cgsmm(a, strip_width), self._lsmm(b)], dim=1))


class ElasticGrnMlp(GlobalResponseNormMlp):
    """timm's GRN MLP (ConvNeXt-V2 channel mixing) whose hidden width can be any prefix of the one it was
    built with; GRN's weight and bias are sliced with it (GRN normalises over the hidden channels it is given)."""

    def forward(self, x, hidden: int | None = None):
        if hidden is None or hidden == self.fc1.out_features:
            return super().forward(x)
        x = self.act(F.linear(x, self.fc1.weight[:hidden], self.fc1.bias[:hidden]))
        grn = self.grn
        x_g = x.norm(p=2, dim=grn.spatial_dim, keepdim=True)
        x_n = x_g / (x_g.mean(dim=grn.channel_dim, keepdim=True) + grn.eps)
        x = x + torch.addcmul(grn.bias[:hidden].view(grn.wb_shape), grn.weight[:hidden].view(grn.wb_shape), x * x_n)
        return F.linear(x, self.fc2.weight[:, :hidden], self.fc2.bias)


@register_block_module("strip", elastic=("strip_width", "mlp_ratio"))
class StripMlpBlock(nn.Module):
    """x + TokenMixing(x), then x + ChannelMixing(x): depthwise 7x7, LN, GRN MLP of hidden width mlp_ratio x C
    (Strip-MLP: 3C)."""

    SHARED_PARTS = {"mlp_norm": "channel_norm", "mlp_fc1": "channel_mlp.fc1", "mlp_fc2": "channel_mlp.fc2"}  # supernet.sharing

    def __init__(self, dim: int, side: int, strip_width: int, mlp_ratio: float, drop_path: float = 0.0):
        super().__init__()
        self.token_mixing = StripTokenMixing(dim, side, strip_width)
        self.channel_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.channel_norm = nn.LayerNorm(dim)
        self.channel_mlp = ElasticGrnMlp(dim, hidden_features(dim, mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @classmethod
    def build(cls, layer, dim: int, num_heads: int, side: int, scale, drop_path: float = 0.0) -> "StripMlpBlock":
        return cls(dim, side, layer.strip_width, layer.mlp_ratio, drop_path=drop_path)

    def forward(self, x, attn=None, layer=None):
        strip_width = layer.strip_width if layer is not None else None
        hidden = hidden_features(x.shape[-1], layer.mlp_ratio) if layer is not None else None
        x = x.permute(0, 3, 1, 2)
        x = x + self.drop_path(self.token_mixing(x, strip_width))
        y = self.channel_norm(self.channel_dw(x).permute(0, 2, 3, 1))
        x = x.permute(0, 2, 3, 1) + self.drop_path(self.channel_mlp(y, hidden))
        return x, None

    @staticmethod
    def cost(dim: int, num_heads: int, side: int, layer, scale) -> tuple[int, int]:
        c, n, h = dim, side * side, dim // 2
        slots, s = h // _groups(dim), layer.strip_width
        macs = 9 * n * c + n * c * c  # pre depthwise 3x3, input 1x1
        macs += 2 * h * side * n * s  # row and column strips: C' H W^2 s + C' W H^2 s
        macs += 2 * n * (2 * h) * h  # the two fuse 1x1 convolutions
        macs += 2 * 21 * n * h + h * (h // 2) + (h // 2) * 3 * h  # LSMM strips and re-weighting MLP
        macs += n * c * c  # output 1x1
        hidden = hidden_features(c, layer.mlp_ratio)
        macs += 49 * n * c + 2 * n * c * hidden  # channel mixing
        params = 2 * c + 10 * c + c * c + c + 2 * c  # pre BN + dw, input 1x1 + BN
        params += 2 * (2 * side - 1) * h  # position tables
        params += 2 * (slots * side * side * s + slots * side)  # strip projections
        params += 2 * (2 * h * h) + 2 * h  # fuses + BN
        params += 2 * 21 * h + (h * (h // 2) + h // 2) + ((h // 2) * 3 * h + 3 * h)  # LSMM
        params += c * c  # output 1x1
        params += 50 * c + 2 * c + (c * hidden + hidden) + 2 * hidden + (hidden * c + c)  # channel mixing
        return macs, params
