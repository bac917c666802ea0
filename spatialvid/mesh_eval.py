"""Mesh accuracy against the bundled sample's exact surfaces (see :mod:`spatialvid.sample`).

* ``accuracy``: distances from points sampled uniformly (by area) on the reconstructed mesh to the true
  surfaces (room faces, boxes, spheres as a fine triangle mesh).
* ``completeness``: distances from points sampled uniformly on the true surface *that the video sees*
  (not inside another solid, and passing :func:`spatialvid.sample.unseen_mask`'s depth test in at least
  one video frame) to the reconstructed mesh; ``completeness`` is the fraction within ``tau``.
* ``chamfer`` = (mean accuracy + mean completeness distance) / 2; ``extent`` = diagonal of the bounding box
  of the seen true surface. Distances are exact point-to-triangle distances (open3d ray-casting scene), in
  the sample's units (metres).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spatialvid import _sample_scene as S


def true_surface_parts(scene: S.SceneDef, sphere_resolution: int = 96):
    """[(open3d TriangleMesh, primitive id)]: the room (id 0 for all six faces) and every object."""
    import open3d as o3d

    lo, hi = np.array(S.ROOM_LO), np.array(S.ROOM_HI)
    room = o3d.geometry.TriangleMesh.create_box(*(hi - lo))
    room.translate(lo)
    parts = [(room, S.FLOOR)]
    for i, o in enumerate(scene.objects):
        pid = len(S.ROOM_NAMES) + i
        if isinstance(o, S.Sphere):
            m = o3d.geometry.TriangleMesh.create_sphere(radius=o.radius, resolution=sphere_resolution)
            m.translate(np.array(o.center))
        else:
            m = o3d.geometry.TriangleMesh.create_box(*o.size)
            m.translate(-np.array(o.size) / 2)
            m.rotate(o.rot, center=(0, 0, 0))
            m.translate(np.array(o.center))
        parts.append((m, pid))
    return parts


def _sample_on(mesh, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly by area on a triangle mesh (vertices [V,3], faces [F,3] or open3d mesh)."""
    if hasattr(mesh, "triangles"):
        v, f = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    else:
        v, f = mesh
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    tri = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    return (1 - s)[:, None] * a[tri] + (s * (1 - r2))[:, None] * b[tri] + (s * r2)[:, None] * c[tri]


def seen_true_points(sample_dir: str | Path, n: int = 200_000, seed: int = 0) -> np.ndarray:
    """Points [P,3] uniform by area on the true surfaces that the sample's video sees (P <= n)."""
    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.sample import unseen_mask

    root = Path(sample_dir)
    meta = json.loads((root / "sample.json").read_text())
    scene = S.build_scene(int(meta["seed"]), bool(meta["hidden_region"]))
    rng = np.random.default_rng(seed)
    parts = true_surface_parts(scene)
    areas = np.array([m.get_surface_area() for m, _ in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    pts, prims = [], []
    for (m, pid), k in zip(parts, counts):
        if k:
            pts.append(_sample_on(m, int(k), rng))
            prims.append(np.full(int(k), pid))
    p, prim = np.concatenate(pts), np.concatenate(prims)
    p = p[~S.inside_solids(scene, p, prim)]
    cams = read_transforms(root / "transforms.json")
    c2w = cams.c2w().double().numpy()
    depth = np.load(root / "depth.npz")["depth"]
    k = meta["intrinsics"]
    return p[~unseen_mask(p, c2w, depth, k["fx"], k["fy"], k["cx"], k["cy"])]


def _distance_to(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    import open3d as o3d

    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                     o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
    return rs.compute_distance(o3d.core.Tensor(np.ascontiguousarray(points, np.float32))).numpy().astype(np.float64)


def evaluate_mesh(vertices: np.ndarray, faces: np.ndarray, sample_dir: str | Path, n: int = 200_000,
                  tau: float | None = None, seed: int = 0) -> dict:
    """Accuracy / completeness / chamfer of a mesh (sample units) against the sample's true surfaces.

    ``tau``: completeness threshold (default 0.5 % of the extent)."""
    root = Path(sample_dir)
    meta = json.loads((root / "sample.json").read_text())
    scene = S.build_scene(int(meta["seed"]), bool(meta["hidden_region"]))
    truth = seen_true_points(root, n, seed)
    extent = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    tau = 0.005 * extent if tau is None else float(tau)
    parts = true_surface_parts(scene)
    tv, tf, off = [], [], 0
    for m, _ in parts:
        tv.append(np.asarray(m.vertices))
        tf.append(np.asarray(m.triangles) + off)
        off += len(m.vertices)
    rng = np.random.default_rng(seed + 1)
    acc = _distance_to(np.concatenate(tv), np.concatenate(tf), _sample_on((vertices, faces), n, rng))
    comp = _distance_to(vertices, faces, truth)
    return {
        "extent": extent, "tau": tau,
        "accuracy_mean": float(acc.mean()), "accuracy_median": float(np.median(acc)),
        "accuracy_p90": float(np.quantile(acc, 0.9)),
        "completeness_mean_distance": float(comp.mean()), "completeness_median_distance": float(np.median(comp)),
        "completeness": float((comp < tau).mean()),
        "completeness_at": {f"{t:g}": float((comp < t).mean()) for t in (0.01, 0.02, 0.05)},
        "chamfer": float(0.5 * (acc.mean() + comp.mean())),
        "chamfer_relative": float(0.5 * (acc.mean() + comp.mean()) / extent),
        "num_truth_points": int(len(truth)),
    }
