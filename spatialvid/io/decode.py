"""Streaming frame sources: a video file (PyAV) or a folder of images.

Frames come out one at a time as RGB ``uint8`` arrays ``[H, W, 3]`` (never a whole video in memory), already
turned upright (the video's display-matrix rotation is applied) and optionally downscaled to a working
resolution. Every frame carries its source index and a stable name:

* video: ``frame_{index:05d}.png`` where ``index`` counts decoded frames from 0 (so it matches a sample's
  ``images/frame_00000.png``), plus its presentation time in seconds (variable frame rate is fine: times come
  from the stream's timestamps, not from ``index / fps``);
* image folder: the image's own file name; frames in natural sort order (``img2.jpg`` before ``img10.jpg``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spatialvid.errors import SpatialvidError

VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".gif"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Frame:
    """One decoded frame: ``image`` RGB uint8 [H,W,3] (upright, at the requested resolution)."""

    image: np.ndarray
    index: int
    name: str
    time: float | None = None
    path: str = ""  # source file (image folders) or "" (video)


@dataclass
class SourceInfo:
    """What we know about a source before decoding it all (sizes are upright, full resolution)."""

    kind: str  # "video" | "images"
    path: str
    width: int
    height: int
    num_frames: int | None  # None when the container does not say
    fps: float | None = None
    rotation: int = 0  # degrees counter-clockwise applied to decoded frames


def natural_key(s: str) -> list:
    """Sort key so that ``img2`` < ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def video_frame_name(index: int) -> str:
    return f"frame_{index:05d}.png"


def frame_index_from_name(name: str) -> int | None:
    """Inverse of :func:`video_frame_name` (also accepts other extensions / a path); None if no match."""
    m = re.fullmatch(r"frame_(\d+)(\.[A-Za-z0-9]+)?", Path(name).name)
    return int(m.group(1)) if m else None


def working_size(width: int, height: int, resolution: float | int | None) -> tuple[int, int]:
    """Output size for a working resolution.

    ``resolution``: None or 0 = unchanged; a number <= 1 is a scale factor; a number > 1 is the target long
    side in pixels. Never upscales. Sizes are rounded to even numbers of pixels (>= 2).
    """
    if not resolution:
        return width, height
    r = float(resolution)
    if r <= 0:
        raise SpatialvidError(f"resolution must be positive (a scale <= 1 or a long side in pixels), got {resolution}")
    scale = r if r <= 1 else r / max(width, height)
    scale = min(scale, 1.0)
    if scale >= 1.0:
        return width, height
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def encode_image(image: np.ndarray, ext: str) -> bytes:
    """RGB uint8 [H,W,3] (or grey [H,W]) -> PNG/JPEG(q95)/... bytes with Pillow.

    (Pillow, not cv2: OpenCV's PNG encoder aborts the process when pycolmap was loaded before cv2.)"""
    import io

    from PIL import Image

    ext = ext.lower().lstrip(".")
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tif": "TIFF", "tiff": "TIFF",
           "webp": "WEBP"}.get(ext)
    if fmt is None:
        raise SpatialvidError(f"cannot write images of type .{ext}")
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else ({"compress_level": 1} if fmt == "PNG" else {})
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` in natural sort order (hidden files skipped)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


#: images larger than this (width x height, from the file header) are refused before decoding
MAX_IMAGE_PIXELS = 100_000_000


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image file's header, without decoding the pixels. Raises
    :class:`SpatialvidError` for an empty or unreadable file and for one over :data:`MAX_IMAGE_PIXELS`
    (a header can announce a size whose decoding would need gigabytes)."""
    import re
    import warnings

    from PIL import Image

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise SpatialvidError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        n = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        raise SpatialvidError(f"{path}: image too large to decode ({n} in its header; the limit is "
                              f"{MAX_IMAGE_PIXELS:,})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise SpatialvidError(f"{path}: cannot read this image (damaged file or unsupported format: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if w * h > MAX_IMAGE_PIXELS:
        raise SpatialvidError(f"{path}: image too large to decode ({w}x{h} = {w * h:,} pixels in its header; "
                              f"the limit is {MAX_IMAGE_PIXELS:,})")
    return w, h


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 [H,W,3] (EXIF orientation applied); a clear error for unreadable files, empty files and
    headers announcing more than :data:`MAX_IMAGE_PIXELS` (checked before decoding)."""
    image_size(path)
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise SpatialvidError(f"{path}: cannot read this image (damaged file or unsupported format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _open_video(path: Path):
    import av

    if path.is_file() and path.stat().st_size == 0:
        raise SpatialvidError(f"{path}: empty file (0 bytes), not a video")
    try:
        container = av.open(str(path))
    except Exception as e:  # av.error.* (InvalidDataError, ...), OSError
        raise SpatialvidError(
            f"{path}: cannot open this video ({type(e).__name__}: {e}). The file is damaged, truncated "
            "(for example a copy that did not finish) or not a video") from None
    if not container.streams.video:
        container.close()
        raise SpatialvidError(f"{path}: this file has no video stream")
    return container


def _rotation_k(rotation: float) -> int:
    """np.rot90 count for a counter-clockwise rotation in degrees (multiples of 90 only)."""
    return int(round(rotation / 90.0)) % 4


def probe(path: str | Path) -> SourceInfo:
    """Describe a video file or an image folder without decoding everything."""
    path = Path(path)
    if not path.exists():
        raise SpatialvidError(f"{path}: no such file or folder")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise SpatialvidError(f"{path}: no images (jpg/png/...) in this folder")
        first = read_image(files[0])
        return SourceInfo("images", str(path), first.shape[1], first.shape[0], len(files))
    if not is_video(path) and path.suffix.lower() in IMAGE_EXTS:
        raise SpatialvidError(f"{path}: a single image; give a video file or a folder of images")
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        num = int(stream.frames) if stream.frames else None
        fps = float(stream.average_rate) if stream.average_rate else None
        # decode one frame to learn the upright size and rotation
        rot = 0
        try:
            frame = next(container.decode(stream))
        except StopIteration:
            raise SpatialvidError(f"{path}: the video stream has no decodable frames (empty or truncated)") from None
        except Exception as e:
            raise SpatialvidError(f"{path}: cannot decode this video ({type(e).__name__}: {e}); the file is "
                                  "damaged or truncated") from None
        rot = _video_rotation(frame, stream)
        w, h = frame.width, frame.height
        if _rotation_k(rot) % 2 == 1:
            w, h = h, w
        return SourceInfo("video", str(path), w, h, num, fps, rot)
    finally:
        container.close()


def _video_rotation(frame, stream) -> int:
    rot = 0
    try:
        rot = int(round(frame.rotation or 0))
    except Exception:
        rot = 0
    if rot == 0:  # older files: a 'rotate' tag = clockwise degrees needed for display
        tag = (stream.metadata or {}).get("rotate")
        if tag:
            try:
                rot = -int(float(tag))
            except ValueError:
                rot = 0
    return rot


def iter_video(path: str | Path, resolution: float | int | None = None, indices: set[int] | None = None,
               ) -> Iterator[Frame]:
    """Decode a video frame by frame (bounded memory). ``indices``: only yield these frame indices
    (frames are still decoded in order; decoding stops after the last wanted index).

    A stream that breaks off after some frames (truncated file) ends the iteration with a warning when at least
    one frame was decoded; a file that cannot be opened at all raises :class:`SpatialvidError`.
    """
    import warnings

    path = Path(path)
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        last = max(indices) if indices else None
        index = -1
        size = None
        k = None
        try:
            for frame in container.decode(stream):
                index += 1
                if last is not None and index > last:
                    break
                if indices is not None and index not in indices:
                    continue
                if k is None:
                    k = _rotation_k(_video_rotation(frame, stream))
                img = frame.to_ndarray(format="rgb24")
                if k:
                    img = np.ascontiguousarray(np.rot90(img, k))
                if size is None:
                    size = working_size(img.shape[1], img.shape[0], resolution)
                t = float(frame.time) if frame.time is not None else None
                yield Frame(resize(img, size), index, video_frame_name(index), t)
        except SpatialvidError:
            raise
        except Exception as e:
            if index <= 0:
                raise SpatialvidError(f"{path}: cannot decode this video ({type(e).__name__}: {e}); the file is "
                                      "damaged or truncated") from None
            warnings.warn(f"{path}: the video breaks off after frame {index} ({type(e).__name__}); "
                          f"it is truncated or damaged; using the frames before it", stacklevel=2)
        if index < 0:
            raise SpatialvidError(f"{path}: the video stream has no decodable frames (empty or truncated)")
    finally:
        container.close()


def iter_images(folder: str | Path, resolution: float | int | None = None, indices: set[int] | None = None,
                ) -> Iterator[Frame]:
    """Read an image folder in natural order. Each image is scaled to the working resolution computed from
    its own size (mixed sizes are allowed)."""
    files = list_images(folder)
    if not files:
        raise SpatialvidError(f"{folder}: no images (jpg/png/...) in this folder")
    for i, p in enumerate(files):
        if indices is not None and i not in indices:
            continue
        img = read_image(p)
        yield Frame(resize(img, working_size(img.shape[1], img.shape[0], resolution)), i, p.name, None, str(p))


def iter_frames(path: str | Path, resolution: float | int | None = None, indices: set[int] | None = None,
                ) -> Iterator[Frame]:
    """Frames of a video file or an image folder (see :func:`iter_video`, :func:`iter_images`)."""
    path = Path(path)
    if not path.exists():
        raise SpatialvidError(f"{path}: no such file or folder")
    if path.is_dir():
        return iter_images(path, resolution, indices)
    return iter_video(path, resolution, indices)
