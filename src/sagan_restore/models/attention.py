"""SAGAN self-attention (Zhang et al. 2019) on torch's fused scaled_dot_product_attention."""

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention2d(nn.Module):
    """Every position attends to every other: y = x + gamma * softmax(q k^T / sqrt(d)) v.

    q and k are 1x1 projections to C/8 channels (SAGAN's choice: the attention map needs few channels);
    v keeps all C. gamma starts at 0, so a fresh block is the identity and the network first learns local
    features, then lets long-range context in as gamma grows. Costs O((HW)^2): use at coarse levels only.
    """

    def __init__(self, channels: int):
        super().__init__()
        qk_channels = max(channels // 8, 1)
        self.q = nn.Conv2d(channels, qk_channels, 1)
        self.k = nn.Conv2d(channels, qk_channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C/8)
        k = self.k(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C/8)
        v = self.v(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.gamma * out
