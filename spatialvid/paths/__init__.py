"""Camera paths: nerfstudio camera_path.json, generators (orbit, spiral, train), keyframe interpolation.

Poses are camera-to-world 4x4 in OpenGL axes (nerfstudio); ``CameraPath.cameras()`` converts to the
project's :class:`~spatialvid.cameras.Cameras` (OpenCV world-to-camera).
"""

from spatialvid.paths.camera_path import (
    CameraPath,
    Keyframe,
    focal_from_fov,
    fov_from_focal,
    read_camera_path,
    write_camera_path,
)
from spatialvid.paths.generators import (
    GENERATORS,
    focus_point,
    generate,
    look_at_c2w,
    mean_up,
    orbit,
    spiral,
    train,
)
from spatialvid.paths.interpolate import KeyframeSpline, interpolate_poses, path_from_keyframes

__all__ = [
    "GENERATORS", "CameraPath", "Keyframe", "KeyframeSpline", "focal_from_fov", "focus_point", "fov_from_focal",
    "generate", "interpolate_poses", "look_at_c2w", "mean_up", "orbit", "path_from_keyframes",
    "read_camera_path", "spiral", "train", "write_camera_path",
]
