"""spatialvid: lift a video into a persistent 3D Gaussian-splat scene.

Data flows forward through plain dataclasses: :class:`Cameras`, :class:`Gaussians`, :class:`Scene`.
"""

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import Gaussians
from spatialvid.scene import Scene

__version__ = "0.1.0"
__all__ = ["Cameras", "Gaussians", "Scene", "SpatialvidError", "__version__"]
