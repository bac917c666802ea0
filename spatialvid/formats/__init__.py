"""Standard file formats spatialvid reads and writes.

* :mod:`spatialvid.formats.ply`: 3D Gaussian Splatting PLY (``read_ply`` / ``write_ply``).
* :mod:`spatialvid.formats.splat`: the 32-bytes-per-splat web format (``write_splat`` / ``read_splat``).
* :mod:`spatialvid.formats.nerfstudio`: nerfstudio ``transforms.json`` cameras (``read_transforms`` /
  ``write_transforms``).
* :mod:`spatialvid.formats.colmap`: COLMAP sparse models (``read_colmap`` text or binary,
  ``write_colmap_text``).

Every reader raises :class:`spatialvid.errors.FormatError` (naming the file and the problem) for bad input;
every writer writes atomically (temporary file + rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spatialvid.errors import SpatialvidError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from spatialvid.cameras import Cameras
    from spatialvid.gaussians import Gaussians
    from spatialvid.scene import Scene

EXPORT_FORMATS = ("ply", "splat", "transforms", "colmap")


def read_gaussians(path: str | Path) -> Gaussians:
    """Gaussians from a 3DGS ``.ply`` (any tool) or a ``.splat`` file, chosen by the extension."""
    from spatialvid.formats.ply import read_ply
    from spatialvid.formats.splat import read_splat

    path = Path(path)
    if path.suffix.lower() == ".splat":
        return read_splat(path)
    return read_ply(path)


def read_cameras(path: str | Path) -> tuple[Cameras, torch.Tensor | None, torch.Tensor | None]:
    """Cameras (+ sparse points when the source has them) from a nerfstudio ``transforms.json`` (file, or a
    folder holding one) or a COLMAP sparse model folder (text or binary). Returns ``(cameras, xyz, rgb)``;
    ``xyz``/``rgb`` are None for transforms.json."""
    from spatialvid.formats.colmap import read_colmap
    from spatialvid.formats.nerfstudio import read_transforms

    path = Path(path)
    if path.is_dir() and (path / "transforms.json").is_file():
        path = path / "transforms.json"
    if path.is_file():
        return read_transforms(path), None, None
    return read_colmap(path)


def export_scene(scene: Scene, path: str | Path, fmt: str | None = None) -> Path:
    """Export a scene: ``ply`` (3DGS PLY), ``splat`` (web format), ``transforms`` (nerfstudio cameras) or
    ``colmap`` (text model folder: cameras + the Gaussian centres as points3D). ``fmt=None`` guesses from
    ``path``: ``.ply``, ``.splat``, ``.json``, otherwise a COLMAP folder."""
    from spatialvid.formats.colmap import write_colmap_text
    from spatialvid.formats.nerfstudio import write_transforms
    from spatialvid.formats.ply import write_ply
    from spatialvid.formats.splat import write_splat

    path = Path(path)
    if fmt is None:
        fmt = {".ply": "ply", ".splat": "splat", ".json": "transforms"}.get(path.suffix.lower(), "colmap")
    if fmt == "ply":
        return write_ply(path, scene.gaussians)
    if fmt == "splat":
        return write_splat(path, scene.gaussians)
    if fmt == "transforms":
        extra = {k: scene.metadata[k] for k in ("applied_transform",) if k in scene.metadata}
        return write_transforms(path, scene.cameras, relative_to=path.parent, extra=extra)
    if fmt == "colmap":
        g = scene.gaussians.detach().to("cpu")
        return write_colmap_text(path, scene.cameras, g.means, g.colors)
    raise SpatialvidError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
