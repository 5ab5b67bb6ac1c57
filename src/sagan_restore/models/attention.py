"""SAGAN self-attention (Zhang et al. 2019) on torch's fused scaled_dot_product_attention."""

import torch
import torch.nn.functional as F
from torch import nn

# Above this many attention weights per image, attention runs in the memory-lean form (see forward).
LEAN_ABOVE = 2**26  # 256 MB of float32 weights: 8192 tokens, a 724x724 tile at depth 3
# In bf16 at inference, from this many tokens on (a 256-pixel tile at depth 3), the split form is also the
# faster one: torch's CPU kernel with one head as wide as v took 0.30 s on the 4,096 tokens of a 512-pixel
# tile's bottleneck, split 0.15 s (float32: 0.33 and 0.31; one thread, Intel Xeon). In training, on crops
# of 144 tokens, splitting is slower (3x the backward time in bf16), so it stays at inference.
BF16_SPLIT_FROM = 1024


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
        d = self.q.out_channels
        # With v wider than q and k, torch's CPU kernel builds the whole HW x HW weight matrix (1 GB at the
        # bottleneck of a 1-megapixel image, 140 GB at 12 MP). Splitting v into C/d heads that share the one
        # q and k computes exactly the same output (the weights do not depend on v) and lets torch use its
        # fused kernel, which never holds the matrix, at the price of computing the weights once per head:
        # worth it in float32 only for large inputs (untiled images), not for training crops or tiles.
        q = self.q(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, d)
        bf16_inference = q.dtype == torch.bfloat16 and not torch.is_grad_enabled() and h * w >= BF16_SPLIT_FROM
        heads = c // d if ((h * w) ** 2 > LEAN_ABOVE or bf16_inference) and c % d == 0 else 1
        k = self.k(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.v(x).flatten(2).view(b, heads, c // heads, h * w).transpose(2, 3)  # (B, heads, HW, C/heads)
        if heads > 1:  # the fused kernel wants contiguous inputs; the copies are no larger than v
            q, k = (t.expand(b, heads, h * w, d).contiguous() for t in (q, k))
            v = v.contiguous()
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return x + self.gamma * out
