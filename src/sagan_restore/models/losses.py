"""Losses: the adversarial term (binary cross-entropy on logits) and the reconstruction terms."""

import torch
import torch.nn.functional as F

CHARBONNIER_EPS = 1e-3  # on the [0, 1] scale: a quarter of one 8-bit level, where |x| turns quadratic


def adversarial_loss(logits: torch.Tensor, *, real: bool) -> torch.Tensor:
    """BCE between D's patch logits and the label 1 (real) or 0 (fake)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(output, target)


def charbonnier_loss(output: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """sqrt(d^2 + eps^2) - eps: L1 away from 0, smooth at 0, so the gradient does not flip sign on
    residuals smaller than the noise of the target itself."""
    return (torch.sqrt((output - target) ** 2 + eps * eps) - eps).mean()


def pixel_loss(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    return charbonnier_loss(output, target) if kind == "charbonnier" else l1_loss(output, target)


def frequency_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the 2-D spectra (real and imaginary parts), normalised by the pixel
    count so it is on the scale of L1 ("ortho" FFT). It weighs every frequency alike, where L1 in pixel
    space lets a network trade fine detail for smoothness (MIMO-UNet's FFT loss)."""
    diff = torch.fft.rfft2(output.float() - target.float(), norm="ortho")
    return torch.view_as_real(diff).abs().mean()


def feature_matching_loss(fake_features: list[torch.Tensor], real_features: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between D's features of the output and of the target, layer by layer (pix2pixHD): G is
    asked to make what D sees in a photo, not only to flip D's verdict, a steadier signal that needs no
    pretrained network (no VGG or LPIPS weights can be had here)."""
    return torch.stack([F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake_features, real_features)]).mean()
