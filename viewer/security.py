"""Path checks for anything a browser client names: files are only ever read or written inside the scene folder."""

from __future__ import annotations

from pathlib import Path

from spatialvid.errors import SpatialvidError


def resolve_inside(root: str | Path, name: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Resolve ``name`` (relative to ``root``) and refuse it unless it lies inside ``root``.

    Symlinks are resolved before the check, so a link that points outside is refused too. ``suffixes``
    (lower case, with the dot) restricts the file type. Raises :class:`SpatialvidError` on refusal.
    """
    if root is None:
        raise SpatialvidError("this viewer has no scene folder: nothing can be read or written")
    name = str(name).strip()
    if not name or "\x00" in name:
        raise SpatialvidError("refused: empty or invalid file name")
    root_r = Path(root).resolve()
    target = (root_r / name).resolve()
    if target == root_r or not target.is_relative_to(root_r):
        raise SpatialvidError(f"refused: {name!r} is outside the scene folder")
    if suffixes and target.suffix.lower() not in suffixes:
        raise SpatialvidError(f"refused: {name!r} must end with one of {', '.join(suffixes)}")
    return target
