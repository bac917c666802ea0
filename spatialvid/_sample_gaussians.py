"""Ground-truth 3D Gaussians for the synthetic sample, sampled from the analytic surfaces.

Every surface (room faces, box faces, spheres as six cube-sphere patches) is split by a quadtree until a
cell is no larger than ``k_px`` pixels as seen from the nearest camera that sees it (frustum, facing and
depth-map occlusion test); cells no camera sees stay coarse (``s_max``). Each leaf becomes one flat,
nearly opaque Gaussian disc lying in the surface, coloured with the shaded texture averaged over the cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from spatialvid import _sample_scene as S
from spatialvid.gaussians import Gaussians, rgb_to_sh0

DISC_SIGMA = 0.5  # in-plane standard deviation as a fraction of the cell edge
THIN = 0.08  # normal-axis standard deviation as a fraction of the in-plane one
OPACITY = 0.99


@dataclass
class Patches:
    """Parametric surface patches: ``pos(a, b)`` for (a, b) in [0,1]^2.

    Rectangles: ``origin + a * U + b * V`` (normal ``U x V`` normalised). Sphere patches:
    ``center + radius * normalize(U + (2a-1) * V + (2b-1) * W)``, with ``origin`` holding the centre.
    """

    origin: np.ndarray  # [Q,3]
    U: np.ndarray  # [Q,3]
    V: np.ndarray  # [Q,3]
    W: np.ndarray  # [Q,3] (spheres only)
    radius: np.ndarray  # [Q] (0 for rectangles)
    prim: np.ndarray  # [Q] primitive id (see SceneDef.prim_names)

    def pos(self, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [n,3] and unit normals [n,3] of patch ``q`` [n] at params ``a``, ``b`` [n]."""
        o, u, v, w, r = self.origin[q], self.U[q], self.V[q], self.W[q], self.radius[q]
        sphere = r > 0
        p = o + a[:, None] * u + b[:, None] * v
        n = np.cross(u, v)
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-30
        if sphere.any():
            d = u[sphere] + (2 * a[sphere, None] - 1) * v[sphere] + (2 * b[sphere, None] - 1) * w[sphere]
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            p[sphere] = o[sphere] + r[sphere, None] * d
            n[sphere] = d
        return p, n


def _rect(center, normal, ax1, len1, ax2, len2):
    ax1, ax2, normal = (np.asarray(x, float) for x in (ax1, ax2, normal))
    U, V = ax1 * len1, ax2 * len2
    if np.dot(np.cross(U, V), normal) < 0:
        U, V = V, U
    return np.asarray(center, float) - U / 2 - V / 2, U, V


def build_patches(scene: S.SceneDef) -> Patches:
    rows = []  # (origin, U, V, W, radius, prim)
    lo, hi = np.array(S.ROOM_LO), np.array(S.ROOM_HI)
    mid, ext = (lo + hi) / 2, hi - lo
    e = np.eye(3)
    room = [(S.FLOOR, 2, lo[2], +1), (S.CEILING, 2, hi[2], -1), (S.WALL_XN, 0, lo[0], +1),
            (S.WALL_XP, 0, hi[0], -1), (S.WALL_YN, 1, lo[1], +1), (S.WALL_YP, 1, hi[1], -1)]
    zero = np.zeros(3)
    for prim, k, coord, inward in room:
        c = mid.copy()
        c[k] = coord
        i, j = [x for x in range(3) if x != k]
        o, U, V = _rect(c, inward * e[k], e[i], ext[i], e[j], ext[j])
        rows.append((o, U, V, zero, 0.0, prim))
    pid = len(S.ROOM_NAMES)
    for b in scene.boxes:
        rot, half, c = b.rot, np.array(b.size) / 2, np.array(b.center)
        for k in range(3):
            for s in (-1, 1):
                if k == 2 and s == -1 and c[2] - half[2] < 1e-6:
                    continue  # bottom face resting on the floor: never visible
                i, j = [x for x in range(3) if x != k]
                o, U, V = _rect(c + s * half[k] * rot[:, k], s * rot[:, k], rot[:, i], 2 * half[i],
                                rot[:, j], 2 * half[j])
                rows.append((o, U, V, zero, 0.0, pid))
        pid += 1
    for sp in scene.spheres:
        for k in range(3):
            for s in (-1, 1):
                i, j = [x for x in range(3) if x != k]
                F, A, B = s * e[k], e[i], e[j]
                if np.dot(np.cross(A, B), F) < 0:
                    A, B = B, A
                rows.append((np.array(sp.center, float), F, A, B, float(sp.radius), pid))
        pid += 1
    cols = list(zip(*rows))
    return Patches(np.array(cols[0]), np.array(cols[1]), np.array(cols[2]), np.array(cols[3]),
                   np.array(cols[4], float), np.array(cols[5], np.int64))


@dataclass
class ViewSet:
    """Cameras that define where detail is needed: c2w [K,4,4] (OpenCV), depth maps [K,H,W], intrinsics."""

    c2w: np.ndarray
    depth: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float

    def nearest_visible_distance(self, points: np.ndarray, normals: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """[P] distance to the nearest camera that sees the point (inf where none does)."""
        k, h, w = self.depth.shape
        eyes = self.c2w[:, :3, 3]
        rots = self.c2w[:, :3, :3]
        out = np.full(len(points), np.inf)
        for s in range(0, len(points), chunk):
            p, n = points[s:s + chunk], normals[s:s + chunk]
            rel = p[None, :, :] - eyes[:, None, :]  # [K,P,3] camera -> point
            cam = np.stack([S.mat3(rel[i], rots[i]) for i in range(k)])  # camera coords (R^T (p - eye))
            z = cam[..., 2]
            zs = np.where(z > 1e-3, z, 1.0)
            u = self.fx * cam[..., 0] / zs + self.cx
            v = self.fy * cam[..., 1] / zs + self.cy
            ok = (z > 0.05) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
            ok &= (rel * n[None]).sum(-1) < 0  # the surface faces the camera
            ui = np.clip(u.astype(np.int64), 0, w - 1)
            vi = np.clip(v.astype(np.int64), 0, h - 1)
            dref = self.depth[np.arange(k)[:, None], vi, ui]
            ok &= z <= dref * 1.03 + 0.03  # not occluded
            dist = np.where(ok, np.sqrt((rel * rel).sum(-1)), np.inf)
            out[s:s + chunk] = dist.min(0)
        return out


def sample_gaussians(scene: S.SceneDef, views: ViewSet, k_px: float = 2.0, s_min: float = 0.004,
                     s_max: float = 0.16, max_levels: int = 12) -> tuple[Gaussians, dict]:
    """Quadtree-sample all surfaces into Gaussians. Returns (gaussians, stats)."""
    pt = build_patches(scene)
    f = 0.5 * (views.fx + views.fy)
    # initial cells: about s_max on a side
    q_l, a_l, b_l, da_l, db_l = [], [], [], [], []
    for q in range(len(pt.prim)):
        if pt.radius[q] > 0:
            lu = lv = pt.radius[q] * math.pi / 2
        else:
            lu, lv = np.linalg.norm(pt.U[q]), np.linalg.norm(pt.V[q])
        nu, nv = max(1, math.ceil(lu / s_max)), max(1, math.ceil(lv / s_max))
        aa, bb = np.meshgrid(np.arange(nu) / nu, np.arange(nv) / nv, indexing="ij")
        q_l.append(np.full(aa.size, q))
        a_l.append(aa.ravel())
        b_l.append(bb.ravel())
        da_l.append(np.full(aa.size, 1.0 / nu))
        db_l.append(np.full(aa.size, 1.0 / nv))
    cells = [np.concatenate(x) for x in (q_l, a_l, b_l, da_l, db_l)]
    leaves = []
    for level in range(max_levels + 1):
        q, a, b, da, db = cells
        if len(q) == 0:
            break
        p00, _ = pt.pos(q, a, b)
        p10, _ = pt.pos(q, a + da, b)
        p01, _ = pt.pos(q, a, b + db)
        size = np.maximum(np.linalg.norm(p10 - p00, axis=1), np.linalg.norm(p01 - p00, axis=1))
        # visibility: nearest camera seeing the centre or any corner
        pp, nn = pt.pos(q, a + da / 2, b + db / 2)
        dist = views.nearest_visible_distance(pp, nn)
        for fa, fb in ((0.02, 0.02), (0.98, 0.02), (0.02, 0.98), (0.98, 0.98)):
            unseen = np.isinf(dist) & (size > s_min)  # corners only where the centre is not seen
            if not unseen.any():
                break
            pp, nn = pt.pos(q[unseen], (a + fa * da)[unseen], (b + fb * db)[unseen])
            dist[unseen] = np.minimum(dist[unseen], views.nearest_visible_distance(pp, nn))
        target = np.clip(k_px * dist / f, s_min, s_max)
        split = (size > target) & (level < max_levels)
        leaves.append([x[~split] for x in cells])
        q, a, b, da, db = (x[split] for x in cells)
        h_a, h_b = da / 2, db / 2
        cells = [np.tile(q, 4), np.concatenate([a, a + h_a, a, a + h_a]), np.concatenate([b, b, b + h_b, b + h_b]),
                 np.tile(h_a, 4), np.tile(h_b, 4)]
    q, a, b, da, db = (np.concatenate(x) for x in zip(*leaves))
    centre, normal = pt.pos(q, a + da / 2, b + db / 2)
    keep = ~S.inside_solids(scene, centre, pt.prim[q])
    q, a, b, da, db, centre, normal = (x[keep] for x in (q, a, b, da, db, centre, normal))
    # colour: shaded texture averaged over 4 sub-samples of the cell
    prim = scene_prim = pt.prim[q]
    col = np.zeros((len(q), 3))
    subs = ((0.25, 0.25), (0.75, 0.75))
    for fa, fb in subs:
        pp, nn = pt.pos(q, a + fa * da, b + fb * db)
        col += S.radiance(scene, pp, scene_prim, nn)
    col /= len(subs)
    # frame: t1 along the cell's first edge, t2 = n x t1
    p00, _ = pt.pos(q, a, b)
    p10, _ = pt.pos(q, a + da, b)
    p01, _ = pt.pos(q, a, b + db)
    eu, ev = np.linalg.norm(p10 - p00, axis=1), np.linalg.norm(p01 - p00, axis=1)
    t1 = p10 - p00
    t1 -= normal * np.einsum("ij,ij->i", t1, normal)[:, None]
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(normal, t1)
    rotm = np.stack([t1, t2, normal], axis=2)  # columns: local x, y, z in world
    xyzw = Rotation.from_matrix(rotm).as_quat()
    quats = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], 1)
    quats *= np.where(quats[:, :1] < 0, -1.0, 1.0)  # canonical sign (w >= 0)
    s1, s2 = DISC_SIGMA * eu, DISC_SIGMA * ev
    scales = np.stack([s1, s2, THIN * np.minimum(s1, s2)], 1)
    n = len(q)
    g = Gaussians.from_arrays(
        torch.from_numpy(centre).float(), torch.from_numpy(np.log(scales)).float(),
        torch.from_numpy(quats).float(), torch.full((n,), math.log(OPACITY / (1 - OPACITY))),
        rgb_to_sh0(torch.from_numpy(col).float()))
    stats = {"num_gaussians": n, "k_px": k_px, "s_min": s_min, "s_max": s_max,
             "per_primitive": {name: int((prim == i).sum()) for i, name in enumerate(scene.prim_names)}}
    return g, stats


def sample_gaussians_capped(scene: S.SceneDef, views: ViewSet, cap: int, k_px: float = 2.0) -> tuple[Gaussians, dict]:
    """:func:`sample_gaussians`, coarsened (larger ``k_px``) until there are at most ``cap`` Gaussians."""
    for _ in range(8):
        g, stats = sample_gaussians(scene, views, k_px=k_px)
        if len(g) <= cap:
            return g, stats
        k_px *= max(1.1, math.sqrt(len(g) / cap))
    return g[:cap], stats
