"""nerfstudio ``camera_path.json``: read, write, and convert to :class:`~spatialvid.cameras.Cameras`.

Conventions (the same as nerfstudio's ``ns-render camera-path`` and its viewer):

* ``camera_path[i].camera_to_world`` is a flattened **row-major** 4x4 camera-to-world matrix in **OpenGL**
  axes (x right, y up, z back; the camera looks down -z).
* ``fov`` is the **vertical** field of view in degrees; the focal length is
  ``render_height / 2 / tan(fov / 2)`` for both axes and the principal point is the image centre.
* ``aspect`` is stored per frame (width / height) but, as in nerfstudio, the rendered size is
  ``render_width`` x ``render_height``.
* ``keyframes[i].matrix`` is viewer state. nerfstudio's current (viser) viewer writes a row-major list;
  the legacy (three.js) viewer wrote a JSON *string* of three.js' column-major ``elements``. Both are read.
* A renderer renders exactly the frames in ``camera_path`` (``len(camera_path)`` frames, played at ``fps``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spatialvid.errors import FormatError, SpatialvidError

REQUIRED_FIELDS = ("render_height", "render_width", "camera_path")
SUPPORTED_CAMERA_TYPES = ("perspective",)
_KNOWN_TOP = {"camera_type", "render_height", "render_width", "fps", "seconds", "smoothness_value", "is_cycle",
              "keyframes", "camera_path"}


def focal_from_fov(fov_deg: float | np.ndarray, height: int) -> float | np.ndarray:
    """Pixel focal length for a vertical field of view in degrees (three.js / nerfstudio convention)."""
    return 0.5 * height / np.tan(np.radians(fov_deg) / 2.0)


def fov_from_focal(focal: float | np.ndarray, height: int) -> float | np.ndarray:
    """Vertical field of view in degrees for a pixel focal length."""
    return np.degrees(2.0 * np.arctan(0.5 * height / np.asarray(focal, dtype=np.float64)))


@dataclass
class Keyframe:
    """A viewer keyframe: ``c2w`` [4,4] OpenGL camera-to-world, ``fov`` vertical degrees, ``aspect`` w/h.

    ``extra`` keeps any other fields (``override_transition_sec``, ...) so a round trip preserves them.
    """

    c2w: np.ndarray
    fov: float
    aspect: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CameraPath:
    """A dense render path: one camera per output frame.

    Attributes:
        c2w: [N,4,4] float64 camera-to-world, OpenGL axes (nerfstudio's ``camera_to_world``).
        fov: [N] vertical field of view, degrees.
        aspect: [N] width / height as stored in the file (informational; see the module docstring).
        width, height: rendered image size in pixels.
        fps: frames per second of the video.
        keyframes: viewer keyframes the path was made from (may be empty).
        smoothness_value: nerfstudio's spline smoothness (we use it as Kochanek-Bartels tension).
        is_cycle: whether the path loops.
        extra: other top-level fields of the file, preserved on write.
    """

    c2w: np.ndarray
    fov: np.ndarray
    width: int
    height: int
    fps: float = 30.0
    aspect: np.ndarray | None = None
    camera_type: str = "perspective"
    keyframes: list[Keyframe] = field(default_factory=list)
    smoothness_value: float = 0.0
    is_cycle: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.c2w = np.asarray(self.c2w, dtype=np.float64).reshape(-1, 4, 4)
        n = self.c2w.shape[0]
        self.fov = np.broadcast_to(np.asarray(self.fov, dtype=np.float64).reshape(-1), (n,)).copy()
        if self.aspect is None:
            self.aspect = np.full(n, self.width / self.height)
        self.aspect = np.broadcast_to(np.asarray(self.aspect, dtype=np.float64).reshape(-1), (n,)).copy()
        self.width, self.height = int(self.width), int(self.height)
        self.fps = float(self.fps)

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    @property
    def seconds(self) -> float:
        """Duration of the video: ``len(path) / fps``."""
        return len(self) / self.fps

    def validate(self, where: str = "camera path") -> None:
        """Raise :class:`SpatialvidError` for an empty path, non-finite values or a bad size / fov."""
        if len(self) == 0:
            raise SpatialvidError(f"{where}: the camera path has no frames")
        if not np.isfinite(self.c2w).all():
            bad = int(np.argwhere(~np.isfinite(self.c2w).reshape(len(self), -1).all(1))[0, 0])
            raise SpatialvidError(f"{where}: frame {bad}: camera_to_world has non-finite values")
        if self.width <= 0 or self.height <= 0:
            raise SpatialvidError(f"{where}: render size must be positive (got {self.width}x{self.height})")
        if not (np.isfinite(self.fov).all() and (self.fov > 0).all() and (self.fov < 180).all()):
            raise SpatialvidError(f"{where}: fov must be in (0, 180) degrees")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise SpatialvidError(f"{where}: fps must be positive (got {self.fps})")

    def with_resolution(self, width: int, height: int) -> CameraPath:
        """The same path rendered at another size (vertical fov kept, so the view widens/narrows)."""
        return CameraPath(c2w=self.c2w.copy(), fov=self.fov.copy(), width=width, height=height, fps=self.fps,
                          aspect=np.full(len(self), width / height), camera_type=self.camera_type,
                          keyframes=list(self.keyframes), smoothness_value=self.smoothness_value,
                          is_cycle=self.is_cycle, extra=dict(self.extra))

    def cameras(self):
        """All frames as a :class:`~spatialvid.cameras.Cameras` batch (OpenCV world-to-camera inside)."""
        from spatialvid.cameras import Cameras

        f = focal_from_fov(self.fov, self.height)
        c2w = self.c2w.copy()
        u, _, vt = np.linalg.svd(c2w[:, :3, :3])  # drop any scale/shear a viewer left in the rotation
        c2w[:, :3, :3] = u @ vt
        return Cameras.from_c2w(c2w, fx=f, fy=f, cx=self.width / 2.0, cy=self.height / 2.0,
                                width=self.width, height=self.height, opengl=True,
                                names=[f"frame_{i:05d}" for i in range(len(self))])

    @classmethod
    def from_cameras(cls, cameras, fps: float = 30.0, **kw: Any) -> CameraPath:
        """A path through the given cameras (one frame each), sized like the first camera."""
        w, h = int(cameras.width[0]), int(cameras.height[0])
        c2w = cameras.c2w(opengl=True).double().numpy()
        fov = fov_from_focal(cameras.fy.double().numpy() * h / cameras.height.double().numpy(), h)
        return cls(c2w=c2w, fov=fov, width=w, height=h, fps=fps, **kw)

    # ---- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The nerfstudio ``camera_path.json`` dict."""
        out: dict[str, Any] = dict(self.extra)
        out.update({
            "camera_type": self.camera_type,
            "render_height": self.height,
            "render_width": self.width,
            "fps": self.fps,
            "seconds": self.seconds,
            "smoothness_value": self.smoothness_value,
            "is_cycle": bool(self.is_cycle),
            "keyframes": [
                {**k.extra, "matrix": [float(v) for v in np.asarray(k.c2w, dtype=np.float64).reshape(-1)],
                 "fov": float(k.fov), "aspect": float(k.aspect)}
                for k in self.keyframes
            ],
            "camera_path": [
                {"camera_to_world": [float(v) for v in self.c2w[i].reshape(-1)],
                 "fov": float(self.fov[i]), "aspect": float(self.aspect[i])}
                for i in range(len(self))
            ],
        })
        return out

    @classmethod
    def from_json(cls, data: Any, path: str | Path = "<camera path>") -> CameraPath:
        """Parse a nerfstudio ``camera_path.json`` dict; :class:`FormatError` names ``path`` and the field."""
        if not isinstance(data, dict):
            raise FormatError(path, "not a camera path (expected a JSON object at the top level)")
        for key in REQUIRED_FIELDS:
            if key not in data:
                raise FormatError(path, f"missing field '{key}'")
        camera_type = str(data.get("camera_type", "perspective")).lower()
        if camera_type not in SUPPORTED_CAMERA_TYPES:
            raise FormatError(path, f"camera_type '{camera_type}' is not supported (only 'perspective')")
        width = _positive_int(data["render_width"], path, "render_width")
        height = _positive_int(data["render_height"], path, "render_height")
        frames = data["camera_path"]
        if not isinstance(frames, list) or not frames:
            raise FormatError(path, "field 'camera_path' must be a non-empty list of frames")
        c2w = np.empty((len(frames), 4, 4))
        fov = np.empty(len(frames))
        aspect = np.empty(len(frames))
        for i, fr in enumerate(frames):
            where = f"camera_path[{i}]"
            if not isinstance(fr, dict):
                raise FormatError(path, f"{where} is not an object")
            for key in ("camera_to_world", "fov"):
                if key not in fr:
                    raise FormatError(path, f"{where}: missing field '{key}'")
            c2w[i] = _matrix(fr["camera_to_world"], path, f"{where}.camera_to_world", column_major=False)
            fov[i] = _finite_float(fr["fov"], path, f"{where}.fov")
            if not 0 < fov[i] < 180:
                raise FormatError(path, f"{where}.fov = {fov[i]} is not a vertical field of view in (0, 180) degrees")
            aspect[i] = _finite_float(fr.get("aspect", width / height), path, f"{where}.aspect")
        keyframes = []
        for i, kf in enumerate(data.get("keyframes") or []):
            where = f"keyframes[{i}]"
            if not isinstance(kf, dict) or "matrix" not in kf:
                raise FormatError(path, f"{where}: missing field 'matrix'")
            raw = kf["matrix"]
            legacy = isinstance(raw, str)
            m = _matrix(raw, path, f"{where}.matrix", column_major=None if not legacy else True)
            extra = {k: v for k, v in kf.items() if k not in ("matrix", "fov", "aspect")}
            keyframes.append(Keyframe(c2w=m, fov=_finite_float(kf.get("fov", fov[0]), path, f"{where}.fov"),
                                      aspect=_finite_float(kf.get("aspect", width / height), path, f"{where}.aspect"),
                                      extra=extra))
        fps = _finite_float(data.get("fps", 30.0), path, "fps")
        if fps <= 0:
            raise FormatError(path, f"fps must be positive (got {fps})")
        return cls(c2w=c2w, fov=fov, aspect=aspect, width=width, height=height, fps=fps,
                   camera_type=camera_type, keyframes=keyframes,
                   smoothness_value=_finite_float(data.get("smoothness_value", 0.0), path, "smoothness_value"),
                   is_cycle=bool(data.get("is_cycle", False)),
                   extra={k: v for k, v in data.items() if k not in _KNOWN_TOP})


def read_camera_path(path: str | Path) -> CameraPath:
    """Read a nerfstudio ``camera_path.json``; clear :class:`FormatError` for missing/bad fields."""
    path = Path(path)
    if not path.is_file():
        raise SpatialvidError(f"{path}: camera path file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(path, f"not valid JSON ({e})") from None
    return CameraPath.from_json(data, path)


def write_camera_path(path: str | Path, camera_path: CameraPath) -> Path:
    """Write ``camera_path`` as nerfstudio ``camera_path.json`` (atomically)."""
    from spatialvid.atomic import atomic_write_json

    camera_path.validate(str(path))
    atomic_write_json(path, camera_path.to_json())
    return Path(path)


# ---- parsing helpers -----------------------------------------------------------------------------
def _finite_float(v: Any, path, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise FormatError(path, f"{where} must be a number (got {v!r})") from None
    if not math.isfinite(x):
        raise FormatError(path, f"{where} is not finite ({v!r})")
    return x


def _positive_int(v: Any, path, where: str) -> int:
    x = _finite_float(v, path, where)
    if x <= 0 or x != int(x):
        raise FormatError(path, f"{where} must be a positive integer (got {v!r})")
    return int(x)


def _matrix(v: Any, path, where: str, column_major: bool | None) -> np.ndarray:
    """A 4x4 matrix from a flat list of 16 (or 12: 3x4), a nested list, or a JSON string of either.

    ``column_major``: True for three.js ``elements`` order, False for row-major, None to detect from where
    the translation sits (row-major when ambiguous).
    """
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise FormatError(path, f"{where}: not a matrix (a string that is not a JSON list)") from None
        if isinstance(v, dict):  # three.js serialises Matrix4 as {"0": .., "1": ..} in some versions
            try:
                v = [v[str(i)] for i in range(16)]
            except KeyError:
                raise FormatError(path, f"{where}: not a matrix (an object without keys '0'..'15')") from None
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FormatError(path, f"{where}: not a list of numbers") from None
    if a.size not in (12, 16):
        raise FormatError(path, f"{where}: expected 16 numbers (a flattened 4x4 matrix), got {a.size}")
    if not np.isfinite(a).all():
        raise FormatError(path, f"{where}: the matrix has non-finite values (NaN or inf)")
    if a.size == 12:
        m = np.eye(4)
        m[:3] = a.reshape(3, 4)
        return m
    if column_major is None:
        row_bottom = np.abs(a[12:15]).max() < 1e-9 and abs(a[15] - 1) < 1e-6
        col_bottom = np.abs(a[[3, 7, 11]]).max() < 1e-9 and abs(a[15] - 1) < 1e-6
        column_major = col_bottom and not row_bottom
    m = a.reshape(4, 4)
    if column_major:
        m = m.T.copy()
    if np.abs(m[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise FormatError(path, f"{where}: last row must be [0, 0, 0, 1] (got {m[3].tolist()})")
    rot = m[:3, :3]
    scale = np.linalg.norm(rot, axis=0)
    if (scale < 1e-9).any():
        raise FormatError(path, f"{where}: the rotation part is singular")
    return m
