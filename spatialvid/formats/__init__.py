"""Standard file formats spatialvid reads and writes.

* :mod:`spatialvid.formats.ply`: 3D Gaussian Splatting PLY (``read_ply`` / ``write_ply``).
* :mod:`spatialvid.formats.splat`: the 32-bytes-per-splat web format (``write_splat`` / ``read_splat``).
* :mod:`spatialvid.formats.spz`: Niantic's compressed ``.spz`` (``write_spz`` / ``read_spz``).
* :mod:`spatialvid.formats.mesh`: triangle meshes fused from rendered depth (``scene_to_mesh``, ``write_mesh``:
  ``.glb`` / ``.ply`` / ``.obj``).
* :mod:`spatialvid.formats.crop`: crop regions (box / sphere) applied by :func:`export_scene`.
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
    from spatialvid.formats.crop import Crop
    from spatialvid.formats.mesh import MeshConfig
    from spatialvid.gaussians import Gaussians
    from spatialvid.scene import Scene

EXPORT_FORMATS = ("ply", "splat", "spz", "mesh", "transforms", "colmap")


def read_gaussians(path: str | Path) -> Gaussians:
    """Gaussians from a 3DGS ``.ply`` (any tool), a ``.splat`` or a ``.spz`` file, chosen by the extension."""
    from spatialvid.formats.ply import read_ply
    from spatialvid.formats.splat import read_splat

    path = Path(path)
    if path.suffix.lower() == ".splat":
        return read_splat(path)
    if path.suffix.lower() == ".spz":
        from spatialvid.formats.spz import read_spz

        return read_spz(path)
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


def guess_format(path: str | Path) -> str:
    """Export format from the output name: ``.ply`` (Gaussian PLY), ``.splat``, ``.spz``, ``.glb``/``.obj``
    (mesh), ``.json`` (transforms), anything else a COLMAP folder. A mesh ``.ply`` needs ``fmt="mesh"``."""
    suffix = Path(path).suffix.lower()
    return {".ply": "ply", ".splat": "splat", ".spz": "spz", ".glb": "mesh", ".obj": "mesh",
            ".json": "transforms"}.get(suffix, "colmap")


def select_gaussians(scene: Scene, crop: Crop | None = None, captured_only: bool = False,
                     min_opacity: float = 0.0) -> Gaussians:
    """The scene's Gaussians inside ``crop`` (by centre, scene frame), captured ones only if asked, with
    opacity >= ``min_opacity``."""
    import torch

    from spatialvid.gaussians import CAPTURED

    g = scene.gaussians.detach().to("cpu")
    keep = torch.ones(len(g), dtype=torch.bool)
    if captured_only:
        keep &= g.origin == CAPTURED
    if crop is not None and crop.active:
        keep &= torch.from_numpy(crop.contains(g.means))
    if min_opacity > 0:
        keep &= g.opacities >= min_opacity
    return g if bool(keep.all()) else g[keep]


def export_scene(scene: Scene, path: str | Path, fmt: str | None = None, crop: Crop | None = None,
                 captured_only: bool = False, mesh: MeshConfig | None = None, min_opacity: float = 0.0,
                 fractional_bits: int | None = None) -> Path:
    """Export a scene: ``ply`` (3DGS PLY), ``splat`` (web format), ``spz`` (compressed splats), ``mesh``
    (triangle mesh fused from rendered depth; ``.glb``, ``.ply`` or ``.obj`` by the suffix, see
    :func:`spatialvid.formats.mesh.scene_to_mesh`), ``transforms`` (nerfstudio cameras) or ``colmap`` (text
    model folder: cameras + the Gaussian centres as points3D). ``fmt=None``: :func:`guess_format`.

    ``crop`` (scene frame) keeps the Gaussians whose centres lie inside it (a mesh is also clipped to it);
    ``captured_only`` leaves generated Gaussians out; ``min_opacity`` drops fainter Gaussians from splat and
    COLMAP exports; ``fractional_bits``: ``.spz`` position precision (default 12). Crop and captured_only
    do not apply to ``transforms`` (cameras only:
    asking raises). Splat formats and COLMAP points are written in the scene's frame; the mesh in the
    scene's original frame and units when the scene stores its normalisation (``mesh.frame``).
    """
    from spatialvid.formats.colmap import write_colmap_text
    from spatialvid.formats.nerfstudio import write_transforms
    from spatialvid.formats.ply import write_ply
    from spatialvid.formats.splat import write_splat
    from spatialvid.formats.spz import write_spz

    path = Path(path)
    fmt = guess_format(path) if fmt is None else fmt
    if fmt not in EXPORT_FORMATS:
        raise SpatialvidError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    if fmt == "transforms":
        if (crop is not None and crop.active) or captured_only:
            raise SpatialvidError("transforms.json holds only cameras: a crop or --captured-only changes nothing; "
                                  "drop them or export ply/splat/spz/mesh/colmap")
        extra = {k: scene.metadata[k] for k in ("applied_transform",) if k in scene.metadata}
        return write_transforms(path, scene.cameras, relative_to=path.parent, extra=extra)
    if fmt == "mesh":
        from dataclasses import replace

        from spatialvid.formats.crop import Crop as _Crop
        from spatialvid.formats.mesh import MESH_SUFFIXES, MeshConfig, scene_to_mesh, write_mesh

        if path.suffix.lower() not in MESH_SUFFIXES:
            raise SpatialvidError(f"{path}: a mesh is written as {', '.join(MESH_SUFFIXES)} (from the file name)")
        cfg = replace(mesh or MeshConfig(), crop=crop or _Crop(), captured_only=captured_only
                      or (mesh.captured_only if mesh else False))
        return write_mesh(path, scene_to_mesh(scene, cfg))
    if not 0.0 <= float(min_opacity) < 1.0:
        raise SpatialvidError(f"--min-opacity must be in [0, 1), got {min_opacity}")
    g = select_gaussians(scene, crop, captured_only, float(min_opacity))
    if len(g) == 0:
        raise SpatialvidError("no Gaussians left to export (after the crop / --captured-only)")
    if fmt == "ply":
        return write_ply(path, g)
    if fmt == "splat":
        return write_splat(path, g)
    if fmt == "spz":
        # the training viewpoints let the base colour absorb the SH rounding error they see
        return write_spz(path, g, fractional_bits=fractional_bits,
                         view_centres=scene.cameras.centers().double().numpy() if len(scene.cameras) else None)
    return write_colmap_text(path, scene.cameras, g.means, g.colors)
