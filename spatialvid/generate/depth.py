"""Depth for the unseen pixels of a view.

Conventions: depth maps are ``float32 [H,W]`` camera z-depth (OpenCV camera, metres-ish, > 0); ``valid``
is ``bool [H,W]`` (True where the rendered depth is trusted); ``image`` is the *filled* colour image
``[H,W,3]`` in 0..1, used as an edge guide. Estimators return a complete depth map whose valid pixels are
unchanged.

* :class:`ClassicalDepth` (default, no model): per hole, robust plane fits in inverse depth (planes stay
  planes under perspective: 1/z is affine in the pixel coordinates) to the ring of valid pixels around it,
  preferring the far side at disocclusions; with several planes (floor and wall) each hole ray takes the
  first one it meets; plus an edge-aware membrane interpolation of the residual guided by the colours.
* :class:`TransformersDepth`: a ``transformers`` monocular depth model from a local folder, aligned to the
  rendered depth by least-squares scale and shift (in inverse depth by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from spatialvid.errors import SpatialvidError


@runtime_checkable
class DepthEstimator(Protocol):
    """Completes ``depth`` where ``valid`` is False; returns ``float32 [H,W]`` (> 0 everywhere)."""

    name: str

    def complete(self, depth: np.ndarray, valid: np.ndarray, image: np.ndarray) -> np.ndarray: ...


def _check(depth: np.ndarray, valid: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    depth = np.asarray(depth, np.float32)
    valid = np.asarray(valid, bool) & np.isfinite(depth) & (depth > 0)
    image = np.asarray(image, np.float32)
    if depth.ndim != 2 or valid.shape != depth.shape or image.shape[:2] != depth.shape:
        raise SpatialvidError(f"depth completion: shapes differ (depth {depth.shape}, valid {valid.shape}, "
                              f"image {image.shape})")
    if not valid.any():
        raise SpatialvidError("depth completion: no valid depth in this view to continue from")
    return depth, valid, image


def _robust_plane(u: np.ndarray, v: np.ndarray, d: np.ndarray, iters: int = 5) -> np.ndarray:
    """IRLS (Huber-like) fit of ``d = a u + b v + c``; returns (a, b, c). Falls back to a constant."""
    if d.size < 6:
        return np.array([0.0, 0.0, float(np.median(d))])
    A = np.stack([u, v, np.ones_like(u)], 1).astype(np.float64)
    w = np.ones_like(d, dtype=np.float64)
    coef = np.array([0.0, 0.0, float(np.median(d))])
    for _ in range(iters):
        sw = np.sqrt(w)[:, None]
        sol, *_ = np.linalg.lstsq(A * sw, d * sw[:, 0], rcond=None)
        coef = sol
        res = np.abs(A @ coef - d)
        s = 1.4826 * np.median(res) + 1e-9
        w = 1.0 / np.maximum(1.0, res / (2.0 * s))
    return coef


@dataclass
class ClassicalDepth:
    """Plane fit + edge-aware membrane completion in inverse depth.

    Args:
        ring: width (pixels, at the working resolution) of the valid ring used for the plane fit.
        work_side: the completion is solved at most at this longer side, then upsampled (depth is smooth).
        edge_sigma: colour difference (0..1 RGB) at which the smoothness weight halves-ish (edge awareness).
        max_depth_factor: completed depth is clamped to ``[min_valid / 2, max_valid * factor]``.
        prefer_background: where the ring around a hole mixes a near and a far surface (a disocclusion),
            continue only the far one (the hole is what the near object hid).
        max_planes: up to this many planes are found in the ring by sequential RANSAC (each with at least
            ``plane_min_support`` of the ring's pixels); with more than one, each hole pixel takes the
            plane its ray meets first (a floor continues until it meets the wall behind it).
    """

    ring: int = 6
    max_planes: int = 3
    plane_min_support: float = 0.15
    work_side: int = 256
    edge_sigma: float = 0.1
    max_depth_factor: float = 3.0
    prefer_background: bool = True
    name: str = "classical"

    def complete(self, depth: np.ndarray, valid: np.ndarray, image: np.ndarray) -> np.ndarray:
        depth, valid, image = _check(depth, valid, image)
        if valid.all():
            return depth.copy()
        h, w = depth.shape
        inv = np.zeros_like(depth)
        np.divide(1.0, depth, out=inv, where=valid)
        s = min(1.0, self.work_side / max(h, w))
        hs, ws = max(2, int(round(h * s))), max(2, int(round(w * s)))
        if s < 1.0:
            disp_full = inv
            vw = cv2.resize(valid.astype(np.float32), (ws, hs), interpolation=cv2.INTER_AREA)
            dsum = cv2.resize(disp_full, (ws, hs), interpolation=cv2.INTER_AREA)
            vs = vw > 0.5
            disp = np.where(vs, dsum / np.maximum(vw, 1e-6), 0.0)
            img = cv2.resize(image, (ws, hs), interpolation=cv2.INTER_AREA)
        else:
            vs, disp, img = valid, inv, image
        if not vs.any():  # valid pixels too sparse for the working grid: solve at full resolution
            vs, disp, img, hs, ws, s = valid, inv, image, h, w, 1.0
        dmin, dmax = float(depth[valid].min()), float(depth[valid].max())
        lo_disp, hi_disp = 1.0 / (dmax * self.max_depth_factor), 2.0 / dmin
        filled = self._complete_disp(disp.astype(np.float64), vs, img, (lo_disp, hi_disp))
        if s < 1.0:
            filled = cv2.resize(filled.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        out = np.where(valid, depth, 1.0 / np.clip(filled, lo_disp, hi_disp)).astype(np.float32)
        return out

    def _complete_disp(self, disp: np.ndarray, valid: np.ndarray, img: np.ndarray, clamp) -> np.ndarray:
        h, w = disp.shape
        hole = ~valid
        rng = np.random.default_rng(0)
        ncomp, labels = cv2.connectedComponents(hole.astype(np.uint8), connectivity=8)
        k = 2 * self.ring + 1
        vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
        uu, vv = uu / max(h, w), vv / max(h, w)
        base = disp.copy()
        constraint = valid.copy()  # pixels whose value is fixed in the membrane solve
        for c in range(1, ncomp):
            comp = labels == c
            ringm = (cv2.dilate(comp.astype(np.uint8), np.ones((k, k), np.uint8)) > 0) & valid
            if not ringm.any():
                base[comp] = np.median(disp[valid])
                continue
            d = disp[ringm]
            # disocclusion: the ring mixes a near and a far surface; continue the far one
            near_cut = None
            use = np.ones(d.size, bool)
            if self.prefer_background and d.size > 12 and np.percentile(d, 90) > 1.25 * np.percentile(d, 10):
                thr = _otsu(d)
                far = d <= thr
                if far.sum() >= 6:
                    near_cut = thr
                    use = far
            ur, vr, dr = uu[ringm][use], vv[ringm][use], d[use]
            planes = _planes_ransac(ur, vr, dr, self.max_planes, self.plane_min_support, rng) \
                if self.max_planes > 1 else []
            if len(planes) > 1:
                # several surfaces around the hole (a floor and the wall behind it): each hole ray takes the
                # first one it meets, the largest positive disparity (planes extend until they hide behind
                # one another, so a floor meets its wall along their corner line)
                stack = np.stack([c[0] * uu + c[1] * vv + c[2] for c in planes])
                plane = np.where((stack > 0).any(0), np.where(stack > 0, stack, -np.inf).max(0),
                                 stack.max(0))
            else:
                coef = planes[0] if planes else _robust_plane(ur, vr, dr)
                plane = coef[0] * uu + coef[1] * vv + coef[2]
            base[comp] = plane[comp]
            if near_cut is not None:
                # near-side boundary pixels do not constrain the hole (free boundary there)
                near_ring = ringm & (disp > near_cut)
                constraint &= ~near_ring
                base[near_ring] = plane[near_ring]
        base = np.clip(base, clamp[0], clamp[1])
        # residual membrane: r = 0 deep inside the hole is NOT imposed; r is fixed on constraint pixels
        # (valid far side) and smoothly interpolated (edge-aware) over the hole + freed pixels.
        resid = np.where(constraint, disp - base, 0.0)
        unknown = ~constraint
        return base + _membrane(resid, unknown, img, self.edge_sigma, anchor=1e-3)


def _planes_ransac(u: np.ndarray, v: np.ndarray, d: np.ndarray, max_planes: int, min_support: float,
                   rng: np.random.Generator, iters: int = 128) -> list[np.ndarray]:
    """Sequential RANSAC of planes ``d = a u + b v + c`` (inverse depth over normalised pixel coordinates):
    up to ``max_planes``, each refined by :func:`_robust_plane` on its inliers and kept only with at least
    ``min_support`` of all the points (and 12 points)."""
    n = d.size
    if n < 12:
        return []
    tol = 0.02 * float(np.median(np.abs(d))) + 1e-9
    left = np.ones(n, bool)
    planes: list[np.ndarray] = []
    A = np.stack([u, v, np.ones_like(u)], 1)
    need = max(12, int(np.ceil(min_support * n)))
    for _ in range(max_planes):
        idx = np.flatnonzero(left)
        if idx.size < need:
            break
        tri = idx[rng.integers(0, idx.size, (iters, 3))]
        M = A[tri]  # [iters, 3, 3]
        ok = np.abs(np.linalg.det(M)) > 1e-12
        if not ok.any():
            break
        coefs = np.linalg.solve(M[ok], d[tri[ok]][..., None])[..., 0]  # [k, 3]
        inl = np.abs(A[idx] @ coefs.T - d[idx, None]) < tol  # [m, k]
        best = int(np.argmax(inl.sum(0)))
        if inl[:, best].sum() < need:
            break
        members = idx[inl[:, best]]
        coef = _robust_plane(u[members], v[members], d[members])
        members = idx[np.abs(A[idx] @ coef - d[idx]) < tol]
        if members.size < need:
            break
        planes.append(coef)
        left[members] = False
    return planes


def _otsu(x: np.ndarray) -> float:
    xs = np.sort(x)
    n = xs.size
    cs = np.cumsum(xs)
    i = np.arange(1, n)
    m0 = cs[:-1] / i
    m1 = (cs[-1] - cs[:-1]) / (n - i)
    score = i * (n - i) * (m0 - m1) ** 2
    j = int(np.argmax(score))
    return float(0.5 * (xs[j] + xs[j + 1]))


def _membrane(val: np.ndarray, unknown: np.ndarray, img: np.ndarray, sigma: float, anchor: float) -> np.ndarray:
    """Edge-aware harmonic interpolation: minimise sum w_ij (x_i - x_j)^2 + anchor * x_i^2 over unknowns.

    Known pixels keep ``val``. Weights ``w_ij = exp(-|I_i - I_j|^2 / (2 sigma^2))`` (image edges block
    propagation); the small ``anchor`` pulls far-away unknowns towards 0 (i.e. towards the plane).
    """
    h, w = val.shape
    idx = -np.ones((h, w), np.int64)
    n = int(unknown.sum())
    if n == 0:
        return val
    idx[unknown] = np.arange(n)
    rows, cols, data = [], [], []
    diag = np.full(n, anchor)
    rhs = np.zeros(n)
    for dy, dx in ((0, 1), (1, 0)):
        a = (slice(0, h - dy), slice(0, w - dx))
        b = (slice(dy, h), slice(dx, w))
        wij = np.exp(-((img[a] - img[b]) ** 2).sum(-1) / (2 * sigma**2)) + 1e-3
        ia, ib = idx[a], idx[b]
        ua, ub = unknown[a], unknown[b]
        both = ua & ub
        # unknown-unknown edges
        i1, i2, ww = ia[both], ib[both], wij[both]
        rows += [i1, i2]
        cols += [i2, i1]
        data += [-ww, -ww]
        np.add.at(diag, i1, ww)
        np.add.at(diag, i2, ww)
        # unknown-known edges
        m = ua & ~ub
        np.add.at(diag, ia[m], wij[m])
        np.add.at(rhs, ia[m], wij[m] * val[b][m])
        m = ub & ~ua
        np.add.at(diag, ib[m], wij[m])
        np.add.at(rhs, ib[m], wij[m] * val[a][m])
    A = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    A = A + sp.diags(diag)
    x = spla.spsolve(A.tocsc(), rhs)
    out = val.copy()
    out[unknown] = x
    return out


def align_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Least-squares ``s, b`` minimising ``|s * pred + b - target|^2`` over ``mask`` (robust: 2 IRLS passes)."""
    p = pred[mask].astype(np.float64)
    t = target[mask].astype(np.float64)
    if p.size < 2:
        raise SpatialvidError("depth alignment: fewer than 2 valid pixels")
    A = np.stack([p, np.ones_like(p)], 1)
    wts = np.ones_like(p)
    s, b = 1.0, 0.0
    for _ in range(3):
        sw = np.sqrt(wts)
        (s, b), *_ = np.linalg.lstsq(A * sw[:, None], t * sw, rcond=None)
        res = np.abs(A @ np.array([s, b]) - t)
        sc = 1.4826 * np.median(res) + 1e-12
        wts = 1.0 / np.maximum(1.0, res / (2.5 * sc))
    return float(s), float(b)


class TransformersDepth:
    """A ``transformers`` depth-estimation model from a local folder, aligned to the rendered depth.

    ``output`` says what the model predicts: ``"disparity"`` (relative inverse depth: DPT, Depth Anything;
    the default) or ``"depth"`` (metric/relative depth). The prediction is aligned to the valid rendered
    depth by least-squares scale and shift in that space, then only the hole pixels are taken from it.
    """

    def __init__(self, path: str | Path, output: str = "disparity", device: str | None = None):
        path = Path(path)
        if not path.is_dir():
            raise SpatialvidError(f"--depth transformers:{path}: not a folder (give a local model folder "
                                  "written by save_pretrained; nothing is downloaded)")
        if output not in ("disparity", "depth"):
            raise SpatialvidError(f"TransformersDepth: output must be 'disparity' or 'depth', not {output!r}")
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError:
            raise SpatialvidError("the transformers depth estimator needs the optional packages: "
                                  "pip install 'spatialvid[models]'") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise SpatialvidError(f"{path}: could not load a transformers depth model ({e})") from None
        self.model = self.model.to(self.device).eval()
        self.output = output
        self.name = f"transformers:{path}"

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Raw model output resized to the image, ``float32 [H,W]`` (unaligned)."""
        import torch

        h, w = image.shape[:2]
        u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        inputs = self.processor(images=u8, return_tensors="pt").to(self.device)
        with torch.no_grad():
            pred = self.model(**inputs).predicted_depth
        pred = torch.nn.functional.interpolate(pred.reshape(1, 1, *pred.shape[-2:]).float(), size=(h, w),
                                               mode="bilinear", align_corners=False)
        return pred[0, 0].cpu().numpy().astype(np.float32)

    def complete(self, depth: np.ndarray, valid: np.ndarray, image: np.ndarray) -> np.ndarray:
        depth, valid, image = _check(depth, valid, image)
        if valid.all():
            return depth.copy()
        pred = self.predict(image)
        return align_prediction(pred, depth, valid, self.output)


def align_prediction(pred: np.ndarray, depth: np.ndarray, valid: np.ndarray, output: str) -> np.ndarray:
    """Align a relative prediction to ``depth`` on ``valid`` and use it in the rest; returns depth [H,W]."""
    dmin, dmax = float(depth[valid].min()), float(depth[valid].max())
    if output == "disparity":
        inv = np.zeros_like(depth, dtype=np.float64)
        np.divide(1.0, depth, out=inv, where=valid & (depth > 0))
        s, b = align_scale_shift(pred, inv, valid)
        disp = np.clip(s * pred + b, 1.0 / (3 * dmax), 2.0 / dmin)
        full = 1.0 / disp
    else:
        s, b = align_scale_shift(pred, depth, valid)
        full = np.clip(s * pred + b, dmin / 2, 3 * dmax)
    return np.where(valid, depth, full).astype(np.float32)


def make_depth_estimator(spec: str | DepthEstimator | None) -> DepthEstimator:
    """``"classical"`` (default) or ``"transformers:PATH"`` -> a :class:`DepthEstimator`."""
    if spec is None or spec == "classical":
        return ClassicalDepth()
    if not isinstance(spec, str):
        if not isinstance(spec, DepthEstimator):
            raise SpatialvidError(f"depth estimator {spec!r} has no complete(depth, valid, image) method")
        return spec
    if spec.startswith("transformers:"):
        return TransformersDepth(spec.split(":", 1)[1])
    raise SpatialvidError(f"unknown depth estimator '{spec}' (use classical or transformers:PATH)")


__all__ = ["ClassicalDepth", "DepthEstimator", "TransformersDepth", "align_prediction", "align_scale_shift",
           "make_depth_estimator"]
