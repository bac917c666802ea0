"""Step 4 of a fill: hole pixels -> new Gaussians on the completed depth.

Each Gaussian covers one pixel or one ``block x block`` pixel block of the fill view. Its centre is the
block's pixels unprojected at the completed depth (pixel centres at ``+0.5``, OpenCV camera, then
camera-to-world). Its covariance is the block's footprint on the surface: the tangent vectors
``dP/du * block`` and ``dP/dv * block`` of the completed point map (scaled by ``footprint``), with a thin
extent along the surface normal, so a filled surface stays closed when seen from nearby views.
Gaussians are tagged ``origin = GENERATED`` and ``step`` = the fill's history step id.
"""

from __future__ import annotations

import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.gaussians import GENERATED, Gaussians, num_sh_bases, rgb_to_sh0


def unproject(depth: np.ndarray, camera: Cameras) -> np.ndarray:
    """Camera-space points ``[H,W,3]`` (OpenCV axes) of every pixel centre at z = ``depth``."""
    h, w = depth.shape
    fx, fy, cx, cy = (float(v[0]) for v in (camera.fx, camera.fy, camera.cx, camera.cy))
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u + 0.5 - cx) / fx * z, (v + 0.5 - cy) / fy * z, z], -1)


def _tangent(p: np.ndarray, axis: int) -> np.ndarray:
    """Per-pixel derivative of the point map along ``axis`` (1 = u, 0 = v): the smaller one-sided step,
    so depth discontinuities do not stretch Gaussians across them."""
    fwd = np.zeros_like(p)
    bwd = np.zeros_like(p)
    if axis == 1:
        fwd[:, :-1] = p[:, 1:] - p[:, :-1]
        fwd[:, -1] = fwd[:, -2] if p.shape[1] > 1 else 0
        bwd[:, 1:] = fwd[:, :-1]
        bwd[:, 0] = fwd[:, 0]
    else:
        fwd[:-1] = p[1:] - p[:-1]
        fwd[-1] = fwd[-2] if p.shape[0] > 1 else 0
        bwd[1:] = fwd[:-1]
        bwd[0] = fwd[0]
    nf = np.linalg.norm(fwd, axis=-1, keepdims=True)
    nb = np.linalg.norm(bwd, axis=-1, keepdims=True)
    return np.where(nf <= nb, fwd, bwd)


def matrix_to_quat(R: torch.Tensor) -> torch.Tensor:
    """[N,3,3] rotation matrices -> [N,4] unit quaternions (w, x, y, z), w >= 0."""
    m = R.double()
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    q = torch.stack([
        1 + tr, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
        1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], 1)
    k = q.argmax(1)
    s = torch.sqrt(q.gather(1, k[:, None]).clamp_min(1e-12))[:, 0] * 2  # 4 * |component k|
    w = torch.empty_like(tr)
    x, y, z = torch.empty_like(tr), torch.empty_like(tr), torch.empty_like(tr)
    # k = 0
    i = k == 0
    w[i], x[i] = s[i] / 4, (m[i, 2, 1] - m[i, 1, 2]) / s[i]
    y[i], z[i] = (m[i, 0, 2] - m[i, 2, 0]) / s[i], (m[i, 1, 0] - m[i, 0, 1]) / s[i]
    i = k == 1
    w[i], x[i] = (m[i, 2, 1] - m[i, 1, 2]) / s[i], s[i] / 4
    y[i], z[i] = (m[i, 0, 1] + m[i, 1, 0]) / s[i], (m[i, 0, 2] + m[i, 2, 0]) / s[i]
    i = k == 2
    w[i], x[i] = (m[i, 0, 2] - m[i, 2, 0]) / s[i], (m[i, 0, 1] + m[i, 1, 0]) / s[i]
    y[i], z[i] = s[i] / 4, (m[i, 1, 2] + m[i, 2, 1]) / s[i]
    i = k == 3
    w[i], x[i] = (m[i, 1, 0] - m[i, 0, 1]) / s[i], (m[i, 0, 2] + m[i, 2, 0]) / s[i]
    y[i], z[i] = (m[i, 1, 2] + m[i, 2, 1]) / s[i], s[i] / 4
    q = torch.stack([w, x, y, z], 1)
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
    return torch.nn.functional.normalize(q, dim=1).float()


def lift_pixels(mask: np.ndarray, rgb: np.ndarray, depth: np.ndarray, camera: Cameras, step: int,
                block: int = 2, footprint: float = 0.6, thickness: float = 0.1, opacity: float = 0.9,
                sh_degree: int = 0, max_stretch: float = 4.0) -> Gaussians:
    """New Gaussians for the ``mask`` pixels (see the module docstring).

    Args:
        mask: bool [H,W] pixels to lift. rgb: [H,W,3] fill colours 0..1. depth: [H,W] completed z (> 0).
        camera: the 1-camera fill view. step: history step id written into ``Gaussians.step``.
        block: pixels per side of one Gaussian (1 = one per pixel, 2 = one per 2x2 block).
        footprint: std of a Gaussian as a fraction of its block's extent on the surface.
        thickness: std along the normal as a fraction of the in-plane std.
        max_stretch: tangent vectors are clamped to this many times the fronto-parallel footprint.
    """
    h, w = mask.shape
    pts = unproject(depth, camera)
    tu, tv = _tangent(pts, 1), _tangent(pts, 0)
    fpx = depth.astype(np.float64) / float(camera.fx[0])  # fronto-parallel pixel size (world units)
    for t in (tu, tv):
        n = np.linalg.norm(t, axis=-1)
        lim = max_stretch * fpx
        scale = np.where(n > lim, lim / np.maximum(n, 1e-12), 1.0)
        t *= scale[..., None]
    # group pixels into blocks
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return Gaussians.empty(sh_degree)
    bid = (ys // block) * ((w + block - 1) // block) + (xs // block)
    uniq, inv, cnt = np.unique(bid, return_inverse=True, return_counts=True)
    nb = uniq.size

    def bmean(a: np.ndarray) -> np.ndarray:
        out = np.zeros((nb,) + a.shape[1:], np.float64)
        np.add.at(out, inv, a)
        return out / cnt.reshape((-1,) + (1,) * (a.ndim - 1))

    p_cam = bmean(pts[ys, xs])
    col = bmean(rgb[ys, xs].astype(np.float64))
    du = bmean(tu[ys, xs]) * block
    dv = bmean(tv[ys, xs]) * block
    # a block only partly in the mask gets a proportionally smaller footprint
    frac = np.sqrt(cnt / float(block * block))[:, None]
    du, dv = du * frac, dv * frac
    nrm = np.cross(du, dv)
    nn = np.linalg.norm(nrm, axis=1, keepdims=True)
    fallback = nn[:, 0] < 1e-12
    nrm = np.where(fallback[:, None], -p_cam, nrm)
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    ext = 0.5 * (np.linalg.norm(du, axis=1) + np.linalg.norm(dv, axis=1))
    M = np.stack([du * footprint, dv * footprint, nrm * (ext * footprint * thickness)[:, None]], 2)  # columns
    Mt = torch.from_numpy(M)
    U, S, _ = torch.linalg.svd(Mt)  # cov = M M^T = U S^2 U^T
    det = torch.linalg.det(U)
    U[:, :, 2] *= torch.where(det < 0, -1.0, 1.0)[:, None]
    S = S.clamp_min(1e-7)
    # camera -> world
    Rcw = camera.R[0].double().T  # camera-to-world rotation
    t = camera.t[0].double()
    means = (torch.from_numpy(p_cam) - t) @ Rcw.T
    rot_w = Rcw[None] @ U
    quats = matrix_to_quat(rot_w)
    k = num_sh_bases(sh_degree) - 1
    rgb_t = torch.from_numpy(col).float().clamp(0, 1)
    return Gaussians.from_arrays(
        means.float(), torch.log(S).float(), quats, torch.logit(torch.full((nb,), float(opacity))),
        rgb_to_sh0(rgb_t), shN=torch.zeros(nb, k, 3), origin=torch.full((nb,), GENERATED, dtype=torch.uint8),
        step=torch.full((nb,), int(step), dtype=torch.int32), sh_degree=sh_degree)
