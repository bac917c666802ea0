"""Training data: cameras at the training resolution, their images (undistorted pinhole, float 0..1 [H,W,3]),
the train/held-out split and the initial points.

Held-out protocol (shared by every evaluation in spatialvid): images sorted by name, every ``holdout_every``-th
one (index % N == 0) is held out; the rest train.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError


@dataclass
class TrainData:
    cameras: Cameras                      # all cameras, scaled to the training resolution, pinhole (dist 0)
    images: list[torch.Tensor]            # [H,W,3] float32 0..1, one per camera
    train_idx: list[int]
    test_idx: list[int]
    points: torch.Tensor | None = None    # [P,3] initial points (world), or None
    colors: torch.Tensor | None = None    # [P,3] 0..1
    known_poses: bool = True              # poses given (not estimated from the video)
    metadata: dict = field(default_factory=dict)
    sparse_depth: list[torch.Tensor | None] | None = None  # per camera [M,3] (u, v px, camera z) of its SfM points

    @property
    def train_cameras(self) -> Cameras:
        return self.cameras[self.train_idx]

    @property
    def test_cameras(self) -> Cameras:
        return self.cameras[self.test_idx]


def split_indices(names: list[str], holdout_every: int) -> tuple[list[int], list[int]]:
    """Every ``holdout_every``-th image by sorted name is held out (0 = none). Returns (train, test)."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    if holdout_every <= 0 or len(names) < 2:
        return sorted(order), []
    test = sorted(order[k] for k in range(len(order)) if k % holdout_every == 0)
    train = sorted(set(order) - set(test))
    if not train:
        raise SpatialvidError("no training images left after the held-out split")
    return train, test


def training_scale(cameras: Cameras, downscale: float = 1.0, resolution: int = 0) -> float:
    """Factor applied to image sizes: ``resolution / longest side`` if resolution > 0, else ``1 / downscale``."""
    if resolution and resolution > 0:
        longest = int(max(cameras.width.max(), cameras.height.max()))
        return min(1.0, resolution / longest) if longest > resolution else 1.0
    return 1.0 / downscale


def load_image(path: str, width: int, height: int, K: np.ndarray | None = None, dist: np.ndarray | None = None,
               background: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """Load ``path`` resized (area filter) to ``width`` x ``height``; RGBA is composited over ``background``;
    with a non-zero OpenCV ``dist`` the image is undistorted to the pinhole ``K`` (already scaled)."""
    p = Path(path)
    if not path or not p.is_file():
        raise SpatialvidError(f"{path or '(no path)'}: image not found")
    from spatialvid.io.decode import image_size

    iw, ih = image_size(p)  # empty files and huge headers are refused before decoding
    # the same shape up to rounding of the sizes (a downscaled copy of the images is fine)
    if abs(iw / ih - width / height) / (width / height) > 0.01 + 1 / min(width, height) + 1 / min(iw, ih):
        raise SpatialvidError(f"{path}: the image is {iw}x{ih}, a different shape from its camera "
                              f"({width}x{height} at the training scale); images and poses do not match")
    try:
        with Image.open(p) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
            im = im.convert("RGBA" if has_alpha else "RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BOX if im.width >= width else Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise SpatialvidError(f"{path}: cannot read image ({e})") from None
    if arr.shape[-1] == 4:
        a = arr[..., 3:4]
        arr = arr[..., :3] * a + np.asarray(background, dtype=np.float32) * (1 - a)
    if dist is not None and np.any(np.abs(dist) > 0):
        import cv2

        arr = cv2.undistort(arr, K, dist, newCameraMatrix=K)
    return torch.from_numpy(np.ascontiguousarray(arr))


def load_images(cameras: Cameras, scale: float, progress: bool = True) -> tuple[Cameras, list[torch.Tensor]]:
    """Scale the cameras, load every image at that size (undistorting when ``dist`` != 0).

    Returns the pinhole cameras (dist zeroed) and the images."""
    missing = [p for p in cameras.image_paths if not p or not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise SpatialvidError(f"image not found: {missing[0] or '(camera without image)'}{more}")
    cams = cameras.scaled(scale) if scale != 1.0 else cameras.clone()
    Ks = cams.Ks().numpy().astype(np.float64)
    dists = cams.dist.numpy().astype(np.float64)
    it = range(len(cams))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="loading images", unit="img", leave=False)
    images = [load_image(cams.image_paths[i], int(cams.width[i]), int(cams.height[i]), Ks[i], dists[i]) for i in it]
    cams.dist = torch.zeros_like(cams.dist)
    return cams, images


def make_train_data(cameras: Cameras, cfg, points=None, colors=None, known_poses: bool = True,
                    progress: bool = True, metadata: dict | None = None) -> TrainData:
    """Validate the cameras, load images at the training resolution, split train / held out."""
    if len(cameras) == 0:
        raise SpatialvidError("no cameras to train on")
    cameras.validate("input cameras")
    scale = training_scale(cameras, cfg.downscale, cfg.resolution)
    cams, images = load_images(cameras, scale, progress=progress)
    train_idx, test_idx = split_indices(cams.names, cfg.holdout_every)
    if points is not None:
        points = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 3)
        colors = (torch.full_like(points, 0.5) if colors is None
                  else torch.as_tensor(colors, dtype=torch.float32).reshape(-1, 3).clamp(0, 1))
        ok = torch.isfinite(points).all(-1)
        points, colors = points[ok], colors[ok]
        if len(points) == 0:
            points = colors = None
    return TrainData(cams, images, train_idx, test_idx, points, colors, known_poses, dict(metadata or {}))


def sparse_observations(model_dir: str | Path, cameras: Cameras) -> list[torch.Tensor | None] | None:
    """The SfM points each camera observed, as ``[M,3]`` rows (u, v, z): the point projected with the
    camera (pixels at its size, OpenCV axes, pixel centres at +0.5) and its camera-space depth. Matched to the
    COLMAP model at ``model_dir`` by image name (the model in the cameras' world frame, e.g. SCENE_DIR/sparse/0);
    None when the model is missing or unreadable, None entries for cameras it does not hold."""
    model_dir = Path(model_dir)
    if not (model_dir / "points3D.bin").is_file() and not (model_dir / "points3D.txt").is_file():
        return None
    try:
        import pycolmap

        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception:  # noqa: BLE001 - an unreadable model only turns the depth term off
        return None
    xyz = {pid: p.xyz for pid, p in rec.points3D.items()}
    by_name = {}
    for img in rec.images.values():
        ids = [p.point3D_id for p in img.points2D if p.has_point3D()]
        if ids:
            by_name[Path(img.name).name] = np.array([xyz[i] for i in ids if i in xyz], np.float64)
    out: list[torch.Tensor | None] = []
    for i, name in enumerate(cameras.names):
        pts = by_name.get(Path(name).name)
        if pts is None or len(pts) == 0:
            out.append(None)
            continue
        uv, z = cameras[i].project(torch.from_numpy(pts).float())
        uv, z = uv[0], z[0]
        w, h = float(cameras.width[i]), float(cameras.height[i])
        ok = (z > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        out.append(torch.cat([uv[ok], z[ok, None]], 1) if ok.any() else None)
    return out if any(o is not None for o in out) else None
