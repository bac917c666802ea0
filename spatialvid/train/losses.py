"""Photometric loss of 3D Gaussian Splatting: (1 - l) * L1 + l * (1 - SSIM)."""

from __future__ import annotations

import torch

from spatialvid.metrics import ssim


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, ssim_lambda: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred``/``target`` [H,W,3] in 0..1. Returns (loss, l1) as 0-d tensors; loss is differentiable."""
    l1 = (pred - target).abs().mean()
    if ssim_lambda <= 0:
        return l1, l1.detach()
    d_ssim = 1.0 - ssim(pred, target)
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * d_ssim, l1.detach()
