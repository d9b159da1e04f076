"""A block type added from outside the package, the documented way: one choice field row, one block type
row, one module registered for it, and a space that uses it. Nothing under search_spaces/, supernet/ or
nas/ knows about it.

`dwconv`: x + depthwise k x k convolution of LN(x), with the kernel size k a choice (elastic: a smaller
kernel runs on the centre taps of the largest, as OFA's elastic kernels do).
"""
from dataclasses import replace

import torch.nn.functional as F
from torch import nn

from search_spaces import ChoiceField, StageRule, get_space, list_spaces, register_block_type, register_choice_field, register_space
from supernet import register_space_model
from supernet.blocks import center_slice, register_block_module

KERNEL = register_choice_field(ChoiceField("kernel", short="k", label="kernel size", rule_attr="kernels", default=(3,), tag="k"))
register_block_type("dwconv", ("kernel",))


@register_block_module("dwconv", elastic=("kernel",))
class DepthwiseConvBlock(nn.Module):
    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    @classmethod
    def build(cls, layer, dim, num_heads, side, scale, drop_path=0.0):
        return cls(dim, layer.kernel)

    def forward(self, x, attn=None, layer=None):  # (B, H, W, C)
        k = layer.kernel if layer is not None else self.conv.kernel_size[0]
        taps = center_slice(k, self.conv.kernel_size[0])
        y = self.norm(x).permute(0, 3, 1, 2)
        y = F.conv2d(y, self.conv.weight[:, :, taps, taps], self.conv.bias, padding=k // 2, groups=self.conv.groups)
        return x + y.permute(0, 2, 3, 1), None

    @staticmethod
    def cost(dim, num_heads, side, layer, scale):
        k = layer.kernel
        return side * side * dim * k * k, dim * k * k + dim + 2 * dim


if "toy_conv" not in list_spaces():
    _ext = get_space("psvit_ext")
    register_space(replace(
        _ext, name="toy_conv", description="psvit_ext with a depthwise-convolution block in every stage",
        stages=tuple(StageRule(depths=r.depths, blocks=(*r.blocks, "dwconv"), mlp_ratios=r.mlp_ratios, strip_widths=r.strip_widths,
                               grids=r.grids, values={"kernel": (3, 5, 7)}) for r in _ext.stages),
    ))
    register_space_model("toy_conv")
