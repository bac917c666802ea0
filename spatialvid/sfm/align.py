"""Similarity (Sim3) alignment and camera pose error metrics.

A similarity maps points ``y = s * R @ x + t``; as a 4x4 matrix ``[[s R, t], [0, 1]]``. Poses are compared
as camera-to-world rotations and camera centres in a common world after aligning the *estimated* centres onto
the *reference* centres with Umeyama's closed-form least squares (scale included, since SfM has no metric
scale). Image names match by file stem (``0001.jpg`` == ``images/0001.png``), so a scene made from a video's
keyframes (``frame_00012.png``) matches a sample's ``images/frame_00012.png``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` for point sets [N,3] (N >= 3, not collinear).

    Returns (s, R [3,3], t [3])."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise SpatialvidError(f"Sim3 alignment needs two [N,3] point sets with N >= 3 (got {src.shape}, {dst.shape})")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs**2).sum(1).mean()
    if var_s < 1e-20:
        raise SpatialvidError("Sim3 alignment: the estimated camera centres all coincide")
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    E = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        E[2, 2] = -1
    R = U @ E @ Vt
    s = float(np.trace(np.diag(D) @ E) / var_s) if with_scale else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def sim3_matrix(s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 ``[[s R, t], [0, 1]]``."""
    M = np.eye(4)
    M[:3, :3] = s * np.asarray(R)
    M[:3, 3] = np.asarray(t)
    return M


def decompose_sim3(M: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Inverse of :func:`sim3_matrix` (scale from the cube root of the determinant)."""
    M = np.asarray(M, np.float64)
    s = float(np.cbrt(np.linalg.det(M[:3, :3])))
    return s, M[:3, :3] / s, M[:3, 3].copy()


def pose_sim3(src: Cameras, dst: Cameras, axis: float = 0.1) -> np.ndarray:
    """4x4 similarity mapping the world of ``src`` onto that of ``dst`` (the same cameras, in order),
    fitted on the camera *poses*: a least-squares Sim3 (:func:`umeyama`) on each camera's centre and the
    tips of its three axes at ``axis`` x the trajectory extent (the tips scaled by the centres' Sim3 scale).
    Centres alone leave the rotation about a nearly straight or planar trajectory (a short arc) weakly
    determined; the orientations fix it."""
    if len(src) != len(dst) or len(src) < 3:
        raise SpatialvidError(f"pose_sim3: needs >= 3 matched cameras (got {len(src)} and {len(dst)})")
    cs, cd = src.centers().double().numpy(), dst.centers().double().numpy()
    scale, _, _ = umeyama(cs, cd)
    L = axis * float(np.linalg.norm(cs.max(0) - cs.min(0)))
    a_s = src.R.double().numpy().transpose(0, 2, 1)  # camera-to-world axes (columns)
    a_d = dst.R.double().numpy().transpose(0, 2, 1)
    ps = np.concatenate([cs] + [cs + L * a_s[:, :, k] for k in range(3)])
    pd = np.concatenate([cd] + [cd + L * scale * a_d[:, :, k] for k in range(3)])
    return sim3_matrix(*umeyama(ps, pd))


def transform_cameras(cameras: Cameras, M: np.ndarray) -> Cameras:
    """Cameras expressed in a new world ``x' = s R x + t`` (M = 4x4 similarity). Intrinsics unchanged.

    World-to-camera: ``R_c' = R_c R^T``, ``t_c' = s t_c - R_c' t`` (camera coordinates scale with the world)."""
    s, R, t = decompose_sim3(M)
    Rc = cameras.R.double().numpy()
    tc = cameras.t.double().numpy()
    Rn = Rc @ R.T
    tn = s * tc - np.einsum("nij,j->ni", Rn, t)
    out = cameras.clone()
    out.R = torch.from_numpy(Rn).float()
    out.t = torch.from_numpy(tn).float()
    return out


def transform_points(xyz: np.ndarray, M: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz, np.float64)
    return xyz @ M[:3, :3].T + M[:3, 3]


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle (degrees) of ``Ra^T Rb`` for batches [N,3,3]."""
    rel = np.einsum("nji,njk->nik", Ra, Rb)
    c = (np.trace(rel, axis1=1, axis2=2) - 1) / 2
    # atan2(sin, cos) stays accurate near 0 (arccos of the trace alone loses ~0.02 deg to float32 rounding)
    v = np.stack([rel[:, 2, 1] - rel[:, 1, 2], rel[:, 0, 2] - rel[:, 2, 0], rel[:, 1, 0] - rel[:, 0, 1]], 1)
    return np.degrees(np.arctan2(np.linalg.norm(v, axis=1) / 2, c))


@dataclass
class PoseErrors:
    """Pose accuracy of an estimate against a reference after Sim3 alignment.

    registered: estimated cameras whose name matches a reference camera; total_reference: reference cameras;
    rot_median_deg / rot_mean_deg / rot_max_deg: camera orientation errors (degrees);
    center_rmse: camera-centre RMSE in reference units; extent: diagonal of the bounding box of the reference
    centres (the trajectory extent); center_rmse_pct: RMSE as a percentage of the extent;
    scale: Sim3 scale (reference units per estimate unit); unmatched: estimated names with no reference."""

    registered: int
    total_reference: int
    rot_median_deg: float
    rot_mean_deg: float
    rot_max_deg: float
    center_rmse: float
    extent: float
    center_rmse_pct: float
    scale: float
    missing: list[str]
    unmatched: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"registered {self.registered}/{self.total_reference} reference frames; after Sim3 alignment: "
                f"median rotation error {self.rot_median_deg:.3f} deg (max {self.rot_max_deg:.3f}), "
                f"camera-centre RMSE {self.center_rmse_pct:.3f}% of the trajectory extent "
                f"({self.center_rmse:.4g} of {self.extent:.4g} reference units)")


def _key(name: str) -> str:
    return Path(name).stem


def match_by_name(est: Cameras, ref: Cameras) -> tuple[list[int], list[int]]:
    """Indices (into est, into ref) of cameras whose image names share a file stem."""
    ref_pos = {}
    for j, n in enumerate(ref.names):
        ref_pos.setdefault(_key(n), j)
    ei, ri = [], []
    seen = set()
    for i, n in enumerate(est.names):
        j = ref_pos.get(_key(n))
        if j is not None and j not in seen:
            ei.append(i)
            ri.append(j)
            seen.add(j)
    return ei, ri


def pose_errors(est: Cameras, ref: Cameras) -> PoseErrors:
    """Sim3-align ``est`` camera centres onto ``ref`` (matched by image name) and measure the errors."""
    ei, ri = match_by_name(est, ref)
    if len(ei) < 3:
        raise SpatialvidError(
            f"only {len(ei)} camera names match between the scene and the reference (need >= 3): the scene has "
            f"e.g. {est.names[:3]}, the reference {ref.names[:3]}")
    e, r = est[ei], ref[ri]
    ce = e.centers().double().numpy()
    cr = r.centers().double().numpy()
    s, R, t = umeyama(ce, cr)
    aligned = (s * (R @ ce.T)).T + t
    rmse = float(np.sqrt(((aligned - cr) ** 2).sum(1).mean()))
    extent = float(np.linalg.norm(cr.max(0) - cr.min(0)))
    # camera-to-world rotations: est aligned = R @ Rc2w_est
    rc2w_e = np.einsum("ij,njk->nik", R, e.R.double().numpy().transpose(0, 2, 1))
    rc2w_r = r.R.double().numpy().transpose(0, 2, 1)
    ang = rotation_angle_deg(rc2w_e, rc2w_r)
    ref_keys = {_key(n) for n in est.names}
    missing = [n for n in ref.names if _key(n) not in ref_keys]
    refset = {_key(n) for n in ref.names}
    unmatched = [n for n in est.names if _key(n) not in refset]
    return PoseErrors(len(ei), len(ref), float(np.median(ang)), float(ang.mean()), float(ang.max()), rmse, extent,
                      100.0 * rmse / extent if extent > 0 else float("nan"), s, missing, unmatched)
