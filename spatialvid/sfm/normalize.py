"""Scene normalisation: centre and scale the cameras into a unit-ish sphere with +z up.

``T = normalization_transform(cameras)`` is a 4x4 similarity with ``world_normalized = T @ world_original``
(homogeneous points). It is stored in ``scene.metadata["normalization"]`` so exports can go back with
``inverse(T)``.

* up: the mean of the cameras' up vectors. Cameras use OpenCV axes (y down), so a camera's up in the world
  is minus the second column of its camera-to-world rotation (``-R^T[:, 1]``). The rotation maps this up onto
  +z (the normalised world is z-up, like the bundled sample).
* centre: the mean camera centre; scale: so that the farthest camera is at distance ``radius`` (default 1).
"""

from __future__ import annotations

import numpy as np

from spatialvid.cameras import Cameras
from spatialvid.sfm.align import sim3_matrix


def mean_up(cameras: Cameras) -> np.ndarray:
    """Unit world-space up vector averaged over cameras (OpenCV: up = -y camera axis)."""
    R = cameras.R.double().numpy()
    ups = -R[:, 1, :]  # row 1 of world-to-camera R = camera y axis in world coordinates
    u = ups.mean(0)
    n = np.linalg.norm(u)
    if n < 1e-6:  # cameras disagree completely: fall back to the first camera
        u, n = ups[0], np.linalg.norm(ups[0])
    return u / n


def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """A rotation taking unit vector ``up`` onto +z (Rodrigues; exact for antiparallel too)."""
    up = np.asarray(up, np.float64)
    up = up / np.linalg.norm(up)
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(up, z)
    c = float(up @ z)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def normalization_transform(cameras: Cameras, radius: float = 1.0, points: np.ndarray | None = None) -> np.ndarray:
    """4x4 similarity ``T`` (world_normalized = T @ world_original): cameras centred, farthest at ``radius``,
    mean camera up -> +z. With a single camera (or coincident ones), the scale comes from ``points``
    (their median distance to the centre) or is 1."""
    centers = cameras.centers().double().numpy()
    c = centers.mean(0)
    d = np.linalg.norm(centers - c, axis=1)
    far = float(d.max()) if len(d) else 0.0
    if far < 1e-9 and points is not None and len(points):
        far = float(np.median(np.linalg.norm(np.asarray(points) - c, axis=1)))
    s = radius / far if far > 1e-9 else 1.0
    R = rotation_to_z(mean_up(cameras))
    return sim3_matrix(s, R, -s * R @ c)
