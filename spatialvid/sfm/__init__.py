"""Structure from motion: camera poses + sparse points from keyframes (pycolmap), known-pose import,
scene normalisation, Sim3 alignment and pose-error metrics.

Public API:

* :func:`run_sfm(input_path, out_dir, config=None, save=True) -> Scene` (video or image folder);
* :func:`scene_from_known_poses(input_path, poses, out_dir, config=None, save=True) -> Scene`;
* :class:`SfmConfig`; :func:`load_poses`; :func:`pose_errors` / :class:`PoseErrors`; :func:`umeyama`;
  :func:`normalization_transform`.
"""

from spatialvid.sfm.align import PoseErrors, pose_errors, transform_cameras, transform_points, umeyama
from spatialvid.sfm.colmap_sfm import SfmConfig, run_colmap
from spatialvid.sfm.normalize import normalization_transform
from spatialvid.sfm.pipeline import load_poses, run_sfm, scene_from_known_poses

__all__ = [
    "PoseErrors", "pose_errors", "transform_cameras", "transform_points", "umeyama", "SfmConfig", "run_colmap",
    "normalization_transform", "load_poses", "run_sfm", "scene_from_known_poses",
]
