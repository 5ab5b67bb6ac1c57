"""SAGAN self-attention (Zhang et al. 2019): torch's fused scaled_dot_product_attention where gradients
flow or on a GPU, blocks of query rows as plain matrix products at inference on a CPU."""

import torch
import torch.nn.functional as F
from torch import nn

# Above this many attention weights per image, the fused path runs in the memory-lean form (see forward).
LEAN_ABOVE = 2**26  # 256 MB of float32 weights: 8192 tokens, a 724x724 tile at depth 3
# On a GPU in bf16 at inference, from this many tokens on, the fused path splits v into heads too (chosen on
# an Intel Xeon's CPU, before row blocks replaced it on CPUs: 0.15 s against one head's 0.30 at 4,096 tokens).
BF16_SPLIT_FROM = 1024
# At inference on a CPU the weights are computed a block of query rows at a time, each block holding at
# most this many (16 MB in float32; blocks of 1,024 rows at a 512-pixel tile's 4,096 tokens): the memory
# stays bounded at any input size. Of blocks of 2^21, 2^22 and 2^23 weights (benchmarks/attention_forms.py)
# it was the fastest in bf16 at 384- and 512-pixel tiles and within 1.25x of the fastest everywhere.
ROW_BLOCK_WEIGHTS = 2**22


def attention_by_row_blocks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                            max_weights: int | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for (B, N, d) q and k and (B, N, C) v, the weights of a block of query
    rows at a time (at most `max_weights` of them, default ROW_BLOCK_WEIGHTS). The logits and the softmax
    are float32 whatever the inputs, as in the fused kernels; the weights are cast to v's dtype for the
    product with v, the bulk of the work (C is 8 times d)."""
    rows = max(1, (max_weights or ROW_BLOCK_WEIGHTS) // k.shape[1])
    keys = (k.float() * k.shape[-1] ** -0.5).transpose(1, 2)
    blocks = []
    for block in q.split(rows, dim=1):
        with torch.autocast(q.device.type, enabled=False):  # autocast would run the logits in bf16
            weights = torch.softmax(block.float() @ keys, dim=-1).to(v.dtype)
        blocks.append(weights @ v)
    return torch.cat(blocks, dim=1)


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
        if x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.jit.is_tracing():
            # A CPU at inference: torch's CPU kernels, fused or not, compute the weights once per head or
            # hold the whole HW x HW matrix; blocks of rows do neither, and ran 1.4-4x faster on the tiles'
            # 1,000-16,000 tokens here (benchmarks/attention_forms.py). Tracing for ONNX export keeps the one
            # fused operator below, whose graph works at any size.
            q, k, v = (proj(x).flatten(2).transpose(1, 2) for proj in (self.q, self.k, self.v))  # (B, HW, .)
            out = attention_by_row_blocks(q, k, v).transpose(1, 2).reshape(b, c, h, w)
            return x + self.gamma * out
        d = self.q.out_channels
        # With v wider than q and k, torch's CPU kernel builds the whole HW x HW weight matrix (1 GB at the
        # bottleneck of a 1-megapixel image, 140 GB at 12 MP). Splitting v into C/d heads that share the one
        # q and k computes exactly the same output (the weights do not depend on v) and lets torch use its
        # fused kernel, which never holds the matrix, at the price of computing the weights once per head:
        # worth it for large inputs (untiled images), not for training crops (in bf16 3x the backward time).
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
