"""Losses: the adversarial term (binary cross-entropy on logits) and the reconstruction terms."""

import torch
import torch.nn.functional as F

from sagan_restore.models.filters import chroma, high_frequencies, laplacian, to_luma

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


def phase_locked_loss(output: torch.Tensor, target: torch.Tensor, scale: int, window: int = 16) -> torch.Tensor:
    """How much of the SR error repeats with the input-pixel period: each input pixel becomes a scale x scale
    block of output, and a pattern laid the same way into every block (the grid a pixel-shuffle tail draws
    when a discriminator rewards any fine detail) survives averaging the error over `window` x `window`
    input pixels at each of the scale**2 positions in the block, where detail that belongs to the image
    does not (it differs from block to block). Mean absolute value of those local averages, less their
    mean over the positions (a plain offset is L1's business). On the scale of L1: a grid of amplitude a
    scores about a, where L1 sees it only at second order beside a larger error."""
    h, w = (output.shape[-2] // scale) * scale, (output.shape[-1] // scale) * scale
    error = F.pixel_unshuffle((output.float() - target.float())[..., :h, :w], scale)
    b, _, lh, lw = error.shape
    k = max(1, min(window, lh, lw))
    local = F.avg_pool2d(error, k, stride=k).view(b, -1, scale * scale, lh // k, lw // k)
    return (local - local.mean(dim=2, keepdim=True)).abs().mean()


def block_boundary_loss(output: torch.Tensor, target: torch.Tensor, block: int) -> torch.Tensor:
    """Mean absolute difference between the output's and the target's steps from pixel to pixel across the
    boundaries of `block`-pixel tiles (columns and rows block*k - 1 to block*k, from the top-left corner):
    where a JPEG input's 8x8 blocks lie, 8 x scale output pixels apart. L1 sees a block left a little too
    bright or dark as an error spread over its whole area, which the network cannot tell from the image's
    own shading; here the step at its edge, which a photo does not have, costs at first order. The same
    boundaries metrics.blockiness measures. 0 for crops smaller than two blocks."""
    error = output.float() - target.float()
    terms = []
    for dim in (-1, -2):
        size = error.shape[dim]
        after = torch.arange(block, size, block, device=error.device)  # the first pixel of each next block
        if after.numel():
            terms.append((error.index_select(dim, after) - error.index_select(dim, after - 1)).abs().flatten())
    return torch.cat(terms).mean() if terms else error.new_zeros(())


def chroma_detail_loss(output: torch.Tensor, target: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Mean absolute difference of the colour's fine detail (chroma less its Gaussian blur of `sigma`):
    a photo has little of it, so colour speckle a GAN invents costs at first order here, where in L1 on
    RGB it hides beside the larger brightness error. 0 for grey images."""
    return F.l1_loss(high_frequencies(chroma(output.float()), sigma), high_frequencies(chroma(target.float()), sigma))


def detail_amplitude_loss(output: torch.Tensor, target: torch.Tensor, window: int = 16,
                          eps: float = 1e-3) -> torch.Tensor:
    """Mean absolute difference between the output's and the target's amount of fine detail, window by
    window: the root-mean-square Laplacian of the luma over each `window` x `window` patch. It asks for
    as much detail as the photo has where the photo has it, whatever its phase, so it pulls an L1-smoothed
    output up and a GAN's invented texture down alike (the sharpness ratio towards 1 in each patch), where
    L1 only ever pulls towards the blur of what the input cannot tell apart. Which detail, and how it
    looks, stay the discriminator's and L1's business. On the scale of the Laplacian's amplitude."""
    def amplitude(image: torch.Tensor) -> torch.Tensor:
        energy = laplacian(to_luma(image.float())) ** 2
        k = max(1, min(window, energy.shape[-2], energy.shape[-1]))
        return torch.sqrt(F.avg_pool2d(energy, k, stride=k) + eps * eps)

    return (amplitude(output) - amplitude(target)).abs().mean()


def artifact_loss(output: torch.Tensor, average_output: torch.Tensor, target: torch.Tensor,
                  window: int = 7) -> torch.Tensor:
    """LDL's artifact term ("Details or Artifacts", Liang et al., CVPR 2022): a GAN's false texture shows as
    an error that varies fast from pixel to pixel, and, unlike real detail, one that the moving average of
    G's own weights (`average_output`, the EMA model's output on the same input) does not share. Where the
    output is further from the target than the average's and the error's local variance (over `window`
    pixels) is high, L1 pulls harder, in proportion to that variance and to the patch's error variance to
    the 1/5 (LDL's weights). The map itself takes no gradient: it says where, L1 says how."""
    error = (target.float() - output.float()).abs().sum(dim=1, keepdim=True)
    average_error = (target.float() - average_output.float()).abs().sum(dim=1, keepdim=True)
    with torch.no_grad():
        pad = window // 2
        padded = F.pad(error, (pad, pad, pad, pad), mode="reflect")
        mean = F.avg_pool2d(padded, window, stride=1)
        n = window * window
        local_var = (F.avg_pool2d(padded * padded, window, stride=1) - mean * mean).clamp(min=0) * n / (n - 1)
        patch_var = error.var(dim=(1, 2, 3), keepdim=True) ** 0.2
        weight = (patch_var * local_var).masked_fill(error < average_error, 0.0)
    return F.l1_loss(weight * output.float(), weight * target.float())
