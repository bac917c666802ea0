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


def depth_normals(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """[H,W,3] unit camera-space normals (OpenCV axes, facing the camera) of the surface a [H,W] camera-z depth
    map describes (central differences of the back-projected pixels; zero on the border)."""
    H, W = depth.shape
    v, u = torch.meshgrid(torch.arange(H, device=depth.device, dtype=depth.dtype) + 0.5,
                          torch.arange(W, device=depth.device, dtype=depth.dtype) + 0.5, indexing="ij")
    p = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1) * depth[..., None]
    n = torch.zeros_like(p)
    du = p[1:-1, 2:] - p[1:-1, :-2]
    dv = p[2:, 1:-1] - p[:-2, 1:-1]
    c = torch.cross(du, dv, dim=-1)
    c = c * torch.where((c * p[1:-1, 1:-1]).sum(-1, keepdim=True) > 0, -1.0, 1.0)
    n[1:-1, 1:-1] = torch.nn.functional.normalize(c, dim=-1)
    return n


def normal_consistency_loss(normals: torch.Tensor, depth: torch.Tensor, alpha: torch.Tensor, K: torch.Tensor,
                            min_alpha: float = 0.5) -> torch.Tensor:
    """Depth-normal consistency (as in 2DGS, Huang et al. 2024): mean ``1 - <N, N_d>`` over solid pixels,
    ``normals`` [H,W,3] the alpha-blended Gaussian normals (camera space), ``N_d`` the normals of the rendered
    ``depth`` (:func:`depth_normals`). Pulls the splats flat and onto the surface their depth describes."""
    nd = depth_normals(depth, K)
    nr = torch.nn.functional.normalize(normals, dim=-1)
    ok = (alpha.detach() > min_alpha) & (nd.detach().norm(dim=-1) > 0.5)
    if not ok.any():
        return depth.sum() * 0.0
    return (1.0 - (nr * nd).sum(-1))[ok].mean()

