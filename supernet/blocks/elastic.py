"""Weight-entangled layers: a smaller choice runs on a slice of the largest weight."""
from __future__ import annotations

import torch.nn.functional as F
from timm.layers import Mlp


def hidden_features(dim: int, mlp_ratio: float) -> int:
    return int(round(dim * mlp_ratio))


def center_slice(size: int, full: int) -> slice:
    """The middle `size` taps of a kernel of `full` taps (strip width 3 is the centre of width 7)."""
    start = (full - size) // 2
    return slice(start, start + size)


class ElasticMlp(Mlp):
    """timm's Mlp whose hidden width can be any prefix of the one it was built with."""

    def forward(self, x, hidden: int | None = None):
        if hidden is None or hidden == self.fc1.out_features:
            return super().forward(x)
        x = F.linear(x, self.fc1.weight[:hidden], self.fc1.bias[:hidden])
        x = self.drop1(self.act(x))
        x = F.linear(x, self.fc2.weight[:, :hidden], self.fc2.bias)
        return self.drop2(x)

    @staticmethod
    def cost(tokens: int, dim: int, hidden: int) -> tuple[int, int]:
        """(MACs, params) of fc1 + fc2 on `tokens` tokens."""
        return 2 * tokens * dim * hidden, 2 * dim * hidden + hidden + dim
