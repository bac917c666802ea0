"""COLMAP sparse models: read text or binary (via pycolmap), write text (our own writer).

COLMAP stores world-to-camera poses in OpenCV axes (quaternion qw qx qy qz + translation), the same
convention as :class:`~spatialvid.cameras.Cameras`, so no axis change is needed. Pixel coordinates also
agree (centre of the top-left pixel at (0.5, 0.5)).

Camera models read: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV (only with
k4 = k5 = k6 = 0); their parameters map to fx fy cx cy and ``dist = (k1, k2, p1, p2, k3)``.
Written: PINHOLE when there is no distortion, OPENCV with k1 k2 p1 p2, FULL_OPENCV when k3 != 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spatialvid.atomic import atomic_write_text
from spatialvid.cameras import Cameras
from spatialvid.errors import FormatError, SpatialvidError

_MODEL_FILES = ("cameras", "images", "points3D")


def find_model_dir(path: str | Path) -> Path:
    """The folder holding cameras/images/points3D (.txt or .bin): ``path``, ``path/0``, ``path/sparse/0``..."""
    path = Path(path)
    if not path.is_dir():
        raise FormatError(path, "COLMAP model folder not found" if not path.exists() else "is not a folder")
    for cand in (path, path / "0", path / "sparse" / "0", path / "sparse"):
        for ext in (".bin", ".txt"):
            if all((cand / f"{n}{ext}").is_file() for n in _MODEL_FILES):
                return cand
    raise FormatError(path, "no COLMAP sparse model here (expected cameras, images and points3D as .txt or .bin, "
                            "in this folder or in 0/ or sparse/0/)")


def _intrinsics(model_dir: Path, model: str, params: np.ndarray, camera_id: int):
    p = [float(v) for v in params]
    zeros = [0.0] * 5
    where = f"camera {camera_id} ({model})"
    try:
        if model == "SIMPLE_PINHOLE":
            f, cx, cy = p
            return f, f, cx, cy, zeros
        if model == "PINHOLE":
            fx, fy, cx, cy = p
            return fx, fy, cx, cy, zeros
        if model == "SIMPLE_RADIAL":
            f, cx, cy, k = p
            return f, f, cx, cy, [k, 0.0, 0.0, 0.0, 0.0]
        if model == "RADIAL":
            f, cx, cy, k1, k2 = p
            return f, f, cx, cy, [k1, k2, 0.0, 0.0, 0.0]
        if model == "OPENCV":
            fx, fy, cx, cy, k1, k2, p1, p2 = p
            return fx, fy, cx, cy, [k1, k2, p1, p2, 0.0]
        if model == "FULL_OPENCV":
            fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6 = p
            if any(abs(v) > 0 for v in (k4, k5, k6)):
                raise FormatError(model_dir, f"{where}: rational distortion k4..k6 is not supported")
            return fx, fy, cx, cy, [k1, k2, p1, p2, k3]
    except ValueError:
        raise FormatError(model_dir, f"{where}: wrong number of parameters ({len(p)})") from None
    raise FormatError(model_dir, f"{where}: camera model not supported (use SIMPLE_PINHOLE, PINHOLE, "
                                 "SIMPLE_RADIAL, RADIAL, OPENCV or FULL_OPENCV; undistort fisheye images first)")


def _guess_images_dir(model_dir: Path, first_name: str) -> Path | None:
    for cand in (model_dir / "images", model_dir.parent / "images", model_dir.parent.parent / "images",
                 model_dir.parent.parent.parent / "images"):
        if (cand / first_name).is_file():
            return cand
    return None


def read_colmap(path: str | Path, images_dir: str | Path | None = None
                ) -> tuple[Cameras, torch.Tensor, torch.Tensor]:
    """Read a COLMAP sparse model (text or binary).

    Returns ``(cameras, xyz [P,3] float32, rgb [P,3] float32 in 0..1)``. Cameras are the posed images sorted
    by name; ``image_paths`` point into ``images_dir`` (default: an ``images/`` folder found next to the
    model, else empty).
    """
    import pycolmap

    model_dir = find_model_dir(path)
    try:
        rec = pycolmap.Reconstruction()
        rec.read(str(model_dir))
    except Exception as e:  # pycolmap raises RuntimeError/ValueError with COLMAP's message
        raise FormatError(model_dir, f"cannot read the COLMAP model ({str(e).strip().splitlines()[-1:]})") from None
    images = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    if not images:
        raise FormatError(model_dir, "the COLMAP model has no posed images")
    if images_dir is None:
        images_dir = _guess_images_dir(model_dir, images[0].name)
    rows = []
    for im in images:
        cam = rec.cameras[im.camera_id]
        fx, fy, cx, cy, dist = _intrinsics(model_dir, cam.model.name, np.asarray(cam.params), im.camera_id)
        pose = im.cam_from_world()
        rows.append((fx, fy, cx, cy, cam.width, cam.height, dist,
                     np.asarray(pose.rotation.matrix(), dtype=np.float64),
                     np.asarray(pose.translation, dtype=np.float64)))
    cols = list(zip(*rows))
    names = [im.name for im in images]
    paths = [str(Path(images_dir) / n) if images_dir is not None else "" for n in names]
    cameras = Cameras(fx=cols[0], fy=cols[1], cx=cols[2], cy=cols[3], width=cols[4], height=cols[5],
                      dist=np.array(cols[6]), R=torch.from_numpy(np.stack(cols[7])).float(),
                      t=torch.from_numpy(np.stack(cols[8])).float(), names=names, image_paths=paths)
    try:
        cameras.validate(str(model_dir))
    except SpatialvidError as e:
        raise FormatError(model_dir, str(e)) from None
    pts = [rec.points3D[i] for i in sorted(rec.points3D)]  # by point id
    xyz = np.array([p.xyz for p in pts], dtype=np.float32).reshape(-1, 3)
    rgb = np.array([p.color for p in pts], dtype=np.float32).reshape(-1, 3) / 255.0
    if not np.isfinite(xyz).all():
        raise FormatError(model_dir, "points3D has NaN/Inf coordinates")
    return cameras, torch.from_numpy(xyz), torch.from_numpy(rgb)


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] -> unit quaternions [...,4] (w, x, y, z) with w >= 0 (float64)."""
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    q = np.empty((m.shape[0], 4))
    for i, r in enumerate(m):
        tr = r[0, 0] + r[1, 1] + r[2, 2]
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q[i] = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
            q[i] = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
        elif r[1, 1] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
            q[i] = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s)
        else:
            s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
            q[i] = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q.reshape(R.shape[:-2] + (4,))


def _g(v: float) -> str:
    return repr(float(v))


def write_colmap_text(path: str | Path, cameras: Cameras, xyz: torch.Tensor | np.ndarray | None = None,
                      rgb: torch.Tensor | np.ndarray | None = None) -> Path:
    """Write a COLMAP text model (cameras.txt, images.txt, points3D.txt) into folder ``path`` (atomically).

    Cameras with identical intrinsics share one COLMAP camera. ``xyz`` [P,3] world points and ``rgb`` [P,3]
    colours in 0..1 become points3D with empty tracks (COLMAP and pycolmap read these).
    """
    cameras.validate("cameras to write")
    path = Path(path)
    names = cameras.names
    if len(set(names)) != len(names):
        raise SpatialvidError("COLMAP export: camera names must be unique (they are the image names)")
    bad = [n for n in names if not n or any(c.isspace() for c in n)]
    if bad:
        raise SpatialvidError(f"COLMAP export: image names may not be empty or contain spaces ({bad[0]!r})")
    intr_ids: dict[tuple, int] = {}
    cam_lines = []
    cam_of_image = []
    for i in range(len(cameras)):
        fx, fy, cx, cy = (float(v[i]) for v in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
        w, h = int(cameras.width[i]), int(cameras.height[i])
        k1, k2, p1, p2, k3 = (float(v) for v in cameras.dist[i])
        if k3 != 0.0:
            model, params = "FULL_OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2, k3, 0.0, 0.0, 0.0]
        elif any((k1, k2, p1, p2)):
            model, params = "OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2]
        else:
            model, params = "PINHOLE", [fx, fy, cx, cy]
        key = (model, w, h, *params)
        if key not in intr_ids:
            intr_ids[key] = len(intr_ids) + 1
            cam_lines.append(f"{intr_ids[key]} {model} {w} {h} " + " ".join(_g(v) for v in params))
        cam_of_image.append(intr_ids[key])
    R = cameras.R.double().numpy()
    t = cameras.t.double().numpy()
    q = rotmat_to_quat(R)
    img_lines = []
    for i in range(len(cameras)):
        vals = " ".join(_g(v) for v in (*q[i], *t[i]))
        img_lines.append(f"{i + 1} {vals} {cam_of_image[i]} {names[i]}")
        img_lines.append("")  # no 2D points
    xyz_np = np.zeros((0, 3)) if xyz is None else np.asarray(torch.as_tensor(xyz).detach().cpu(), np.float64)
    if rgb is None:
        rgb_np = np.full((len(xyz_np), 3), 0.5)
    else:
        rgb_np = np.asarray(torch.as_tensor(rgb).detach().cpu(), np.float64)
    if xyz_np.shape != rgb_np.shape or xyz_np.ndim != 2 or xyz_np.shape[1] != 3:
        raise SpatialvidError(f"COLMAP export: xyz {xyz_np.shape} and rgb {rgb_np.shape} must both be [P,3]")
    if not np.isfinite(xyz_np).all():
        raise SpatialvidError("COLMAP export: points have NaN/Inf coordinates")
    rgb8 = np.clip(np.round(rgb_np * 255), 0, 255).astype(np.int64)
    pt_lines = [f"{j + 1} {_g(p[0])} {_g(p[1])} {_g(p[2])} {c[0]} {c[1]} {c[2]} 0"
                for j, (p, c) in enumerate(zip(xyz_np, rgb8))]
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "cameras.txt", "# Camera list with one line of data per camera:\n"
                      "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                      f"# Number of cameras: {len(cam_lines)}\n" + "".join(line + "\n" for line in cam_lines))
    atomic_write_text(path / "images.txt", "# Image list with two lines of data per image:\n"
                      "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                      "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                      f"# Number of images: {len(cameras)}\n" + "".join(line + "\n" for line in img_lines))
    atomic_write_text(path / "points3D.txt", "# 3D point list with one line of data per point:\n"
                      "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                      f"# Number of points: {len(pt_lines)}\n" + "".join(line + "\n" for line in pt_lines))
    return path
