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


PATHS_DIR = "paths"
#: names a browser client may never write, in any folder: the scene's own files and reconstruct's outputs
RESERVED_NAMES = frozenset({"scene.json", "transforms.json", "gaussians.ply", "metrics.json", "render.json",
                            "training_curve.png", "last.pt"})


def resolve_path_file(root: str | Path, name: str, suffixes: tuple[str, ...] = (".json",)) -> Path:
    """``root/paths/NAME`` for a camera-path file named by a client (``NAME`` or ``paths/NAME``).

    Only a plain file name is taken (no folders, no ``..``, not absolute), never one of
    :data:`RESERVED_NAMES`; symlinks out of ``root/paths`` are refused as by :func:`resolve_inside`.
    """
    if root is None:
        raise SpatialvidError("this viewer has no scene folder: nothing can be read or written")
    raw = str(name).strip().replace("\\", "/")
    if raw.startswith(PATHS_DIR + "/"):
        raw = raw[len(PATHS_DIR) + 1:]
    if not raw or "/" in raw or raw in (".", "..") or "\x00" in raw:
        raise SpatialvidError(f"refused: {name!r} must be a plain file name (it is saved in the scene's "
                              f"{PATHS_DIR}/ folder)")
    if raw.lower() in RESERVED_NAMES:
        raise SpatialvidError(f"refused: {raw!r} is a reserved scene file name; choose another name")
    target = resolve_inside(Path(root) / PATHS_DIR, raw, suffixes)
    if not target.is_relative_to(Path(root).resolve()):  # paths/ itself a link out of the scene
        raise SpatialvidError(f"refused: {name!r} is outside the scene folder")
    return target


def allowed_image(roots: list[Path], path: str | Path) -> Path | None:
    """``path`` resolved, when it lies inside one of ``roots`` (the scene folder, its images folder); else None."""
    if not path:
        return None
    p = Path(path).resolve()
    for r in roots:
        r = r.resolve()
        if p != r and p.is_relative_to(r):
            return p
    return None
