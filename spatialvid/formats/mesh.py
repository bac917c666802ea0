"""Triangle meshes from a Gaussian scene: render depth + colour, fuse with a TSDF, extract, clean, decimate.

:func:`scene_to_mesh` renders every training camera (and optionally an orbit around the scene) with our
rasterizer, keeps the pixels that are solid (accumulated opacity >= ``min_alpha``) and away from depth
edges (where the expected depth mixes a foreground and a background surface), fuses the depth and
colour maps in open3d's scalable TSDF volume, extracts the zero level set (marching cubes, vertex
colours), drops connected components smaller than ``min_component`` of the largest one, decimates to
``max_faces`` (quadric error) and, when the scene stores its normalisation, maps the vertices back to
the scene's original frame and units (``world_original = inverse(T) @ world_normalized``).

:func:`write_mesh` writes ``.glb`` (binary glTF 2.0, vertex colours and normals), ``.ply`` (binary, vertex
colours) or ``.obj`` (vertex colours as the common ``v x y z r g b`` extension) with trimesh, atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialvid.atomic import atomic_write_bytes
from spatialvid.errors import SpatialvidError
from spatialvid.formats.crop import Crop
from spatialvid.gaussians import CAPTURED

MESH_SUFFIXES = (".glb", ".ply", ".obj")
FRAMES = ("original", "scene")


@dataclass
class MeshConfig:
    """Options of :func:`scene_to_mesh` (lengths in scene units unless noted).

    ``voxel_size``: TSDF voxel edge in the *output* frame's units (None = twice the median footprint of a
    pixel on the surfaces the cameras see, at least 1/2048 of the scene's extent). ``trunc_voxels``: TSDF
    truncation distance in voxels. ``resolution``: render size as a fraction of each camera's.
    ``orbit_views``: extra views on an orbit around the scene (0 = training cameras only).
    ``min_alpha``: pixels with less accumulated opacity are not fused. ``edge_jump``: a pixel whose 3x3
    neighbourhood spans more than this fraction of its depth is a depth edge and is not fused.
    ``min_component``: components with fewer faces than this fraction of the largest are dropped.
    ``min_weight``: voxels seen by fewer views are not meshed. ``min_cos``: (0 = off) pixels whose surface is seen
    at more than ``acos(min_cos)`` from its normal (grazing) are not fused.
    ``frame``: "original" (undo the scene's normalisation, if any) or "scene".
    """

    max_faces: int = 500_000
    voxel_size: float | None = None
    trunc_voxels: float = 4.0
    resolution: float = 1.0
    orbit_views: int = 0
    captured_only: bool = False
    min_alpha: float = 0.5
    edge_jump: float = 0.05
    min_component: float = 0.01
    min_weight: float = 1.0
    min_cos: float = 0.0
    frame: str = "original"
    backend: str = "auto"
    crop: Crop = field(default_factory=Crop)
    progress: bool = True

    def validate(self) -> None:
        if int(self.max_faces) < 4:
            raise SpatialvidError(f"--max-faces must be at least 4, got {self.max_faces}")
        if self.voxel_size is not None and not (np.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise SpatialvidError(f"--voxel-size must be a positive number, got {self.voxel_size}")
        if not (np.isfinite(self.resolution) and 0 < self.resolution <= 4):
            raise SpatialvidError(f"--resolution must be in (0, 4], got {self.resolution}")
        if int(self.orbit_views) < 0:
            raise SpatialvidError(f"--orbit-views must be >= 0, got {self.orbit_views}")
        if not 0 <= self.min_component < 1:
            raise SpatialvidError(f"--min-component must be in [0, 1), got {self.min_component}")
        if not 0 < self.min_alpha < 1:
            raise SpatialvidError(f"min_alpha must be in (0, 1), got {self.min_alpha}")
        if self.frame not in FRAMES:
            raise SpatialvidError(f"--frame must be one of {', '.join(FRAMES)}, got {self.frame!r}")


@dataclass
class Mesh:
    """A triangle mesh: ``vertices`` [V,3] float64 (output frame), ``faces`` [F,3] int64 (counter-clockwise
    seen from outside / from the cameras), ``colors`` [V,3] uint8, ``normals`` [V,3] float64, ``stats``."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    normals: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


def normalization_of(scene) -> np.ndarray | None:
    """The scene's 4x4 ``T`` (world_normalized = T @ world_original) or None."""
    t = (getattr(scene, "metadata", None) or {}).get("normalization")
    if t is None:
        return None
    t = np.asarray(t, np.float64)
    if t.shape != (4, 4) or not np.isfinite(t).all() or abs(np.linalg.det(t[:3, :3])) < 1e-12:
        raise SpatialvidError("scene metadata 'normalization' is not an invertible 4x4 matrix")
    return t


def _views(scene, cfg: MeshConfig):
    """The cameras to fuse: the training cameras (scaled) plus an optional orbit."""
    cams = scene.cameras
    if cfg.resolution != 1.0:
        cams = cams.scaled(cfg.resolution)
    views = [cams[i] for i in range(len(cams))]
    if cfg.orbit_views:
        from spatialvid.paths import orbit

        g = scene.gaussians
        pts = g.means.detach()[g.opacities.detach() > 0.2].cpu().numpy()
        up = (scene.metadata or {}).get("up")
        path = orbit(scene.cameras, int(cfg.orbit_views), up=up, points=pts if len(pts) else None,
                     width=int(cams.width[0]), height=int(cams.height[0]))
        oc = path.cameras()
        views += [oc[i] for i in range(len(oc))]
    return views


def _auto_voxel(gaussians, views) -> float:
    """Twice the median pixel footprint (depth / focal) of the Gaussians the views see (scene units)."""
    means = gaussians.means.detach().float().cpu()
    if len(means) > 20000:
        means = means[torch.randperm(len(means), generator=torch.Generator().manual_seed(0))[:20000]]
    foot = []
    for cam in views[:: max(1, len(views) // 16)]:
        uv, z = cam.project(means)
        uv, z = uv[0], z[0]
        ok = (z > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width[0]) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height[0])
        if ok.any():
            foot.append(float(z[ok].median()) / float(cam.fx[0]))
    lo = torch.quantile(means, 0.01, dim=0) if len(means) else torch.zeros(3)
    hi = torch.quantile(means, 0.99, dim=0) if len(means) else torch.ones(3)
    extent = float((hi - lo).norm()) or 1.0
    v = 2.0 * float(np.median(foot)) if foot else extent / 512
    return max(v, extent / 2048)


def _grazing(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float, min_cos: float) -> np.ndarray:
    """[H,W] bool: the surface normal (from the depth map's neighbours) is more than ``acos(min_cos)`` from
    the viewing ray. The expected depth of splats drifts towards the camera on such grazing surfaces."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    ray = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
    p = ray * depth[..., None]
    du = np.zeros_like(p)
    dv = np.zeros_like(p)
    du[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dv[1:-1] = p[2:] - p[:-2]
    n = np.cross(du, dv)
    cosang = np.abs((n * ray).sum(-1)) / np.maximum(np.linalg.norm(n, axis=-1) * np.linalg.norm(ray, axis=-1), 1e-20)
    return cosang < min_cos


def _solid_depth(depth: np.ndarray, alpha: np.ndarray, min_alpha: float, edge_jump: float, cam=None,
                 min_cos: float = 0.0) -> np.ndarray:
    """Depth with 0 (= not fused) where the pixel is not solid, lies on a depth edge or (with ``cam`` and
    ``min_cos > 0``) sees its surface at a grazing angle."""
    d = np.where(alpha >= min_alpha, depth, 0.0).astype(np.float32)
    if cam is not None and min_cos > 0:
        g = _grazing(d.astype(np.float64), float(cam.fx[0]), float(cam.fy[0]), float(cam.cx[0]), float(cam.cy[0]),
                     min_cos)
        d = np.where(g, 0.0, d).astype(np.float32)
    h, w = d.shape
    pad = np.pad(d, 1, mode="edge")
    win = np.stack([pad[i : i + h, j : j + w] for i in range(3) for j in range(3)])
    hi = win.max(0)
    lo = np.where(win > 0, win, np.inf).min(0)
    edge = (hi - lo) > edge_jump * np.maximum(d, 1e-12)
    edge |= (win == 0).any(0)  # next to an unfused pixel: the silhouette
    return np.where(edge, 0.0, d).astype(np.float32)


def scene_to_mesh(scene, cfg: MeshConfig | None = None) -> Mesh:
    """Fuse rendered depth + colour of ``scene`` into a coloured triangle mesh (see the module docstring)."""
    try:
        import open3d as o3d
        import open3d.core as o3c
    except (ImportError, OSError) as e:  # e.g. the wheel's libusb-1.0 missing on a bare Debian/Ubuntu
        raise SpatialvidError(f"mesh export needs open3d (the open3d-cpu wheel), which does not load: {e}"
                              + ("; install it with `apt-get install libusb-1.0-0`" if "libusb" in str(e) else "")) from e
    from tqdm import tqdm

    from spatialvid.render.api import render_scene

    cfg = cfg or MeshConfig()
    cfg.validate()
    t0 = time.perf_counter()
    g = scene.gaussians.detach().to("cpu")
    n_all = len(g)
    keep = np.ones(n_all, bool)
    if cfg.captured_only:
        keep &= g.origin.numpy() == CAPTURED
    if cfg.crop.active:
        keep &= cfg.crop.contains(g.means)
    g = g[torch.from_numpy(keep)]
    if len(g) == 0:
        raise SpatialvidError("mesh: no Gaussians left to mesh (after --captured-only / the crop)")
    T = normalization_of(scene) if cfg.frame == "original" else None
    scale_out = float(np.cbrt(abs(np.linalg.det(T[:3, :3])))) if T is not None else 1.0  # scene units per output unit
    views = _views(scene, cfg)
    if not views:
        raise SpatialvidError("mesh: the scene has no cameras to render depth from")
    voxel = float(cfg.voxel_size) * scale_out if cfg.voxel_size is not None else _auto_voxel(g, views)
    dev = o3c.Device("CPU:0")
    # open3d's tensor TSDF (voxel block hash grid). The legacy ScalableTSDFVolume of the open3d 0.20 CPU
    # wheel integrates but extracts empty meshes, so it is not used.
    vbg = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)), voxel_size=voxel, block_resolution=8, block_count=20000, device=dev)
    fused_px = 0
    t_render = 0.0
    for cam in tqdm(views, desc="mesh: fuse views", unit="view", disable=not cfg.progress):
        tr = time.perf_counter()
        out = render_scene(g, cam, background=(0.0, 0.0, 0.0), backend=cfg.backend)
        t_render += time.perf_counter() - tr
        depth = _solid_depth(out.depth, out.alpha, cfg.min_alpha, cfg.edge_jump, cam, cfg.min_cos)
        if not (depth > 0).any():
            continue
        fused_px += int((depth > 0).sum())
        rgb = np.clip(out.rgb / np.maximum(out.alpha, 1e-6)[..., None], 0, 1)  # un-premultiply (black bg)
        # open3d puts pixel centres at integer coordinates; ours are at +0.5
        K = o3c.Tensor(np.array([[float(cam.fx[0]), 0, float(cam.cx[0]) - 0.5],
                                 [0, float(cam.fy[0]), float(cam.cy[0]) - 0.5], [0, 0, 1]], np.float64))
        E = o3c.Tensor(cam.viewmats()[0].double().numpy())
        dimg = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(depth)))
        cimg = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(rgb.astype(np.float32))))
        far = float(depth.max()) * 1.01 + 1e-6
        blocks = vbg.compute_unique_block_coordinates(dimg, K, E, 1.0, float(far), float(cfg.trunc_voxels))
        vbg.integrate(blocks, dimg, cimg, K, K, E, 1.0, float(far), float(cfg.trunc_voxels))
    if fused_px == 0:
        raise SpatialvidError("mesh: no view rendered any solid surface (is the scene empty or the crop too tight?)")
    t_fuse = time.perf_counter() - t0
    bar = tqdm(total=3, desc="mesh: extract surface", unit="stage", disable=not cfg.progress)
    m = vbg.extract_triangle_mesh(weight_threshold=float(cfg.min_weight)).to_legacy()
    del vbg
    bar.update()
    bar.set_description("mesh: clean pieces")
    faces_extracted = len(m.triangles)
    m.remove_duplicated_vertices()
    m.remove_degenerate_triangles()
    dropped = 0
    if len(m.triangles) and cfg.min_component > 0:
        labels, counts, _ = m.cluster_connected_triangles()
        labels, counts = np.asarray(labels), np.asarray(counts)
        small = counts < cfg.min_component * counts.max()
        dropped = int(small.sum())
        if dropped:
            m.remove_triangles_by_mask(small[labels])
            m.remove_unreferenced_vertices()
    if cfg.crop.active and len(m.triangles):
        inside = cfg.crop.contains(np.asarray(m.vertices))
        tri = np.asarray(m.triangles)
        m.remove_triangles_by_mask(~inside[tri].all(1))
        m.remove_unreferenced_vertices()
    faces_clean = len(m.triangles)
    bar.update()
    bar.set_description("mesh: decimate")
    if faces_clean > cfg.max_faces:
        m = m.simplify_quadric_decimation(target_number_of_triangles=int(cfg.max_faces))
        m.remove_unreferenced_vertices()
    bar.update()
    bar.close()
    if len(m.triangles) == 0:
        raise SpatialvidError("mesh: the fused volume holds no surface (try a larger --voxel-size)")
    m.compute_vertex_normals()
    verts = np.asarray(m.vertices, np.float64)
    normals = np.asarray(m.vertex_normals, np.float64)
    cols = np.clip(np.asarray(m.vertex_colors) * 255 + 0.5, 0, 255).astype(np.uint8)
    faces = np.asarray(m.triangles, np.int64)
    if T is not None:
        Ti = np.linalg.inv(T)
        verts = verts @ Ti[:3, :3].T + Ti[:3, 3]
        rn = normals @ Ti[:3, :3].T
        normals = rn / np.maximum(np.linalg.norm(rn, axis=1, keepdims=True), 1e-12)
    stats = {
        "views": len(views), "orbit_views": int(cfg.orbit_views), "gaussians": len(g), "gaussians_total": n_all,
        "voxel_size": voxel / scale_out, "fused_pixels": fused_px, "faces_extracted": faces_extracted,
        "components_dropped": dropped, "faces_before_decimation": faces_clean, "faces": len(faces),
        "vertices": len(verts), "frame": "original" if T is not None else "scene",
        "seconds": {"render": round(t_render, 3), "fuse": round(t_fuse - t_render, 3),
                    "extract_clean": round(time.perf_counter() - t0 - t_fuse, 3),
                    "total": round(time.perf_counter() - t0, 3)},
    }
    return Mesh(verts, faces, cols, normals, stats)


def mesh_bytes(mesh: Mesh, suffix: str) -> bytes:
    """The mesh encoded as ``.glb``, ``.ply`` or ``.obj`` (trimesh)."""
    import trimesh

    suffix = suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise SpatialvidError(f"mesh: unknown file type {suffix!r} (use {', '.join(MESH_SUFFIXES)})")
    rgba = np.concatenate([mesh.colors, np.full((len(mesh.colors), 1), 255, np.uint8)], 1)
    tm = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, vertex_normals=mesh.normals,
                         vertex_colors=rgba, process=False)
    if suffix == ".glb":
        return tm.export(file_type="glb", include_normals=True)
    if suffix == ".ply":
        return tm.export(file_type="ply", encoding="binary")
    text = trimesh.exchange.obj.export_obj(tm, include_color=True, include_normals=True, include_texture=False)
    return text.encode("utf-8")


def write_mesh(path: str | Path, mesh: Mesh) -> Path:
    """Write ``mesh`` to ``path`` (type from the suffix: .glb, .ply, .obj), atomically."""
    path = Path(path)
    atomic_write_bytes(path, mesh_bytes(mesh, path.suffix))
    return path


def read_mesh(path: str | Path) -> Mesh:
    """Read a mesh written by :func:`write_mesh` (any trimesh-readable file) back: vertices, faces, colours."""
    import trimesh

    from spatialvid.errors import FormatError

    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "file not found")
    try:
        tm = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for bad files
        raise FormatError(path, f"not a readable mesh ({e})") from None
    cols = np.asarray(tm.visual.vertex_colors)[:, :3] if hasattr(tm.visual, "vertex_colors") else \
        np.zeros((len(tm.vertices), 3), np.uint8)
    return Mesh(np.asarray(tm.vertices, np.float64), np.asarray(tm.faces, np.int64), cols.astype(np.uint8),
                np.asarray(tm.vertex_normals, np.float64))
