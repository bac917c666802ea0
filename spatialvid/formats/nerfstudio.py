"""nerfstudio ``transforms.json``: cameras as OpenGL camera-to-world matrices plus pinhole intrinsics.

Reading:

* Intrinsics ``fl_x fl_y cx cy w h`` and distortion ``k1 k2 p1 p2 k3`` at the top level (shared) and/or per
  frame (overrides). ``camera_angle_x``/``camera_angle_y`` (Blender/instant-ngp style) stand in for a missing
  ``fl_x``/``fl_y``; a missing ``cx``/``cy`` defaults to the image centre; a missing ``w``/``h`` is read from
  the image file header.
* ``camera_model``: ``OPENCV`` / ``PINHOLE`` / ``SIMPLE_PINHOLE`` / ``SIMPLE_RADIAL`` / ``RADIAL`` (all
  representable with k1 k2 p1 p2 k3). Fisheye and other models raise a clear error.
* ``transform_matrix`` (camera-to-world, OpenGL axes: x right, y up, z back) becomes our OpenCV
  world-to-camera: ``w2c = inverse(c2w_gl @ diag(1, -1, -1, 1))``.
* ``file_path`` is resolved relative to the json's folder into ``Cameras.image_paths`` (absolute);
  ``Cameras.names`` are the file names.
* Every other top-level key (``applied_transform``, ``aabb_scale``, ``ply_file_path``...) is returned by
  :func:`read_transforms_extra` so that it can be written back unchanged with ``write_transforms(extra=...)``.

Writing puts an intrinsic at the top level when all cameras share it and per frame otherwise, writes
``file_path`` relative to ``relative_to`` (default: the json's folder) when the image is inside it, and
keeps float32 camera values exact (float64 decimal text, float64 matrix inverse).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialvid.atomic import atomic_write_json
from spatialvid.cameras import Cameras
from spatialvid.errors import FormatError

FLIP = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL <-> OpenCV camera axes (its own inverse)
DIST_KEYS = ("k1", "k2", "p1", "p2", "k3")
SUPPORTED_MODELS = {"OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "FULL_OPENCV"}
_CAMERA_KEYS = {"fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2",
                "camera_model", "camera_angle_x", "camera_angle_y", "frames"}
# per-frame keys spatialvid adds when needed (ignored by nerfstudio)
NAME_KEY = "name"
NO_IMAGE_KEY = "spatialvid_no_image"
# the float32 OpenCV world-to-camera [R | t] (3x4) exactly as spatialvid held it, so that save -> load is
# bit-exact; used only when it agrees with transform_matrix (another tool may have edited the matrix)
W2C_KEY = "spatialvid_w2c"


def _num(path: Path, where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(path, f"{where}: '{key}' must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise FormatError(path, f"{where}: '{key}' is not finite ({value!r})")
    return v


def _matrix(path: Path, where: str, value: Any) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(path, f"{where}: 'transform_matrix' is not a matrix of numbers") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise FormatError(path, f"{where}: 'transform_matrix' must be 4x4 (or 3x4), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise FormatError(path, f"{where}: 'transform_matrix' has NaN/Inf values")
    r = m[:3, :3]
    err = np.abs(r @ r.T - np.eye(3)).max()
    if err > 1e-3 or np.linalg.det(r) < 0:
        raise FormatError(path, f"{where}: 'transform_matrix' rotation is not a rotation "
                                f"(orthonormality error {err:.2g}, det {np.linalg.det(r):.3g})")
    if np.abs(m[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise FormatError(path, f"{where}: 'transform_matrix' last row must be 0 0 0 1")
    return m


def _image_size(path: Path, where: str, image: Path) -> tuple[int, int]:
    from spatialvid.errors import SpatialvidError
    from spatialvid.io.decode import image_size

    try:
        return image_size(image)
    except SpatialvidError:
        raise FormatError(path, f"{where}: no 'w'/'h' given and the image {image} cannot be read "
                                "to find its size") from None


def read_transforms_extra(path: str | Path) -> tuple[Cameras, dict[str, Any]]:
    """Read a nerfstudio transforms.json: returns (cameras, other top-level keys such as applied_transform)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "file not found" if not path.exists() else "is not a file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise FormatError(path, "expected a JSON object at the top level")
    frames = data.get("frames")
    if not isinstance(frames, list):
        raise FormatError(path, "missing field 'frames' (a list of frames)")
    if not frames:
        raise FormatError(path, "'frames' is empty: no cameras")
    base = path.parent
    n = len(frames)
    fx, fy, cx, cy = (np.zeros(n) for _ in range(4))
    wh = np.zeros((n, 2), dtype=np.int64)
    dist = np.zeros((n, 5))
    c2w = np.zeros((n, 4, 4))
    names: list[str] = []
    paths: list[str] = []
    for i, fr in enumerate(frames):
        where = f"frame {i}"
        if not isinstance(fr, dict):
            raise FormatError(path, f"{where}: expected an object")
        for key in ("file_path", "transform_matrix"):
            if key not in fr:
                raise FormatError(path, f"{where}: missing field '{key}'")
        if not isinstance(fr["file_path"], str) or not fr["file_path"]:
            raise FormatError(path, f"{where}: 'file_path' must be a non-empty string")
        where = f"frame {i} ({fr['file_path']})"

        def get(key: str, fr: dict = fr):
            return fr[key] if key in fr else data.get(key)

        model = get("camera_model") or "OPENCV"
        if model not in SUPPORTED_MODELS:
            raise FormatError(path, f"{where}: camera_model {model!r} is not supported "
                                    f"(supported: {', '.join(sorted(SUPPORTED_MODELS))})")
        image = _abs(base / fr["file_path"])
        if fr.get(NO_IMAGE_KEY):
            paths.append("")
        else:
            paths.append(str(image))
        names.append(str(fr[NAME_KEY]) if NAME_KEY in fr else Path(fr["file_path"]).name)
        w, h = get("w"), get("h")
        if w is None or h is None:
            w, h = _image_size(path, where, image)
        w, h = _num(path, where, "w", w), _num(path, where, "h", h)
        if w <= 0 or h <= 0 or w != int(w) or h != int(h):
            raise FormatError(path, f"{where}: image size w={w:g} h={h:g} must be positive integers")
        wh[i] = (int(w), int(h))
        fl = {}
        for key, angle, size in (("fl_x", "camera_angle_x", w), ("fl_y", "camera_angle_y", h)):
            if get(key) is not None:
                fl[key] = _num(path, where, key, get(key))
            elif get(angle) is not None:
                a = _num(path, where, angle, get(angle))
                fl[key] = 0.5 * size / math.tan(0.5 * a)
        if "fl_x" not in fl and "fl_y" not in fl:
            raise FormatError(path, f"{where}: missing field 'fl_x' (focal length in pixels)")
        fx[i] = fl.get("fl_x", fl.get("fl_y"))
        fy[i] = fl.get("fl_y", fx[i])
        if fx[i] <= 0 or fy[i] <= 0:
            raise FormatError(path, f"{where}: focal lengths must be positive (fl_x={fx[i]:g}, fl_y={fy[i]:g})")
        cx[i] = _num(path, where, "cx", get("cx")) if get("cx") is not None else w / 2
        cy[i] = _num(path, where, "cy", get("cy")) if get("cy") is not None else h / 2
        for j, key in enumerate(DIST_KEYS):
            if get(key) is not None:
                dist[i, j] = _num(path, where, key, get(key))
        if get("k4") is not None and _num(path, where, "k4", get("k4")) != 0.0:
            raise FormatError(path, f"{where}: k4 != 0 is not supported (only k1 k2 p1 p2 k3)")
        c2w[i] = _matrix(path, where, fr["transform_matrix"])
    w2c = np.linalg.inv(c2w @ FLIP)
    for i, fr in enumerate(frames):
        exact = fr.get(W2C_KEY)
        if exact is None:
            continue
        try:
            e = np.asarray(exact, dtype=np.float64).reshape(3, 4)
        except (TypeError, ValueError):
            continue
        tol = 1e-5 * (1.0 + np.abs(w2c[i, :3, 3]).max())
        if np.isfinite(e).all() and np.abs(e - w2c[i, :3]).max() <= tol:
            w2c[i, :3] = e
    cams = Cameras(fx=torch.from_numpy(fx).float(), fy=torch.from_numpy(fy).float(),
                   cx=torch.from_numpy(cx).float(), cy=torch.from_numpy(cy).float(),
                   width=torch.from_numpy(wh[:, 0]), height=torch.from_numpy(wh[:, 1]),
                   R=torch.from_numpy(w2c[:, :3, :3]).float(), t=torch.from_numpy(w2c[:, :3, 3]).float(),
                   dist=torch.from_numpy(dist).float(), names=names, image_paths=paths)
    extra = {k: v for k, v in data.items() if k not in _CAMERA_KEYS}
    return cams, extra


def read_transforms(path: str | Path) -> Cameras:
    """Read the cameras of a nerfstudio transforms.json (image paths resolved to absolute paths)."""
    return read_transforms_extra(path)[0]


def _f(x: torch.Tensor | float) -> float:
    """A float32 value as the float64 that prints it exactly (round-trips through JSON)."""
    return float(x)


def _abs(p: str | Path) -> Path:
    """Absolute, normalised, symlinks kept (so paths round-trip unchanged)."""
    return Path(os.path.normpath(os.path.abspath(p)))


def _rel_path(image: str, relative_to: Path) -> str:
    """``image`` relative to ``relative_to`` when it lies inside it, else absolute."""
    p, base = _abs(image), _abs(relative_to)
    return p.relative_to(base).as_posix() if p.is_relative_to(base) else p.as_posix()


def transforms_dict(cameras: Cameras, relative_to: str | Path, extra: dict[str, Any] | None = None) -> dict:
    """The transforms.json content for ``cameras`` (see :func:`write_transforms`)."""
    cameras.validate("cameras to write")
    relative_to = Path(relative_to)
    n = len(cameras)
    w2c = cameras.viewmats().double().numpy()
    c2w_gl = np.linalg.inv(w2c) @ FLIP
    cols = {
        "fl_x": cameras.fx, "fl_y": cameras.fy, "cx": cameras.cx, "cy": cameras.cy,
        "w": cameras.width, "h": cameras.height,
        **{k: cameras.dist[:, j] for j, k in enumerate(DIST_KEYS)},
    }
    out: dict[str, Any] = {"camera_model": "OPENCV"}
    per_frame: dict[str, list] = {}
    for key, values in cols.items():
        vals = [int(v) if key in ("w", "h") else _f(v) for v in values]
        if all(v == vals[0] for v in vals):
            out[key] = vals[0]
        else:
            per_frame[key] = vals
    for key, value in (extra or {}).items():
        if key in _CAMERA_KEYS:
            continue
        out[key] = value
    frames = []
    for i in range(n):
        image = cameras.image_paths[i]
        name = cameras.names[i]
        fr: dict[str, Any] = {"file_path": _rel_path(image, relative_to) if image else name}
        if not image:
            fr[NO_IMAGE_KEY] = True
        if Path(fr["file_path"]).name != name:
            fr[NAME_KEY] = name
        fr["transform_matrix"] = [[float(v) for v in row] for row in c2w_gl[i]]
        fr[W2C_KEY] = [[float(v) for v in row] for row in w2c[i, :3]]
        for key, vals in per_frame.items():
            fr[key] = vals[i]
        frames.append(fr)
    out["frames"] = frames
    return out


def write_transforms(path: str | Path, cameras: Cameras, relative_to: str | Path | None = None,
                     extra: dict[str, Any] | None = None) -> Path:
    """Write ``cameras`` as a nerfstudio transforms.json (atomically).

    ``relative_to``: folder that ``file_path`` entries are relative to (default: the json's folder).
    ``extra``: more top-level keys to write (e.g. ``applied_transform`` from :func:`read_transforms_extra`).
    """
    path = Path(path)
    atomic_write_json(path, transforms_dict(cameras, path.parent if relative_to is None else relative_to, extra))
    return path
