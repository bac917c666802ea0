"""Training checkpoints: parameters, Adam moments, strategy state, pose corrections, RNG state, curves.

Written atomically (temporary file + rename), so a crash or a diverged run never loses the last good one.
Only tensors, numbers, strings, lists and dicts go in, and they are read back with
``torch.load(weights_only=True)``: a checkpoint from someone else cannot run code when resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spatialvid.atomic import atomic_open
from spatialvid.errors import SpatialvidError

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "last.pt"
FORMAT = "spatialvid-train-checkpoint"
VERSION = 2  # 2: RNG states as tensors / numbers (weights_only loading)


def checkpoint_path(scene_dir: str | Path) -> Path:
    return Path(scene_dir) / CHECKPOINT_DIR / CHECKPOINT_NAME


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors / dicts / lists) with torch.save."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise SpatialvidError(f"{path}: no checkpoint to resume from (run without --resume to start)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated / foreign file / pickled objects other than tensors and plain data
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SpatialvidError(f"{path}: cannot read checkpoint safely ({type(e).__name__}: {first[:200]}); "
                              "only checkpoints of tensors and plain data are loaded") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SpatialvidError(f"{path}: not a spatialvid training checkpoint")
    if int(data.get("version", 0)) > VERSION:
        raise SpatialvidError(f"{path}: checkpoint version {data['version']} is newer than this spatialvid")
    if int(data.get("version", 0)) < VERSION:
        raise SpatialvidError(f"{path}: checkpoint version {data.get('version')} was written by an older "
                              "spatialvid and cannot be resumed; start again with --overwrite")
    return data
