"""The generator: a U-Net of residual blocks with SAGAN self-attention at the coarse levels.

Level i works at 1/2**i of the input resolution with width * 2**i channels. Skips add encoder features
to the decoder's (as NAFNet does; cheaper than concatenation for the same quality). Down: stride-2 conv;
up: 1x1 conv + pixel shuffle, never transposed convolutions, whose uneven kernel overlap paints the
checkerboards pix2pix users complain about. No normalisation layers, so there are no batch statistics
and training and inference compute the same function.

Blocks: "res" (conv-LeakyReLU-conv) or NAFNet's ("naf", Chen et al. 2022), chosen per model by
`GeneratorConfig.block`. With `unshuffle` > 1 the U-Net starts at a lower resolution, as FFDNet does: a
pixel unshuffle folds each 2x2 patch into channels, so every pixel is still seen, and the full-resolution
level, where a 32-channel convolution moves the most memory per FLOP, is gone.

Super-resolution runs the whole U-Net at the low input resolution and upsamples at the end (pixel
shuffle), as ESPCN and EDSR do: scale**2 times fewer FLOPs than working on a pre-upsampled input, and no
worse in quality because the tail learns the upsampling instead of starting from bicubic's blur. A global
residual adds the (bicubic-upsampled) input, so the network only learns the correction. The tail is EDSR's
(a conv + shuffle per x2 step, a conv at the output resolution) or, with `upsampler="once"`, ESPCN's (one
conv at the input resolution and one shuffle).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sagan_restore.config import GeneratorConfig
from sagan_restore.models.attention import SelfAttention2d
from sagan_restore.models.noise_level import noise_level_map


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel (NAFNet's), with a learned per-channel scale and shift."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class SimpleGate(nn.Module):
    """Halves the channels by multiplying one half with the other: NAFNet's replacement for activations."""

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """NAFNet's block: a spatial half (LayerNorm, 1x1 to 2C, depthwise 3x3, SimpleGate, simplified channel
    attention, 1x1) and a gated feed-forward half, each added through a learned per-channel scale that
    starts at 0, so a fresh block is the identity.

    The channel attention scales channels by a 1x1 conv of their mean over the whole input: over a training
    crop, or over a tile at inference (the tiles are larger than the crops, so the means are steadier)."""

    def __init__(self, channels: int):
        super().__init__()
        c2 = 2 * channels
        self.norm1 = LayerNorm2d(channels)
        self.expand = nn.Conv2d(channels, c2, 1)
        self.depthwise = nn.Conv2d(c2, c2, 3, padding=1, groups=c2)
        self.gate = SimpleGate()
        self.channel_attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))
        self.project = nn.Conv2d(channels, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        self.ffn_expand = nn.Conv2d(channels, c2, 1)
        self.ffn_project = nn.Conv2d(channels, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        y = self.gate(self.depthwise(self.expand(self.norm1(x))))
        y = self.project(y * self.channel_attention(y))
        x = x + self.beta * y
        y = self.ffn_project(self.gate(self.ffn_expand(self.norm2(x))))
        return x + self.gamma * y


BLOCKS = {"res": ResBlock, "naf": NAFBlock}


def _stage(channels: int, blocks: int, attention: bool, block: str) -> nn.Sequential:
    layers: list[nn.Module] = [BLOCKS[block](channels) for _ in range(blocks)]
    if attention:
        layers.append(SelfAttention2d(channels))
    return nn.Sequential(*layers)


class Upsample(nn.Sequential):
    """x2 (or x3) upsampling by a conv to scale**2 as many channels, then pixel shuffle."""

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__(nn.Conv2d(in_channels, out_channels * factor**2, 1), nn.PixelShuffle(factor))


# The pixel-shuffle steps of each super-resolution factor (x4 is two x2 steps).
UPSAMPLING_STEPS = {1: (), 2: (2,), 3: (3,), 4: (2, 2)}


def _upsampling_tail(channels: int, scale: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for f in UPSAMPLING_STEPS[scale]:
        layers += [nn.Conv2d(channels, channels * f * f, 3, padding=1), nn.PixelShuffle(f), nn.LeakyReLU(0.2, True)]
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        widths = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        attn = set(cfg.attn_levels)
        blocks = cfg.level_blocks
        u = cfg.unshuffle
        head_in = cfg.in_channels + cfg.noise_map
        # Module names of the default architecture are those of the first shipped models: their files load.
        self.head = nn.Sequential(nn.PixelUnshuffle(u), nn.Conv2d(head_in * u * u, widths[0], 3, padding=1)) \
            if u > 1 else nn.Conv2d(head_in, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList(_stage(widths[i], blocks[i], i in attn, cfg.block) for i in range(cfg.depth))
        self.downs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in range(cfg.depth))
        self.bottleneck = _stage(widths[-1], blocks[-1], cfg.depth in attn, cfg.block)
        self.ups = nn.ModuleList(Upsample(widths[i + 1], widths[i], 2) for i in range(cfg.depth))
        self.decoders = nn.ModuleList(_stage(widths[i], blocks[i], False, cfg.block) for i in range(cfg.depth))
        if cfg.upsampler == "once":  # super-resolution only, where u is 1
            self.upsample = nn.Identity()
            self.tail = nn.Sequential(nn.Conv2d(widths[0], cfg.out_channels * cfg.scale**2, 3, padding=1),
                                      nn.PixelShuffle(cfg.scale))
        else:
            self.upsample = _upsampling_tail(widths[0], cfg.scale)
            self.tail = (nn.Sequential(nn.Conv2d(widths[0], cfg.out_channels * u * u, 3, padding=1), nn.PixelShuffle(u))
                         if u > 1 else nn.Conv2d(widths[0], cfg.out_channels, 3, padding=1))

    @property
    def multiple(self) -> int:
        return self.cfg.multiple

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C_in, H, W) in [0, 1]. noise_level: (B,) or a scalar tensor, for models with a noise-level
        map: what the map holds instead of the built-in estimate on x (a whole image's level for each of its
        tiles, or a level scaled by the user to denoise more or less)."""
        h, w = x.shape[-2:]
        x_padded = pad_to_multiple(x, self.multiple)
        if self.cfg.noise_map:  # estimated on the unpadded input: mirrored borders would repeat its noise
            x_padded = torch.cat([x_padded, noise_level_map(x, x_padded.shape[-2:], noise_level)], 1)
        feat = self.head(x_padded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            feat = encoder(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.bottleneck(feat)
        for i in reversed(range(self.cfg.depth)):
            feat = self.decoders[i](self.ups[i](feat) + skips[i])
        residual = self.tail(self.upsample(feat))  # (B, C_out, s*H', s*W')
        s = self.cfg.scale
        out = residual[..., : s * h, : s * w] + self._base(x)
        return out

    def _base(self, x: torch.Tensor) -> torch.Tensor:
        """What the residual is added to: the input itself, upsampled for SR, channels matched."""
        if self.cfg.scale > 1:
            x = F.interpolate(x, scale_factor=self.cfg.scale, mode="bicubic", align_corners=False)
        if self.cfg.out_channels != self.cfg.in_channels:
            x = x.mean(dim=1, keepdim=True).expand(-1, self.cfg.out_channels, -1, -1)
        return x


def stage_levels(depth: int) -> list[tuple[str, int]]:
    """The generator's stages (module name, level): an encoder and a decoder per level, then the bottleneck."""
    return ([(f"encoders.{i}", i) for i in range(depth)] + [(f"decoders.{i}", i) for i in range(depth)]
            + [("bottleneck", depth)])


def attention_moved(state: dict[str, torch.Tensor], trained_blocks: tuple[int, ...],
                    wanted_blocks: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """A stage is its blocks, then its attention block if it has one: with more blocks the attention's index
    moves, and so must the names of its trained weights."""
    renamed = dict(state)
    for stage, level in stage_levels(len(trained_blocks) - 1):
        old, new = f"{stage}.{trained_blocks[level]}.", f"{stage}.{wanted_blocks[level]}."
        if old == new:
            continue
        for name in [n for n in state if n.startswith(old)]:
            renamed[new + name[len(old):]] = renamed.pop(name)
    return renamed


def grown_blocks(model: UNetGenerator, trained_blocks: tuple[int, ...]) -> list[str]:
    """Module-name prefixes ("encoders.0.4.") of the blocks `model` has beyond `trained_blocks` per level."""
    return [f"{stage}.{j}." for stage, level in stage_levels(model.cfg.depth)
            for j in range(trained_blocks[level], model.cfg.level_blocks[level])]


def start_as_identity(block: nn.Module) -> None:
    """A residual block that adds nothing: ResBlock's last conv zeroed (NAFBlock's residual scales start at
    0 already)."""
    if hasattr(block, "conv2"):
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right so H and W are multiples of `multiple`.

    Reflect padding continues the image's texture; zero borders would show as dark edges (and as seams
    between tiles). Images too small to reflect fall back to replicate padding.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops_per_megapixel(model: UNetGenerator, *, size: int = 256) -> float:
    """Multiply-adds x 2 per megapixel of input, counted from the convolutions and attention a forward runs.

    Attention grows with the square of the token count, so the figure grows with the image size."""
    return count_flops(model, size, size) / (size * size / 1e6) / 1e9


def count_flops(model: UNetGenerator, height: int, width: int) -> int:
    """Multiply-adds x 2 of one forward on a (height, width) input, without computing it: torch's
    FlopCounterMode (convolutions and the attention matrix products) over a weightless copy of the model on
    the meta device, which only propagates shapes. Normalisation, activations and additions are not
    counted: they cost memory traffic, not multiply-adds."""
    shadow = UNetGenerator(model.cfg).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        shadow(torch.zeros(1, model.cfg.in_channels, height, width, device="meta"))
    return int(counter.get_total_flops())
