"""Conversions between spatialvid data and viser: splat arrays, camera poses, false-colour images.

Conventions: spatialvid cameras are OpenCV (x right, y down, z forward), ``R, t`` world-to-camera. viser's
client camera and frustums use the same OpenCV axes, with ``wxyz``/``position`` the camera-to-world rotation
(quaternion w, x, y, z) and the camera centre; ``fov`` is the vertical field of view in radians.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import viser.transforms as vtf

from spatialvid.cameras import Cameras
from spatialvid.gaussians import Gaussians, quat_to_rotmat


def splat_arrays(g: Gaussians) -> dict[str, np.ndarray]:
    """Activated arrays for ``add_gaussian_splats``: centers [N,3], covariances [N,3,3] (R S^2 R^T, world
    units squared), rgbs [N,3] (0..1 from the SH DC term), opacities [N,1] (sigmoid of the logits)."""
    with torch.no_grad():
        means = g.means.detach().float().cpu()
        rot = quat_to_rotmat(g.rotations.detach().float().cpu())
        s2 = g.scales.detach().float().cpu() ** 2
        cov = (rot * s2[:, None, :]) @ rot.transpose(1, 2)
        rgbs = g.colors.detach().float().cpu()
        opac = g.opacities.detach().float().cpu().reshape(-1, 1)
    return {"centers": means.numpy().astype(np.float32), "covariances": cov.numpy().astype(np.float32),
            "rgbs": rgbs.numpy().astype(np.float32), "opacities": opac.numpy().astype(np.float32)}



def camera_pose(cameras: Cameras, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz [4], position [3]) of camera ``i`` in viser's convention (OpenCV camera-to-world)."""
    c2w = cameras[i].c2w()[0].double().numpy()
    return vtf.SO3.from_matrix(c2w[:3, :3]).wxyz, c2w[:3, 3]


def pose_to_camera(wxyz, position, fov_y_rad: float, width: int, height: int, name: str = "view") -> Cameras:
    """A :class:`Cameras` (1 camera, pinhole, principal point at the centre) from a viser-style pose."""
    c2w = np.eye(4)
    c2w[:3, :3] = vtf.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix()
    c2w[:3, 3] = np.asarray(position, dtype=np.float64)
    f = 0.5 * height / math.tan(0.5 * fov_y_rad)
    return Cameras.from_c2w(torch.from_numpy(c2w), f, f, width / 2, height / 2, width, height, names=[name])


def render_size(aspect: float, max_side: int) -> tuple[int, int]:
    """(width, height) with the given aspect (width / height) and the longer side ``max_side`` px."""
    aspect = aspect if math.isfinite(aspect) and aspect > 0 else 1.0
    if aspect >= 1:
        w, h = max_side, max(8, round(max_side / aspect))
    else:
        w, h = max(8, round(max_side * aspect)), max_side
    return int(w), int(h)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(rgb, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def colorize_depth(depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Turbo false colour of z-depth (near = red, far = blue; 2nd..98th percentile of covered pixels);
    pixels with alpha < 0.05 (nothing rendered) are black. Returns uint8 [H,W,3]."""
    import cv2

    depth = np.asarray(depth, dtype=np.float32)
    valid = (np.asarray(alpha) > 0.05) & np.isfinite(depth) & (depth > 0)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(depth[valid], [2, 98])
    t = np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1)
    gray = ((1 - t) * 255).astype(np.uint8)
    col = cv2.applyColorMap(gray, cv2.COLORMAP_TURBO)[..., ::-1]
    out[valid] = col[valid]
    return out


UNSEEN_COLOR = np.array([1.0, 0.0, 1.0], np.float32)  # magenta: nothing covers the pixel
GENERATED_COLOR = np.array([0.0, 0.85, 1.0], np.float32)  # cyan tint: generated Gaussians dominate


def colorize_coverage(rgb: np.ndarray, alpha: np.ndarray, generated_frac: np.ndarray | None = None,
                      threshold: float = 0.5) -> np.ndarray:
    """Coverage view: the render in dimmed grey where the scene covers the pixel (alpha >= ``threshold``),
    magenta where it does not (unseen: what fill would generate), and a cyan tint in proportion to the
    share of generated Gaussians (``generated_frac`` [H,W] 0..1). Returns uint8 [H,W,3]."""
    rgb = np.asarray(rgb, np.float32)
    a = np.asarray(alpha, np.float32)[..., None]
    grey = rgb.mean(-1, keepdims=True) * 0.6 + 0.2
    img = np.repeat(grey, 3, -1)
    if generated_frac is not None:
        gf = np.clip(np.asarray(generated_frac, np.float32), 0, 1)[..., None]
        img = img * (1 - 0.7 * gf) + GENERATED_COLOR * 0.7 * gf
    unseen = np.clip((threshold - a) / threshold, 0, 1)
    img = img * (1 - unseen) + UNSEEN_COLOR * unseen
    return to_uint8(img)


def scene_extent(cameras: Cameras, g: Gaussians) -> float:
    """A length scale for drawing (frustum size, keyframes): the camera spread, else the Gaussians' spread."""
    if len(cameras) > 1:
        c = cameras.centers()
        ext = float((c - c.mean(0)).norm(dim=1).median())
        if ext > 1e-6:
            return ext
    if len(g):
        m = g.means.detach().float()
        return float((m - m.median(0).values).norm(dim=1).median()) or 1.0
    return 1.0


def frustum_mask(means: torch.Tensor, radius: torch.Tensor, camera: Cameras, near: float = 0.01,
                 margin_px: float = 2.0) -> torch.Tensor:
    """[N] bool: spheres (centre ``means`` [N,3], ``radius`` [N] world units) that may touch the image of
    ``camera`` (1 camera), widened by ``margin_px`` pixels on each side (the rasterizer's 2D dilation).
    Conservative: a sphere is dropped only when it lies wholly behind the near plane or outside one of the
    four side planes."""
    R, t = camera.R[0].to(means), camera.t[0].to(means)
    p = means @ R.T + t  # camera space (OpenCV)
    fx, fy, cx, cy = (float(v[0]) for v in (camera.fx, camera.fy, camera.cx, camera.cy))
    w, h = float(camera.width[0]), float(camera.height[0])
    keep = p[:, 2] + radius > near
    # side planes through the camera centre: x/z = (0 - cx)/fx ... (w - cx)/fx, likewise y
    for lo_hi, coord, f, c, size in ((0, 0, fx, cx, w), (1, 0, fx, cx, w), (0, 1, fy, cy, h), (1, 1, fy, cy, h)):
        edge = ((size + margin_px if lo_hi else -margin_px) - c) / f  # tan of the plane's angle
        sign = 1.0 if lo_hi else -1.0
        # signed distance to the plane coord = edge * z (positive = outside)
        d = sign * (p[:, coord] - edge * p[:, 2]) / math.sqrt(1.0 + edge * edge)
        keep &= d < radius
    return keep
