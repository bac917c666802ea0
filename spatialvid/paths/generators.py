"""Camera path generators: ``orbit``, ``spiral`` (forward-facing, LLFF style) and ``train``.

Inputs are the scene's training cameras (:class:`~spatialvid.cameras.Cameras`, OpenCV world-to-camera);
outputs are :class:`~spatialvid.paths.camera_path.CameraPath` (OpenGL camera-to-world, vertical fov in
degrees, like nerfstudio's camera_path.json). Positions are in world units.
"""

from __future__ import annotations

import numpy as np

from spatialvid.errors import SpatialvidError
from spatialvid.paths.camera_path import CameraPath, Keyframe, fov_from_focal
from spatialvid.paths.interpolate import interpolate_poses

GENERATORS = ("orbit", "spiral", "train")


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def _cams_np(cameras) -> tuple[np.ndarray, np.ndarray]:
    """(centres [N,3], c2w_cv [N,4,4]) in float64."""
    if len(cameras) == 0:
        raise SpatialvidError("the scene has no cameras to build a path from")
    c2w = np.linalg.inv(cameras.viewmats().double().numpy())
    return c2w[:, :3, 3].copy(), c2w


def look_at_c2w(eye, target, up) -> np.ndarray:
    """OpenGL camera-to-world [4,4] at ``eye`` looking at ``target`` with world ``up`` (x right, y up, z back)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = eye - target
    if np.linalg.norm(back) < 1e-12:
        raise SpatialvidError("look_at: eye and target coincide")
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-9:  # looking along up: any perpendicular will do
        alt = np.array([1.0, 0, 0]) if abs(back[0]) < 0.9 else np.array([0, 1.0, 0])
        right = np.cross(alt, back)
    right = right / np.linalg.norm(right)
    true_up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, true_up, back, eye
    return m


def mean_up(cameras) -> np.ndarray:
    """The cameras' mean up direction (OpenCV -y axis in world), normalised."""
    _, c2w = _cams_np(cameras)
    return _normalize(-c2w[:, :3, 1].mean(0))


def resolve_up(cameras, up=None) -> np.ndarray:
    """World up: ``up`` if given (e.g. scene metadata "up"), else the cameras' mean up."""
    if up is None:
        return mean_up(cameras)
    u = np.asarray(up, dtype=np.float64).reshape(3)
    if not np.isfinite(u).all() or np.linalg.norm(u) < 1e-9:
        raise SpatialvidError(f"up vector {list(u)} is not a direction")
    return u / np.linalg.norm(u)


def focus_point(cameras, points: np.ndarray | None = None) -> np.ndarray:
    """The scene centre the cameras look at.

    The least-squares point nearest to all optical axes when the axes converge (object-centric captures);
    otherwise the median of ``points`` (e.g. Gaussian means) if given, else the mean camera centre moved
    forward (along the mean viewing direction) by twice the cameras' spread.
    """
    centres, c2w = _cams_np(cameras)
    dirs = _normalize(c2w[:, :3, 2])  # OpenCV forward = +z
    eye = np.eye(3)
    proj = eye[None] - dirs[:, :, None] * dirs[:, None, :]
    a = proj.sum(0)
    b = (proj @ centres[:, :, None]).sum(0)[:, 0]
    evals = np.linalg.eigvalsh(a / len(centres))
    if len(centres) >= 2 and evals[0] > 0.02:
        p = np.linalg.solve(a, b)
        in_front = ((p[None] - centres) * dirs).sum(1) > 0
        if in_front.mean() > 0.5:
            return p
    if points is not None and len(points):
        return np.median(np.asarray(points, dtype=np.float64).reshape(-1, 3), axis=0)
    spread = np.linalg.norm(centres - centres.mean(0), axis=1).mean() if len(centres) > 1 else 1.0
    return centres.mean(0) + _normalize(dirs.mean(0)) * max(spread, 1e-3) * 2.0


def _default_size(cameras, width, height) -> tuple[int, int, float]:
    w0, h0 = int(cameras.width[0]), int(cameras.height[0])
    fov = float(np.median(fov_from_focal(cameras.fy.double().numpy(), cameras.height.double().numpy())))
    return int(width or w0), int(height or h0), fov


def orbit(cameras, num_frames: int = 120, *, fps: float = 30.0, up=None, center=None, points=None,
          radius: float | None = None, elevation: float | None = None, fov: float | None = None,
          width: int | None = None, height: int | None = None, revolutions: float = 1.0) -> CameraPath:
    """A circular orbit around the scene centre, looking at it.

    The circle lies at the cameras' mean height above the centre (along ``up``) and their mean horizontal
    distance from it (``radius``/``elevation`` override), starting at the first camera's azimuth and turning
    counter-clockwise about ``up``. ``up`` defaults to the cameras' mean up; ``center`` to
    :func:`focus_point`. A full revolution loops (the last frame is one step before the first).
    """
    centres, _ = _cams_np(cameras)
    u = resolve_up(cameras, up)
    c = focus_point(cameras, points) if center is None else np.asarray(center, dtype=np.float64).reshape(3)
    rel = centres - c
    h = rel @ u
    horiz = rel - h[:, None] * u
    r = float(np.linalg.norm(horiz, axis=1).mean()) if radius is None else float(radius)
    z = float(h.mean()) if elevation is None else float(elevation)
    if not np.isfinite(r) or r < 1e-6:
        raise SpatialvidError("orbit: the cameras have no horizontal spread around the centre; give a radius")
    e1 = horiz[0] if np.linalg.norm(horiz[0]) > 1e-6 * r else np.cross(u, [1.0, 0, 0])
    if np.linalg.norm(e1) < 1e-9:
        e1 = np.cross(u, [0, 1.0, 0])
    e1 = _normalize(e1)
    e2 = np.cross(u, e1)
    w, hgt, fov0 = _default_size(cameras, width, height)
    full = abs(revolutions - round(revolutions)) < 1e-9 and revolutions != 0
    theta = np.linspace(0.0, 2 * np.pi * revolutions, num_frames, endpoint=not full)
    c2w = np.stack([look_at_c2w(c + z * u + r * (np.cos(a) * e1 + np.sin(a) * e2), c, u) for a in theta])
    return CameraPath(c2w=c2w, fov=fov0 if fov is None else fov, width=w, height=hgt, fps=fps, is_cycle=full,
                      extra={"spatialvid_generator": {"kind": "orbit", "center": c.tolist(), "up": u.tolist(),
                                                      "radius": r, "elevation": z, "revolutions": revolutions}})


def _average_pose_gl(cameras) -> np.ndarray:
    """LLFF's average pose: mean centre, mean forward and up, re-orthonormalised (OpenGL c2w)."""
    centres, c2w = _cams_np(cameras)
    back = _normalize(-c2w[:, :3, 2].mean(0))
    up = _normalize(-c2w[:, :3, 1].mean(0))
    right = _normalize(np.cross(up, back))
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, centres.mean(0)
    return m


def spiral(cameras, num_frames: int = 120, *, fps: float = 30.0, points=None, near: float | None = None,
           far: float | None = None, rots: float = 2.0, zrate: float = 0.5, radius_scale: float = 1.0,
           fov: float | None = None, width: int | None = None, height: int | None = None) -> CameraPath:
    """A forward-facing spiral (LLFF / NeRF ``render_path_spiral``) around the cameras' average pose.

    The camera stays within the 90th-percentile spread of the training cameras (times ``radius_scale``) in
    the average camera's frame, moves ``rots`` turns in x/y while bobbing in z at ``zrate``, and always looks
    at the focus depth ``1 / ((1 - 0.75) / near + 0.75 / far)`` in front of the average pose. ``near``/``far``
    default to the 5th/95th percentile depth of ``points`` (e.g. Gaussian means) in front of that pose.
    """
    centres, _ = _cams_np(cameras)
    avg = _average_pose_gl(cameras)
    fwd = -avg[:3, 2]
    if near is None or far is None:
        depths = None
        if points is not None and len(points):
            d = (np.asarray(points, dtype=np.float64).reshape(-1, 3) - avg[:3, 3]) @ fwd
            d = d[d > 1e-6]
            if d.size >= 8:
                depths = np.percentile(d, [5, 95])
        if depths is None:
            dist = np.linalg.norm(focus_point(cameras, points) - avg[:3, 3])
            depths = np.array([0.5 * dist, 2.0 * dist])
        near = float(depths[0]) if near is None else near
        far = float(depths[1]) if far is None else far
    if not (near > 0 and far > near):
        raise SpatialvidError(f"spiral: need 0 < near < far (got near={near}, far={far})")
    focal = 1.0 / ((1 - 0.75) / near + 0.75 / far)
    local = (centres - avg[:3, 3]) @ avg[:3, :3]  # camera offsets in the average camera's frame
    rads = np.percentile(np.abs(local), 90, axis=0) * radius_scale
    if np.linalg.norm(rads) < 1e-9:
        rads = np.array([0.1, 0.1, 0.05]) * focal
    target = avg[:3, 3] + fwd * focal
    up = avg[:3, 1]
    theta = np.linspace(0.0, 2 * np.pi * rots, num_frames, endpoint=False)
    c2w = []
    for a in theta:
        offset = np.array([np.cos(a), -np.sin(a), -np.sin(a * zrate)]) * rads
        c2w.append(look_at_c2w(avg[:3, 3] + avg[:3, :3] @ offset, target, up))
    w, hgt, fov0 = _default_size(cameras, width, height)
    return CameraPath(c2w=np.stack(c2w), fov=fov0 if fov is None else fov, width=w, height=hgt, fps=fps,
                      extra={"spatialvid_generator": {"kind": "spiral", "near": near, "far": far,
                                                      "focus_depth": focal, "radii": rads.tolist()}})


def train(cameras, num_frames: int | None = None, *, fps: float = 30.0, max_keyframes: int = 24,
          constant_speed: bool = False, tension: float = 0.0, width: int | None = None,
          height: int | None = None) -> CameraPath:
    """A smooth path through the training cameras in their order (video order).

    Up to ``max_keyframes`` evenly chosen cameras (always the first and last) become keyframes; the path is
    the C1 spline through them (see :mod:`spatialvid.paths.interpolate`), so it passes exactly through each
    chosen camera. ``num_frames`` defaults to the number of training cameras.
    """
    n = len(cameras)
    if n == 0:
        raise SpatialvidError("train path: the scene has no cameras")
    idx = np.unique(np.round(np.linspace(0, n - 1, min(n, max(2, max_keyframes)))).astype(int))
    c2w_gl = cameras.c2w(opengl=True).double().numpy()[idx]
    fovs = fov_from_focal(cameras.fy.double().numpy(), cameras.height.double().numpy())[idx]
    frames = int(num_frames or n)
    c2w, fov = interpolate_poses(c2w_gl, fovs, frames, constant_speed=constant_speed, tension=tension)
    w, hgt, _ = _default_size(cameras, width, height)
    kfs = [Keyframe(c2w=c2w_gl[i], fov=float(fovs[i]), aspect=w / hgt) for i in range(len(idx))]
    return CameraPath(c2w=c2w, fov=fov, width=w, height=hgt, fps=fps, keyframes=kfs, smoothness_value=tension,
                      extra={"spatialvid_generator": {"kind": "train", "keyframe_cameras": [cameras.names[i] for i in idx],
                                                      "constant_speed": constant_speed}})


def generate(kind: str, cameras, num_frames: int, *, fps: float = 30.0, up=None, points=None,
             width: int | None = None, height: int | None = None) -> CameraPath:
    """Dispatch by name: "orbit", "spiral" or "train"."""
    if kind == "orbit":
        return orbit(cameras, num_frames, fps=fps, up=up, points=points, width=width, height=height)
    if kind == "spiral":
        return spiral(cameras, num_frames, fps=fps, points=points, width=width, height=height)
    if kind == "train":
        return train(cameras, num_frames, fps=fps, width=width, height=height)
    raise SpatialvidError(f"unknown path generator {kind!r} (choose from {', '.join(GENERATORS)} or a .json file)")
