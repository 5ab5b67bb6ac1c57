"""Conditional PatchGAN (pix2pix's NLayerDiscriminator): one real/fake logit per overlapping patch."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm as apply_spectral_norm


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
                 norm: str = "instance"):
        super().__init__()

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

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """condition: the generator's input (upsampled to the image's size for SR); image: real or fake."""
        if condition.shape[-2:] != image.shape[-2:]:
            condition = F.interpolate(condition, size=image.shape[-2:], mode="bicubic", align_corners=False)
        return self.net(torch.cat([condition, image], dim=1))


NORMS = ("instance", "batch", "none")


def receptive_field(layers: int) -> int:
    """Receptive field in pixels of one logit of PatchDiscriminator(layers=layers)."""
    field = 1
    for stride in reversed([2] * layers + [1, 1]):
        field = (field - 1) * stride + 4
    return field
