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


def _pixel_rays(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """[H,W,3] rays (x/z, y/z, 1) through the pixel centres (+0.5) of a [H,W] image of camera ``K``."""
    H, W = depth.shape
    v, u = torch.meshgrid(torch.arange(H, device=depth.device, dtype=depth.dtype) + 0.5,
                          torch.arange(W, device=depth.device, dtype=depth.dtype) + 0.5, indexing="ij")
    return torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)


def depth_normals(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """[H,W,3] unit camera-space normals (OpenCV axes, facing the camera) of the surface a [H,W] camera-z depth
    map describes (central differences of the back-projected pixels; zero on the border)."""
    p = _pixel_rays(depth, K) * depth[..., None]
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



def _box(x: torch.Tensor, r: int = 3) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(x[None, None], 2 * r + 1, 1, r, count_include_pad=False)[0, 0]


def multiview_ncc_loss(depth: torch.Tensor, alpha: torch.Tensor, K: torch.Tensor, viewmat: torch.Tensor,
                       image: torch.Tensor, K_n: torch.Tensor, viewmat_n: torch.Tensor, image_n: torch.Tensor,
                       max_cost: float = 1.0) -> torch.Tensor:
    """Multi-view photometric consistency (as in PGSR, Chen et al. 2024, with per-pixel instead of planar
    warps): every pixel is lifted with the rendered camera-z ``depth`` [H,W] of the reference camera (``K``,
    world-to-camera ``viewmat``, OpenCV axes), projected into the neighbour camera and the neighbour's
    *input* image sampled there; the loss is the mean ``1 - NCC`` of 7x7 grey patches of the reference image
    and the warped one, over solid (alpha > 0.5), textured pixels that land inside the neighbour, leaving out
    those that do not match at all (cost >= ``max_cost``: occluded or out of view). Its gradient moves the
    depth to where the two input images agree."""
    F = torch.nn.functional
    H, W = depth.shape
    xw = (_pixel_rays(depth, K) * depth[..., None] - viewmat[:3, 3]) @ viewmat[:3, :3]
    xn = xw @ viewmat_n[:3, :3].T + viewmat_n[:3, 3]
    z = xn[..., 2].clamp_min(1e-6)
    un = K_n[0, 0] * xn[..., 0] / z + K_n[0, 2]
    vn = K_n[1, 1] * xn[..., 1] / z + K_n[1, 2]
    gi, gn = image.mean(-1), image_n.mean(-1)
    warped = F.grid_sample(gn[None, None], torch.stack([un / W * 2 - 1, vn / H * 2 - 1], -1)[None],
                           align_corners=False, padding_mode="border")[0, 0]
    mi, mw = _box(gi), _box(warped)
    vi = (_box(gi * gi) - mi * mi).clamp_min(0)
    vw = (_box(warped * warped) - mw * mw).clamp_min(0)
    cost = 1 - (_box(gi * warped) - mi * mw) / torch.sqrt(vi * vw + 1e-8)
    ud, vd = un.detach(), vn.detach()
    ok = ((alpha.detach() > 0.5) & (xn[..., 2].detach() > 0) & (ud >= 0) & (ud < W) & (vd >= 0) & (vd < H)
          & (vi > 1e-4) & (cost.detach() < max_cost))
    if not ok.any():
        return depth.sum() * 0.0
    return cost[ok].mean()
