"""spatialvid: lift a video into a persistent 3D Gaussian-splat scene.

Data flows forward through plain dataclasses: :class:`Cameras`, :class:`Gaussians`, :class:`Scene`.
"""

# OpenMP worker threads that spin while waiting make torch and the C++ rasterizer several times slower
# when the cores are shared (a training step at 320x240: 0.66 s spinning vs 0.22 s sleeping, 2 cores at
# load 9; issue #5). Must be set before torch / OpenMP load; an explicit user setting wins.
import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Load Python's zlib before anything can load pycolmap: with the pycolmap 4.2.1 wheel loaded first, the first
# zlib user (zlib.compress, Pillow/OpenCV PNG writing, np.savez_compressed) aborts or hangs the process
# ("free(): invalid pointer"). Loading zlib first avoids it (found in issue #4).
import zlib as _zlib  # noqa: F401, I001

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import Gaussians
from spatialvid.scene import Scene

__version__ = "0.1.0"
__all__ = ["Cameras", "Gaussians", "Scene", "SpatialvidError", "__version__"]
