"""Discriminators, conditional (they judge cat(input, output), as pix2pix's) or, built with
`conditional=False`, of the output alone (as Real-ESRGAN's; the condition they are handed is then unused):
pix2pix's PatchGAN, one logit per overlapping 70x70 patch, and Real-ESRGAN's U-Net discriminator with
spectral norm, one logit per pixel.
Both can return their intermediate features, for the feature-matching loss (models/losses.py)."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm as apply_spectral_norm

from sagan_restore.models.filters import high_frequencies


class PatchDiscriminator(nn.Module):
    """Judges cat(input, target) so D sees whether the output fits its input, not only whether it looks real.

    With 3 layers of stride-2 4x4 convolutions plus two stride-1 ones, each logit sees a 70x70 patch.
    Normalisation is instance norm rather than pix2pix's batch norm: it does not depend on the batch, so
    results do not change with how a batch is split across processes; `norm="batch"` (pix2pix's, better at
    seeing over-smooth outputs, see TrainConfig.d_norm) and "none" are options. With `spectral_norm` the weights are
    also spectrally normalised (SNGAN), which bounds D's Lipschitz constant and steadies training; the CLI
    then defaults to no other normalisation, as SNGAN and Real-ESRGAN's discriminator have.
    """

    def __init__(self, in_channels: int, *, width: int = 64, layers: int = 3, spectral_norm: bool = False,
                 norm: str = "instance", conditional: bool = True, highpass: float = 0.0):
        super().__init__()
        self.conditional = conditional
        self.highpass = highpass

        def conv(cin, cout, stride):
            layer = nn.Conv2d(cin, cout, 4, stride=stride, padding=1)
            return apply_spectral_norm(layer) if spectral_norm else layer

        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        self.batch_norm = norm == "batch"

        def norm_layer(channels):
            if norm == "none":
                return nn.Identity()
            return nn.BatchNorm2d(channels) if norm == "batch" else nn.InstanceNorm2d(channels, affine=True)

        blocks: list[nn.Module] = [conv(in_channels, width, 2), nn.LeakyReLU(0.2, True)]
        channels = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [conv(channels, out, stride), norm_layer(out), nn.LeakyReLU(0.2, True)]
            channels = out
        blocks.append(conv(channels, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, condition: torch.Tensor, image: torch.Tensor, *, features: bool = False):
        """condition: the generator's input (upsampled to the image's size for SR); image: real or fake.
        Logits, or (logits, the activations after each LeakyReLU) with `features`."""
        x = conditioned(condition if self.conditional else None, image, highpass=self.highpass)
        if not features:
            return self.net(x)
        found = []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                found.append(x)
        return x, found


def conditioned(condition: torch.Tensor | None, image: torch.Tensor, *, highpass: float = 0.0) -> torch.Tensor:
    """What a conditional D looks at: the generator's input (resized to the image's size) beside the image;
    the image alone for an unconditional D (condition None). With `highpass` (a sigma in pixels) the image
    is replaced by its high frequencies (see high_frequencies); the condition stays whole."""
    if highpass > 0:
        image = high_frequencies(image, highpass)
    if condition is None:
        return image
    if condition.shape[-2:] != image.shape[-2:]:
        condition = F.interpolate(condition, size=image.shape[-2:], mode="bicubic", align_corners=False)
    return torch.cat([condition, image], dim=1)


class UNetDiscriminator(nn.Module):
    """Real-ESRGAN's UNetDiscriminatorSN, made conditional: three stride-2 convolutions down, bilinear x2
    up with skips, and a logit for every pixel, so D says *where* an output looks fake (a per-pixel signal
    where a patch logit gives one verdict per 70x70 patch). Spectral norm on every convolution but the
    first and the last, and no other normalisation: what Real-ESRGAN found steady with its strong
    degradations. At width 32 it costs 8.3x the FLOPs of a PatchGAN of that width (3.29 vs 0.40 GFLOPs on a
    128 x 128 pair, FlopCounterMode): it runs at full resolution at both ends.
    """

    batch_norm = False  # real and fake may share one pass: nothing here mixes samples

    def __init__(self, in_channels: int, *, width: int = 64, conditional: bool = True, highpass: float = 0.0):
        super().__init__()
        self.conditional = conditional
        self.highpass = highpass
        sn = apply_spectral_norm
        w = width
        self.conv0 = nn.Conv2d(in_channels, w, 3, padding=1)
        self.downs = nn.ModuleList([sn(nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False)),
                                    sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False)),
                                    sn(nn.Conv2d(4 * w, 8 * w, 4, 2, 1, bias=False))])
        self.ups = nn.ModuleList([sn(nn.Conv2d(8 * w, 4 * w, 3, 1, 1, bias=False)),
                                  sn(nn.Conv2d(4 * w, 2 * w, 3, 1, 1, bias=False)),
                                  sn(nn.Conv2d(2 * w, w, 3, 1, 1, bias=False))])
        self.refine = nn.ModuleList([sn(nn.Conv2d(w, w, 3, 1, 1, bias=False)),
                                     sn(nn.Conv2d(w, w, 3, 1, 1, bias=False))])
        self.head = nn.Conv2d(w, 1, 3, padding=1)

    def forward(self, condition: torch.Tensor, image: torch.Tensor, *, features: bool = False):
        x = conditioned(condition if self.conditional else None, image, highpass=self.highpass)
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % 8, -w % 8  # three halvings
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        feats = [act(self.conv0(x))]
        for down in self.downs:
            feats.append(act(down(feats[-1])))
        y = feats.pop()
        found = [y]
        for up, skip in zip(self.ups, reversed(feats)):
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = act(up(y)) + skip
            found.append(y)
        for conv in self.refine:
            y = act(conv(y))
        logits = self.head(y)[..., :h, :w]
        return (logits, found) if features else logits


NORMS = ("instance", "batch", "none")


def receptive_field(layers: int) -> int:
    """Receptive field in pixels of one logit of PatchDiscriminator(layers=layers)."""
    field = 1
    for stride in reversed([2] * layers + [1, 1]):
        field = (field - 1) * stride + 4
    return field
