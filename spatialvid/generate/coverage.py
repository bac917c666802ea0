"""Step 1 of a fill: what a camera sees of the scene, and which pixels are unseen.

A pixel is *unseen* when the scene's accumulated opacity there is below ``alpha_threshold`` (or fewer than
``min_count`` Gaussians contribute). The raw mask is cleaned: unseen specks smaller than ``min_area``
pixels are dropped (pinholes in a captured surface), seen islands smaller than ``min_area`` inside the
unseen region are absorbed (floaters), and the result is dilated by ``dilate`` pixels so the
semi-transparent fringe of the captured content is regenerated too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.gaussians import Gaussians


@dataclass
class Coverage:
    """A render of the current scene from one camera (numpy, ``[H,W]`` / ``[H,W,3]``).

    ``rgb`` is composited over ``background``; ``surface`` is the un-premultiplied colour
    ``(rgb - (1 - alpha) * background) / alpha`` (the colour of what is there, where alpha > 0);
    ``depth`` is the alpha-normalised camera z (OpenCV, > 0 where seen); ``count`` contributors per pixel.
    """

    rgb: np.ndarray
    surface: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    count: np.ndarray
    visible: torch.Tensor  # [N] bool: Gaussians that touch this view
    backend: str


def render_coverage(gaussians: Gaussians, camera: Cameras, background=(0.0, 0.0, 0.0),
                    backend: str = "auto", antialiased: bool = False) -> Coverage:
    """Render ``gaussians`` from a 1-camera ``camera`` without gradients (``antialiased``: the
    mip-splatting filter, as the scene was trained)."""
    from spatialvid.render import render_gaussians

    h, w = int(camera.height[0]), int(camera.width[0])
    bg = torch.as_tensor(background, dtype=torch.float32)
    if len(gaussians) == 0:
        z = np.zeros((h, w), np.float32)
        rgb = np.broadcast_to(bg.numpy(), (h, w, 3)).astype(np.float32)
        return Coverage(rgb, np.zeros((h, w, 3), np.float32), z, z.copy(), np.zeros((h, w), np.int32),
                        torch.zeros(0, dtype=torch.bool), backend)
    with torch.no_grad():
        out = render_gaussians(gaussians, camera, background=bg, backend=backend, antialiased=antialiased)
    rgb = out.rgb.detach().cpu().numpy().astype(np.float32)
    alpha = out.alpha.detach().cpu().numpy().astype(np.float32)
    depth = out.depth.detach().cpu().numpy().astype(np.float32)
    count = out.count.detach().cpu().numpy().astype(np.int32)
    a = np.maximum(alpha, 1e-6)[..., None]
    surface = np.clip((rgb - (1 - alpha[..., None]) * bg.numpy()) / a, 0, 1)
    surface[alpha <= 1e-6] = 0
    return Coverage(rgb, surface.astype(np.float32), alpha, depth, count, out.visible.detach().cpu(), out.backend)


def unseen_mask(alpha: np.ndarray, count: np.ndarray | None = None, alpha_threshold: float = 0.5,
                min_count: int = 0, min_area: int = 16, dilate: int = 2) -> np.ndarray:
    """Cleaned unseen mask ``bool [H,W]`` (True = to generate); see the module docstring."""
    raw = alpha < alpha_threshold
    if count is not None and min_count > 0:
        raw |= count < min_count
    if not raw.any():
        return raw
    mask = _drop_small(raw, min_area)
    mask = ~_drop_small(~mask, min_area)  # absorb small seen islands
    if dilate > 0 and mask.any():
        k = 2 * dilate + 1
        mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
    return mask


def _drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    if min_area <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]
