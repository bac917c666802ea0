"""A persistent scene: Gaussians + training cameras + metadata + an append-only edit history.

Folder layout (``Scene.save(dir)``):

* ``gaussians.ply``: standard 3DGS PLY (pre-activation values) plus ``origin`` (uint8) and ``step`` (int32).
* ``transforms.json``: the training cameras in nerfstudio's convention (OpenGL camera-to-world).
* ``scene.json``: format version, units, up axis, normalisation transform, history, free metadata.

Every file is written atomically; ``scene.json`` is written last, so a folder whose ``scene.json`` is
present was completely written.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spatialvid.cameras import Cameras
from spatialvid.errors import FormatError, SpatialvidError
from spatialvid.gaussians import Gaussians

FORMAT_VERSION = 1
SCENE_JSON = "scene.json"
GAUSSIANS_PLY = "gaussians.ply"
TRANSFORMS_JSON = "transforms.json"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class Scene:
    """Gaussians + cameras + metadata + history.

    ``metadata`` keys used by the project: ``units`` (str), ``up`` ([3] world up vector),
    ``normalization`` (4x4 list: world_normalized = T @ world_original), ``images_dir`` (str),
    ``source`` (what the scene was made from).
    ``history`` entries are dicts with at least ``step`` (int), ``kind`` ("reconstruct", "import", "fill",
    "undo", ...), ``time`` (ISO 8601 UTC) and free ``info``.
    """

    gaussians: Gaussians
    cameras: Cameras
    metadata: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    # ---- history ------------------------------------------------------------------------------
    def next_step_id(self) -> int:
        return 1 + max((int(h["step"]) for h in self.history), default=0)

    def add_history(self, kind: str, **info: Any) -> int:
        """Append a history entry and return its step id."""
        step = self.next_step_id()
        self.history.append({"step": step, "kind": kind, "time": _now(), "info": info})
        return step

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the scene folder atomically file by file (``scene.json`` last)."""
        from spatialvid.atomic import atomic_write_json
        from spatialvid.formats.nerfstudio import write_transforms
        from spatialvid.formats.ply import write_ply

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.gaussians.validate(str(path / GAUSSIANS_PLY))
        write_ply(path / GAUSSIANS_PLY, self.gaussians)
        write_transforms(path / TRANSFORMS_JSON, self.cameras, relative_to=path,
                         extra={k: self.metadata[k] for k in ("applied_transform",) if k in self.metadata})
        atomic_write_json(path / SCENE_JSON, {
            "format": "spatialvid-scene",
            "version": FORMAT_VERSION,
            "units": self.metadata.get("units", "arbitrary"),
            "up": self.metadata.get("up", [0.0, 0.0, 1.0]),
            "num_gaussians": len(self.gaussians),
            "num_cameras": len(self.cameras),
            "metadata": self.metadata,
            "history": self.history,
        })
        return path

    @classmethod
    def load(cls, path: str | Path) -> Scene:
        """Load a scene folder written by :meth:`save`; clear errors name the bad file."""
        from spatialvid.formats.nerfstudio import read_transforms
        from spatialvid.formats.ply import read_ply

        path = Path(path)
        if not path.is_dir():
            raise SpatialvidError(f"{path}: not a scene folder (it does not exist or is not a folder)")
        sj = path / SCENE_JSON
        if not sj.exists():
            raise FormatError(sj, "missing: this folder is not a spatialvid scene (or was not completely written)")
        try:
            meta = json.loads(sj.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FormatError(sj, f"not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != "spatialvid-scene":
            raise FormatError(sj, "missing field 'format' = 'spatialvid-scene'")
        for key in ("version", "history"):
            if key not in meta:
                raise FormatError(sj, f"missing field '{key}'")
        if int(meta["version"]) > FORMAT_VERSION:
            raise FormatError(sj, f"format version {meta['version']} is newer than this spatialvid ({FORMAT_VERSION})")
        gaussians = read_ply(path / GAUSSIANS_PLY)
        cameras = read_transforms(path / TRANSFORMS_JSON)
        metadata = dict(meta.get("metadata", {}))
        metadata.setdefault("units", meta.get("units", "arbitrary"))
        metadata.setdefault("up", meta.get("up", [0.0, 0.0, 1.0]))
        return cls(gaussians=gaussians, cameras=cameras, metadata=metadata, history=list(meta["history"]))

    # ---- conveniences implemented by later stages ----------------------------------------------
    def render(self, camera: Cameras, **kwargs: Any):
        """Render one camera: see :func:`spatialvid.render.api.render_scene`."""
        from spatialvid.render.api import render_scene

        return render_scene(self, camera, **kwargs)

    def fill(self, camera: Cameras, **kwargs: Any):
        """Fill what this camera sees but the scene does not cover: see :func:`spatialvid.generate.fill_view`."""
        from spatialvid.generate import fill_view

        return fill_view(self, camera, **kwargs)

    def extend(self, scene_dir: str | Path, new_input: str | Path, **kwargs: Any):
        """Add ``new_input`` to this scene, saved in ``scene_dir``, and reload it: see
        :func:`spatialvid.train.extend.extend_scene` (the folder is updated in place)."""
        from spatialvid.train.extend import extend_scene

        res = extend_scene(scene_dir, new_input, **kwargs)
        new = Scene.load(scene_dir)
        self.gaussians, self.cameras, self.metadata, self.history = new.gaussians, new.cameras, new.metadata, new.history
        return res
