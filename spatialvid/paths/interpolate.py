"""Smooth camera paths through keyframes.

* Positions: Kochanek-Bartels spline (``splines.KochanekBartels``); tension = continuity = bias = 0 is
  Catmull-Rom. With continuity 0 the curve is C1 (continuous velocity) at every keyframe, also on a
  non-uniform time grid.
* Rotations: the Kochanek-Bartels *quaternion* spline (``splines.quaternion.KochanekBartels``): cubic
  spherical Bezier segments evaluated by De Casteljau slerps (the rotational analogue of Catmull-Rom, in the
  squad family); C1 in angular velocity. ``rotation="slerp"`` gives piecewise slerp (C0 only).
* FOV: the same scalar spline over the keyframes' vertical fov (degrees).
* The curve passes through every keyframe exactly: ``spline.evaluate(spline.grid)`` returns the keyframes.
* ``constant_speed=True`` re-times the frames so the camera *position* moves at constant speed
  (arc-length parametrisation), keeping the same curve.

All poses are camera-to-world 4x4 matrices in OpenGL axes (nerfstudio convention); rotations are only
interpolated, so OpenCV c2w works just as well as long as all inputs use the same convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import splines
import splines.quaternion as squat
from scipy.spatial.transform import Rotation

from spatialvid.errors import SpatialvidError

ROTATION_METHODS = ("kb", "slerp")


def _orthonormal(r: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(r)
    out = u @ vt
    if np.linalg.det(out) < 0:
        raise SpatialvidError("keyframe rotation is a reflection (determinant < 0)")
    return out


def keyframe_grid(positions: np.ndarray, rotations: np.ndarray, closed: bool = False,
                  alpha: float = 0.5) -> np.ndarray:
    """Keyframe times ``cumsum(d_i ** alpha)`` (Catmull-Rom parametrisation; alpha 0 = uniform,
    0.5 = centripetal, 1 = chordal). ``d_i`` is the distance between consecutive keyframes, plus their
    rotation angle (radians) times the median keyframe spacing so rotation-only moves also take time."""
    if alpha == 0:
        return np.arange(len(positions) + (1 if closed else 0), dtype=np.float64)
    pos = np.concatenate([positions, positions[:1]]) if closed else positions
    rot = np.concatenate([rotations, rotations[:1]]) if closed else rotations
    dist = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    rel = np.einsum("nji,njk->nik", rot[:-1], rot[1:])
    angle = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0))
    moving = dist[dist > 1e-12]
    scale = float(np.median(moving)) if moving.size else 1.0
    d = dist + angle * scale
    if (d <= 1e-12).all():
        d = np.ones_like(d)
    d = np.maximum(d, 1e-6 * d.max())  # repeated keyframes still get a (short) segment
    return np.concatenate([[0.0], np.cumsum(d ** alpha)])


class KeyframeSpline:
    """A C1 camera spline through keyframes.

    Args:
        c2ws: [K,4,4] (or [K,3,4]) camera-to-world keyframe poses.
        fovs: [K] vertical fov in degrees (or a scalar).
        times: [K] strictly increasing keyframe times (any unit). For a closed path give K+1 values (the
            last is when the path returns to the first keyframe). Default: :func:`keyframe_grid` with
            ``alpha`` (0.5 = centripetal: no cusps or loops between unevenly spaced keyframes; 0 = uniform,
            one time unit per keyframe).
        tension, continuity, bias: Kochanek-Bartels parameters (0, 0, 0 = Catmull-Rom; continuity != 0
            breaks C1 on purpose).
        closed: loop back to the first keyframe.
        rotation: "kb" (C1 quaternion spline) or "slerp" (piecewise).
    """

    def __init__(self, c2ws, fovs, times: Sequence[float] | None = None, *, tension: float = 0.0,
                 continuity: float = 0.0, bias: float = 0.0, closed: bool = False, rotation: str = "kb",
                 alpha: float = 0.5):
        c2ws = np.asarray(c2ws, dtype=np.float64)
        if c2ws.ndim != 3 or c2ws.shape[1:] not in ((4, 4), (3, 4)):
            raise SpatialvidError(f"keyframes: expected [K,4,4] poses, got shape {tuple(c2ws.shape)}")
        k = c2ws.shape[0]
        if k < 1:
            raise SpatialvidError("keyframes: need at least one keyframe")
        if not np.isfinite(c2ws).all():
            raise SpatialvidError("keyframes: non-finite values in a keyframe pose")
        if rotation not in ROTATION_METHODS:
            raise SpatialvidError(f"keyframes: rotation must be one of {ROTATION_METHODS}, got {rotation!r}")
        fovs = np.broadcast_to(np.asarray(fovs, dtype=np.float64).reshape(-1), (k,)).copy()
        self.closed = bool(closed) and k >= 2
        self.positions = c2ws[:, :3, 3].copy()
        self.rotations = np.stack([_orthonormal(r) for r in c2ws[:, :3, :3]])
        self.fovs = fovs
        n_grid = k + 1 if self.closed else k
        if times is None:
            grid = keyframe_grid(self.positions, self.rotations, closed=self.closed, alpha=alpha)
        else:
            grid = np.asarray(times, dtype=np.float64).reshape(-1)
            if grid.shape[0] != n_grid:
                raise SpatialvidError(f"keyframes: {k} keyframes need {n_grid} times"
                                      + (" (closed path: one more than keyframes)" if self.closed else ""))
            if not (np.isfinite(grid).all() and (np.diff(grid) > 0).all()):
                raise SpatialvidError("keyframes: times must be finite and strictly increasing")
        self.grid = grid
        self._k = k
        if k == 1:
            return
        tcb = (float(tension), float(continuity), float(bias))
        ends = "closed" if self.closed else "natural"
        self._pos = splines.KochanekBartels(self.positions, grid=list(grid), tcb=tcb, endconditions=ends)
        self._fov = splines.KochanekBartels(self.fovs[:, None], grid=list(grid), tcb=tcb, endconditions=ends)
        quats = [squat.UnitQuaternion.from_unit_xyzw(q) for q in Rotation.from_matrix(self.rotations).as_quat()]
        if rotation == "kb":
            self._rot = squat.KochanekBartels(quats, grid=list(grid), tcb=tcb, endconditions=ends)
        else:
            self._rot = squat.PiecewiseSlerp(quats, grid=list(grid), closed=self.closed)

    @property
    def start(self) -> float:
        return float(self.grid[0])

    @property
    def end(self) -> float:
        return float(self.grid[-1])

    def evaluate(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Poses [T,4,4] and vertical fovs [T] (degrees) at times ``t`` (clamped to [start, end])."""
        t = np.clip(np.atleast_1d(np.asarray(t, dtype=np.float64)), self.start, self.end)
        out = np.tile(np.eye(4), (t.shape[0], 1, 1))
        if self._k == 1:
            out[:, :3, :3] = self.rotations[0]
            out[:, :3, 3] = self.positions[0]
            return out, np.full(t.shape[0], self.fovs[0])
        out[:, :3, 3] = self._pos.evaluate(t)
        quats = np.array([q.xyzw for q in (self._rot.evaluate(float(x)) for x in t)], dtype=np.float64)
        out[:, :3, :3] = Rotation.from_quat(quats).as_matrix()
        fov = np.asarray(self._fov.evaluate(t), dtype=np.float64).reshape(-1)
        return out, np.clip(fov, 1e-3, 179.0)

    def positions_at(self, t) -> np.ndarray:
        t = np.clip(np.atleast_1d(np.asarray(t, dtype=np.float64)), self.start, self.end)
        if self._k == 1:
            return np.repeat(self.positions[:1], t.shape[0], 0)
        return np.asarray(self._pos.evaluate(t), dtype=np.float64)

    def arc_length_times(self, num: int, endpoint: bool = True, samples_per_segment: int = 256) -> np.ndarray | None:
        """``num`` times evenly spaced in *arc length* of the position curve (None if it barely moves)."""
        n_seg = len(self.grid) - 1
        if self._k == 1 or n_seg < 1:
            return None
        dense = np.concatenate([np.linspace(self.grid[i], self.grid[i + 1], samples_per_segment, endpoint=False)
                                for i in range(n_seg)] + [self.grid[-1:]])
        p = self.positions_at(dense)
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        total = cum[-1]
        extent = np.linalg.norm(self.positions.max(0) - self.positions.min(0))
        if total <= 1e-9 * max(1.0, extent) or total == 0.0:
            return None
        s = np.linspace(0.0, total, num, endpoint=endpoint)
        # cum is non-decreasing; strictly increasing where the camera moves. np.interp needs increasing xp:
        keep = np.concatenate([[True], np.diff(cum) > 0])
        return np.interp(s, cum[keep], dense[keep])

    def frame_times(self, num_frames: int, constant_speed: bool = False) -> np.ndarray:
        """Times of ``num_frames`` output frames: uniform in time, or uniform in arc length.

        An open path includes both ends; a closed path excludes the end (it equals the start), so the
        video loops seamlessly.
        """
        if num_frames < 1:
            raise SpatialvidError("a camera path needs at least one frame")
        endpoint = not self.closed
        if constant_speed:
            t = self.arc_length_times(num_frames, endpoint=endpoint)
            if t is not None:
                return t
        return np.linspace(self.start, self.end, num_frames, endpoint=endpoint)


def interpolate_poses(c2ws, fovs, num_frames: int, *, times=None, constant_speed: bool = False,
                      tension: float = 0.0, continuity: float = 0.0, bias: float = 0.0, closed: bool = False,
                      rotation: str = "kb", alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate keyframe poses ([K,4,4] c2w) and fovs ([K], degrees) into ``num_frames`` frames.

    Returns (c2w [N,4,4], fov [N]). See :class:`KeyframeSpline` for the spline and conventions.
    """
    spline = KeyframeSpline(c2ws, fovs, times, tension=tension, continuity=continuity, bias=bias,
                            closed=closed, rotation=rotation, alpha=alpha)
    return spline.evaluate(spline.frame_times(num_frames, constant_speed=constant_speed))


def path_from_keyframes(keyframes, width: int, height: int, fps: float = 30.0, seconds: float | None = None,
                        num_frames: int | None = None, *, is_cycle: bool = False, smoothness_value: float = 0.0,
                        constant_speed: bool = False, rotation: str = "kb"):
    """A :class:`~spatialvid.paths.camera_path.CameraPath` interpolated through viewer keyframes.

    ``keyframes``: a list of :class:`~spatialvid.paths.camera_path.Keyframe` (OpenGL c2w + fov).
    ``smoothness_value`` is used as the Kochanek-Bartels tension, as nerfstudio's viewer does.
    The frame count is ``num_frames`` or ``round(seconds * fps)``.
    """
    from spatialvid.paths.camera_path import CameraPath

    if not keyframes:
        raise SpatialvidError("keyframes: the list is empty")
    if num_frames is None:
        if seconds is None:
            raise SpatialvidError("give seconds or num_frames")
        num_frames = max(1, int(round(seconds * fps)))
    c2ws = np.stack([np.asarray(k.c2w, dtype=np.float64).reshape(4, 4) for k in keyframes])
    fovs = np.array([k.fov for k in keyframes], dtype=np.float64)
    c2w, fov = interpolate_poses(c2ws, fovs, num_frames, constant_speed=constant_speed,
                                 tension=smoothness_value, closed=is_cycle, rotation=rotation)
    return CameraPath(c2w=c2w, fov=fov, width=width, height=height, fps=fps, keyframes=list(keyframes),
                      smoothness_value=smoothness_value, is_cycle=is_cycle)
