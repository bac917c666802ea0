"""A persistent scene: Gaussians + training cameras + metadata + an append-only edit history.

Folder layout (``Scene.save(dir)``):

* ``gaussians.ply``: standard 3DGS PLY (pre-activation values) plus ``origin`` (uint8) and ``step`` (int32).
* ``transforms.json``: the training cameras in nerfstudio's convention (OpenGL camera-to-world).
* ``scene.json``: format version, units, up axis, normalisation transform, history, free metadata.

A save is one unit. Every file is written atomically; ``scene.json`` is written last and records a generation
number and the size + SHA-256 of ``gaussians.ply`` and ``transforms.json``. Before the data files are
replaced, the previous complete version is hard-linked into ``.prev/`` (removed once the new ``scene.json`` is
in place). :meth:`Scene.load` checks the recorded sizes and hashes: a save killed between files (new data
files, old ``scene.json``) is repaired from ``.prev/`` (the previous version comes back, with a warning), and a
file changed by anything else is refused with an error naming it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import warnings
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
PREV_DIR = ".prev"
DATA_FILES = (GAUSSIANS_PLY, TRANSFORMS_JSON)


def file_record(path: Path) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of a file (read in 8 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _matches(path: Path, rec: Any) -> bool:
    if not isinstance(rec, dict) or not path.is_file():
        return False
    if path.stat().st_size != rec.get("size"):  # cheap test first
        return False
    return file_record(path)["sha256"] == rec.get("sha256")


def _read_meta(sj: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(sj.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _consistent(folder: Path, meta: dict[str, Any] | None) -> bool:
    """Whether ``folder``'s data files are those ``meta`` (its scene.json) records."""
    files = meta.get("files") if isinstance(meta, dict) else None
    return isinstance(files, dict) and all(_matches(folder / n, files.get(n)) for n in DATA_FILES)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # no hard links on this file system
        shutil.copy2(src, dst)


def _restore(src: Path, dst: Path) -> None:
    """Put a copy of ``src`` at ``dst`` in one rename (``src`` stays until the whole repair is done)."""
    tmp = dst.with_name(f".{dst.name}.restore.tmp")
    if tmp.exists():
        tmp.unlink()
    _link_or_copy(src, tmp)
    os.replace(tmp, dst)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class Scene:
    """Gaussians + cameras + metadata + history.

    ``metadata`` keys used by the project: ``units`` (str), ``up`` ([3] world up vector),
    ``normalization`` (4x4 list: world_normalized = T @ world_original), ``images_dir`` (str),
    ``source`` (what the scene was made from), ``background`` ([3] 0..1) and ``antialiased`` (bool): how it was
    trained to look (render, view and fill use them).
    ``history`` entries are dicts with at least ``step`` (int), ``kind`` ("reconstruct", "import", "fill",
    "undo", ...), ``time`` (ISO 8601 UTC) and free ``info``.
    """

    gaussians: Gaussians
    cameras: Cameras
    metadata: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    # ---- history ------------------------------------------------------------------------------
    def next_step_id(self) -> int:
        """A step id no history entry and no Gaussian uses yet (so one undo never removes two steps)."""
        top = max((int(h["step"]) for h in self.history), default=0)
        if len(self.gaussians):
            top = max(top, int(self.gaussians.step.max()))
        return 1 + top

    def add_history(self, kind: str, step_id: int | None = None, **info: Any) -> int:
        """Append a history entry and return its step id (``step_id``: the id reserved with
        :meth:`next_step_id` before Gaussians were tagged with it; it must not be in the history yet)."""
        step = self.next_step_id() if step_id is None else int(step_id)
        if any(int(h["step"]) == step for h in self.history) or step < 1:
            raise SpatialvidError(f"history step id {step} is already used (or < 1)")
        self.history.append({"step": step, "kind": kind, "time": _now(), "info": info})
        return step

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the scene folder as one unit (see the module docstring): data files first, ``scene.json``
        (generation, sizes and hashes) last; the previous complete version is kept in ``.prev/`` meanwhile."""
        from spatialvid.atomic import atomic_write_json
        from spatialvid.faults import fault_point
        from spatialvid.formats.nerfstudio import write_transforms
        from spatialvid.formats.ply import write_ply

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.gaussians.validate(str(path / GAUSSIANS_PLY))
        prev_meta = _read_meta(path / SCENE_JSON)
        generation = 1
        if prev_meta is not None:
            try:
                generation = int(prev_meta.get("generation", 0)) + 1
            except (TypeError, ValueError):
                pass
        self._keep_previous(path, prev_meta)
        fault_point("save:before-ply")
        write_ply(path / GAUSSIANS_PLY, self.gaussians)
        fault_point("save:after-ply")
        write_transforms(path / TRANSFORMS_JSON, self.cameras, relative_to=path,
                         extra={k: self.metadata[k] for k in ("applied_transform",) if k in self.metadata})
        fault_point("save:after-transforms")
        atomic_write_json(path / SCENE_JSON, {
            "format": "spatialvid-scene",
            "version": FORMAT_VERSION,
            "generation": generation,
            "files": {n: file_record(path / n) for n in DATA_FILES},
            "units": self.metadata.get("units", "arbitrary"),
            "up": self.metadata.get("up", [0.0, 0.0, 1.0]),
            "num_gaussians": len(self.gaussians),
            "num_cameras": len(self.cameras),
            "metadata": self.metadata,
            "history": self.history,
        })
        fault_point("save:after-scene-json")
        shutil.rmtree(path / PREV_DIR, ignore_errors=True)
        return path

    @staticmethod
    def _keep_previous(path: Path, prev_meta: dict[str, Any] | None) -> None:
        """Hard-link the folder's current complete version into ``.prev/`` (kept as it is when the current
        files are not a complete version, e.g. after an interrupted save that was not loaded since)."""
        prev = path / PREV_DIR
        if prev_meta is None or not all((path / n).is_file() for n in DATA_FILES):
            return
        if not _consistent(path, prev_meta) and ("files" in prev_meta or prev.is_dir()):
            return  # not a complete version: keep whatever .prev holds
        tmp = path / f"{PREV_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for n in (*DATA_FILES, SCENE_JSON):
            _link_or_copy(path / n, tmp / n)
        shutil.rmtree(prev, ignore_errors=True)  # the current files are complete: nothing is lost meanwhile
        os.replace(tmp, prev)

    @classmethod
    def load(cls, path: str | Path, repair: bool = True) -> Scene:
        """Load a scene folder written by :meth:`save`; clear errors name the bad file.

        Data files that differ from what ``scene.json`` records are restored from ``.prev/`` when it holds
        them (an interrupted save; ``repair=False`` refuses instead), else refused with a :class:`FormatError`.
        """
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
        cls._check_files(path, meta, repair)
        gaussians = read_ply(path / GAUSSIANS_PLY)
        cameras = read_transforms(path / TRANSFORMS_JSON)
        metadata = dict(meta.get("metadata", {}))
        metadata.setdefault("units", meta.get("units", "arbitrary"))
        metadata.setdefault("up", meta.get("up", [0.0, 0.0, 1.0]))
        return cls(gaussians=gaussians, cameras=cameras, metadata=metadata, history=list(meta["history"]))

    @staticmethod
    def _check_files(path: Path, meta: dict[str, Any], repair: bool) -> None:
        from spatialvid.formats.nerfstudio import read_transforms
        from spatialvid.formats.ply import read_ply

        prev = path / PREV_DIR
        files = meta.get("files")
        if not isinstance(files, dict):  # written before generations existed
            old = _read_meta(prev / SCENE_JSON)
            if repair and old == meta and all((prev / n).is_file() for n in DATA_FILES):
                for n in DATA_FILES:  # an interrupted save over such a folder: its previous version
                    _restore(prev / n, path / n)
                shutil.rmtree(prev, ignore_errors=True)
            return
        bad = [n for n in DATA_FILES if not _matches(path / n, files.get(n))]
        if not bad:
            return
        if repair and all(_matches(prev / n, files.get(n)) for n in DATA_FILES):
            for n in bad:
                _restore(prev / n, path / n)
            shutil.rmtree(prev, ignore_errors=True)
            warnings.warn(f"{path}: an interrupted save was rolled back to the last complete version "
                          f"(generation {meta.get('generation')}): {', '.join(bad)} restored", stacklevel=3)
            return
        name = bad[0]
        (read_ply if name == GAUSSIANS_PLY else read_transforms)(path / name)  # a damaged file: its own error
        raise FormatError(path / name, f"does not match scene.json (size/SHA-256 differ from generation "
                          f"{meta.get('generation')}): changed after the scene was saved (an interrupted save "
                          "or an outside edit) and no previous version is kept in .prev/")

    def missing_history_steps(self) -> list[int]:
        """Step ids (> 0) of Gaussians that no history entry has: empty for a consistent scene."""
        have = {int(h["step"]) for h in self.history}
        used = set(self.gaussians.step.unique().tolist()) if len(self.gaussians) else set()
        return sorted(s for s in used if s > 0 and s not in have)

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
