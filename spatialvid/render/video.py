"""Write frames to an H.264 mp4 (PyAV / libx264) or to a PNG sequence, atomically.

* ``OUT.mp4`` (or ``.mov``/``.mkv``): H.264, yuv420p (plays everywhere), constant frame rate ``fps``.
  Width and height must be even (a yuv420p requirement). Frames go to a hidden temporary file next to
  ``OUT`` that is renamed over ``OUT`` by :meth:`VideoWriter.close`; on error nothing is left behind.
* A folder ``OUT`` (no video suffix): ``OUT/00000.png``, ``00001.png``, ... built in a temporary sibling
  folder and swapped into place on close.

Frames are [H,W,3] RGB or [H,W] grey, float in 0..1 or uint8.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from spatialvid.errors import SpatialvidError

VIDEO_SUFFIXES = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


def is_video_path(path: str | Path) -> bool:
    """True when ``path`` names a video file (by suffix); otherwise it is a PNG folder."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Float 0..1 (clipped, rounded) or uint8 -> uint8, same shape."""
    a = np.asarray(frame)
    if a.dtype == np.uint8:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise SpatialvidError(f"frame dtype {a.dtype} not supported (use float 0..1 or uint8)")
    return (np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _default_mode(directory: bool) -> int:
    """Permissions a plain open()/mkdir() would give (temp files are created 0600/0700)."""
    um = os.umask(0)
    os.umask(um)
    return (0o777 if directory else 0o666) & ~um


def _fps_fraction(fps: float | Fraction) -> Fraction:
    if isinstance(fps, Fraction):
        if fps <= 0:
            raise SpatialvidError(f"fps must be positive, got {fps}")
        return fps
    if not (np.isfinite(float(fps)) and fps > 0):
        raise SpatialvidError(f"fps must be positive, got {fps}")
    return Fraction(float(fps)).limit_denominator(1001)


class VideoWriter:
    """``with VideoWriter("out.mp4", fps=30) as w: w.write(frame)``; or a folder path for PNGs.

    Args:
        path: output file (``.mp4``/``.mov``/``.mkv``) or folder (anything else).
        fps: frames per second (stored exactly as a fraction, e.g. 29.97 -> 2997/100).
        crf: x264 quality (0 = lossless, 18 = visually lossless, 23 = default).
        atomic: write to a temporary sibling and rename on close (set False when the caller already
            writes inside a temporary folder).
        overwrite: replace an existing output (else an error before any work).
    """

    def __init__(self, path: str | Path, fps: float = 30.0, crf: int = 18, atomic: bool = True,
                 overwrite: bool = True, preset: str = "medium"):
        self.path = Path(path)
        self.fps = _fps_fraction(fps)
        self.crf = int(crf)
        self.preset = preset
        self.atomic = atomic
        self.is_video = is_video_path(self.path)
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (width, height)
        self._closed = False
        self._container = None
        self._stream = None
        if self.path.exists() and not overwrite:
            raise SpatialvidError(f"{self.path}: already exists (pass overwrite=True to replace it)")
        if self.is_video and self.path.is_dir():
            raise SpatialvidError(f"{self.path}: is a folder, cannot write a video file there")
        if not self.is_video and self.path.exists() and not self.path.is_dir():
            raise SpatialvidError(f"{self.path}: is a file; a PNG sequence needs a folder path (or use .mp4)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.is_video:
            if atomic:
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
                os.close(fd)
                os.chmod(tmp, _default_mode(False))
                self._target = Path(tmp)
            else:
                self._target = self.path
        else:
            self._target = (Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
                            if atomic else self.path)
            self._target.mkdir(parents=True, exist_ok=True)
            if atomic:
                os.chmod(self._target, _default_mode(True))

    # ---- writing -----------------------------------------------------------------------------------
    def _open_video(self, width: int, height: int) -> None:
        import av

        if width % 2 or height % 2:
            raise SpatialvidError(f"{self.path}: H.264 (yuv420p) needs an even width and height, got "
                                  f"{width}x{height}; choose an even --resolution or write PNGs to a folder")
        fmt = VIDEO_SUFFIXES[self.path.suffix.lower()]
        self._container = av.open(str(self._target), mode="w", format=fmt)
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one frame ([H,W,3] RGB or [H,W] grey; float 0..1 or uint8). All frames share one size."""
        if self._closed:
            raise SpatialvidError(f"{self.path}: writer is closed")
        a = to_uint8(frame)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
            raise SpatialvidError(f"frame shape {a.shape} not supported (use [H,W,3] or [H,W])")
        h, w = a.shape[:2]
        if self.size is None:
            self.size = (w, h)
            if self.is_video:
                self._open_video(w, h)
        elif self.size != (w, h):
            raise SpatialvidError(f"{self.path}: frame {self.frames_written} is {w}x{h}, earlier frames "
                                  f"{self.size[0]}x{self.size[1]}")
        if self.is_video:
            import av

            rgb = np.ascontiguousarray(np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        else:
            from PIL import Image

            Image.fromarray(np.ascontiguousarray(a)).save(self._target / f"{self.frames_written:05d}.png",
                                                          compress_level=1)
        self.frames_written += 1

    # ---- finishing ---------------------------------------------------------------------------------
    def close(self) -> Path:
        """Flush, finish the file, and move it into place. Returns the output path."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            if self.is_video:
                if self._container is None:
                    raise SpatialvidError(f"{self.path}: no frames were written")
                for packet in self._stream.encode():
                    self._container.mux(packet)
                self._container.close()
                self._container = None
            if self.atomic:
                self._move_into_place()
        except BaseException:
            self._cleanup()
            raise
        return self.path

    def _move_into_place(self) -> None:
        if self.is_video:
            os.replace(self._target, self.path)
            return
        import shutil

        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.path, old)
            os.replace(self._target, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._target, self.path)

    def abort(self) -> None:
        """Stop and delete the partial output (the previous ``path``, if any, is left untouched)."""
        if self._closed:
            return
        self._closed = True
        self._cleanup()

    def _cleanup(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if not self.atomic:
            return
        if self._target.is_dir():
            import shutil

            shutil.rmtree(self._target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._target)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # an abandoned writer must not leave temporary files behind
        with contextlib.suppress(Exception):
            if not self._closed:
                self.abort()


def read_video_info(path: str | Path) -> dict:
    """{"frames", "width", "height", "fps" (Fraction), "codec"} of a video, counting decoded frames."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return {"frames": n, "width": s.codec_context.width, "height": s.codec_context.height,
                "fps": s.average_rate, "codec": s.codec_context.name}
