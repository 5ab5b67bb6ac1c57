"""Losses: the adversarial term (binary cross-entropy on logits) and L1 reconstruction."""

import torch
import torch.nn.functional as F


def adversarial_loss(logits: torch.Tensor, *, real: bool) -> torch.Tensor:
    """BCE between D's patch logits and the label 1 (real) or 0 (fake)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(output, target)
