"""Plain pycolmap defaults, as a yardstick for our pose pipeline (``benchmarks/sfm.py --compare-pycolmap``,
``spatialvid eval --compare-pycolmap``).

:func:`plain_pycolmap` runs what a user of pycolmap gets without tuning, on exactly the images given (no
keyframe selection, no resizing, no undistortion, no normalisation): SIFT extraction with pycolmap's default
options (its default camera model SIMPLE_RADIAL, one camera shared by all images), exhaustive matching with
default options, the incremental mapper with default options; the model with the most registered images is
kept. Cameras come back in COLMAP's world (OpenCV world-to-camera), named by image file name.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError


@dataclass
class PlainRun:
    """Result of :func:`plain_pycolmap`: registered cameras (None when nothing was reconstructed), image
    count, wall-clock seconds, sparse points and the camera model."""

    cameras: Cameras | None
    num_images: int
    seconds: float
    num_points: int
    camera_model: str


def plain_pycolmap(image_dir: str | Path, work_dir: str | Path, num_threads: int = -1, seed: int = 0) -> PlainRun:
    """pycolmap defaults (SIFT, exhaustive matching, incremental mapper, one camera) on every image of
    ``image_dir``. ``work_dir`` receives the database and models (replaced)."""
    import pycolmap

    from spatialvid.io.decode import list_images
    from spatialvid.sfm.colmap_sfm import _num_threads, _quiet, reconstruction_cameras

    image_dir, work = Path(image_dir), Path(work_dir)
    names = [p.name for p in list_images(image_dir)]
    if len(names) < 3:
        raise SpatialvidError(f"{image_dir}: {len(names)} images; at least 3 are needed")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db, models = work / "database.db", work / "models"
    models.mkdir()
    threads = _num_threads(num_threads)
    t0 = time.perf_counter()
    pycolmap.set_random_seed(int(seed))
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = threads
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = threads
    po = pycolmap.IncrementalPipelineOptions()
    po.num_threads = threads
    po.random_seed = int(seed)
    with _quiet():
        pycolmap.extract_features(db, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                                  extraction_options=eo, device=pycolmap.Device.cpu)
        pycolmap.match_exhaustive(db, matching_options=mo, device=pycolmap.Device.cpu)
        recs = pycolmap.incremental_mapping(db, image_dir, models, options=po)
    seconds = time.perf_counter() - t0
    recs = [r for r in dict(recs or {}).values() if r.num_reg_images() >= 3]
    if not recs:
        return PlainRun(None, len(names), seconds, 0, "SIMPLE_RADIAL")
    best = max(recs, key=lambda r: r.num_reg_images())
    model = next(iter(best.cameras.values())).model_name
    return PlainRun(reconstruction_cameras(best, image_dir), len(names), seconds, best.num_points3D(), model)
