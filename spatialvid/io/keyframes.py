"""Keyframe selection: drop blurry frames, space the rest by camera motion, write them at a working resolution.

Two streaming passes over the source (bounded memory, whatever the video length):

1. *analyse*: every frame at a small analysis size (long side ``analysis_size`` px, grey): sharpness =
   variance of the Laplacian; motion = median displacement of corners tracked with pyramidal Lucas-Kanade
   from the previous frame, as a fraction of the image diagonal (phase correlation when too few corners).
2. *write*: decode again and save only the chosen frames at the working resolution.

Selection (:func:`select_keyframes`): a frame is *blurry* when its sharpness is below ``blur_threshold`` times
the median sharpness of its neighbours (a window of ``2 * blur_window + 1`` frames), so slow focus changes or
dark scenes do not count as blur. Keyframes are placed at even steps of cumulative motion (not of time), and
each one is the sharpest non-blurry frame around its target. A camera that never moves is reported as such.
For an image folder (photos, maybe unordered) motion is not used: all images are kept (blurry ones are dropped
only when there are more than ``max_frames``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from spatialvid.errors import SpatialvidError
from spatialvid.io.decode import Frame, SourceInfo, encode_image, iter_frames, probe, working_size


@dataclass
class KeyframeConfig:
    """Ingest settings.

    max_frames: target number of keyframes (fewer when the camera moves little or frames are blurry).
    resolution: working resolution of the written keyframes: a long side in px (> 1) or a scale (<= 1);
        None keeps the source size. Never upscales.
    blur_threshold: a frame whose sharpness is below this fraction of its neighbours' median is blurry.
    blur_window: half-width (frames) of the neighbourhood for the relative blur score.
    min_motion: smallest camera motion between keyframes, as a fraction of the image diagonal (median tracked
        feature displacement); limits keyframes for slow videos.
    static_motion: total motion (fraction of the diagonal) below which the camera counts as static.
    analysis_size: long side (px) of the grey frames used for the blur and motion analysis.
    image_ext: file extension of the written keyframes for videos (".png" lossless or ".jpg").
    """

    max_frames: int = 150
    resolution: float | int | None = 960
    blur_threshold: float = 0.6
    blur_window: int = 7
    min_motion: float = 0.004
    static_motion: float = 0.02
    analysis_size: int = 320
    image_ext: str = ".png"


@dataclass
class FrameStats:
    """Per-frame analysis of a source (arrays of length = number of frames)."""

    kind: str
    sharpness: np.ndarray  # variance of Laplacian at analysis size
    motion: np.ndarray  # displacement from the previous frame, fraction of diagonal (motion[0] = 0)
    names: list[str]
    times: list[float | None]

    @property
    def cumulative_motion(self) -> np.ndarray:
        return np.cumsum(self.motion)


@dataclass
class Keyframe:
    """A written keyframe: ``path`` (at working resolution), its source index/name/time and size."""

    path: str
    name: str
    index: int
    time: float | None
    width: int
    height: int
    source_path: str = ""


@dataclass
class IngestResult:
    source: SourceInfo
    keyframes: list[Keyframe]
    stats: FrameStats | None = None
    dropped_blurry: int = 0
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: analyse (decode + blur/motion), select, write


def _gray_small(img: np.ndarray, size: int) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    s = size / max(h, w)
    if s < 1:
        g = cv2.resize(g, (max(8, int(round(w * s))), max(8, int(round(h * s)))), interpolation=cv2.INTER_AREA)
    return g


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian (higher = sharper)."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def frame_motion(prev: np.ndarray, cur: np.ndarray) -> float:
    """Median displacement of tracked corners between two grey frames, as a fraction of the diagonal."""
    diag = math.hypot(*prev.shape)
    pts = cv2.goodFeaturesToTrack(prev, maxCorners=300, qualityLevel=0.01, minDistance=7)
    if pts is not None and len(pts) >= 10:
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(21, 21), maxLevel=3)
        ok = st.reshape(-1) == 1
        if ok.sum() >= 10:
            d = np.linalg.norm((nxt - pts).reshape(-1, 2)[ok], axis=1)
            return float(np.median(d) / diag)
    (dx, dy), _ = cv2.phaseCorrelate(prev.astype(np.float32), cur.astype(np.float32))
    return float(math.hypot(dx, dy) / diag)


def analyse(path: str | Path, config: KeyframeConfig, info: SourceInfo | None = None,
            progress: bool = True) -> FrameStats:
    """Pass 1: sharpness and motion of every frame (bounded memory)."""
    info = info or probe(path)
    sharp: list[float] = []
    motion: list[float] = []
    names: list[str] = []
    times: list[float | None] = []
    prev = None
    video = info.kind == "video"
    bar = tqdm(total=info.num_frames, desc="analyse frames", unit="frame", disable=not progress, leave=False)
    try:
        for fr in iter_frames(path, resolution=config.analysis_size if video else None):
            g = _gray_small(fr.image, config.analysis_size)
            sharp.append(sharpness(g))
            if video:
                motion.append(0.0 if prev is None or prev.shape != g.shape else frame_motion(prev, g))
            else:
                motion.append(0.0 if prev is None else 1.0)  # photos: order only
            prev = g
            names.append(fr.name)
            times.append(fr.time)
            bar.update(1)
    finally:
        bar.close()
    return FrameStats(info.kind, np.asarray(sharp), np.asarray(motion), names, times)


def relative_sharpness(sharp: np.ndarray, window: int) -> np.ndarray:
    """Sharpness divided by the median of a centred window of neighbours (1 = as sharp as its neighbours)."""
    n = len(sharp)
    out = np.ones(n)
    for i in range(n):
        lo, hi = max(0, i - window), min(n, i + window + 1)
        med = float(np.median(sharp[lo:hi]))
        out[i] = sharp[i] / med if med > 1e-9 else 1.0
    return out


def usable_frames(stats: FrameStats, config: KeyframeConfig) -> np.ndarray:
    """Boolean mask of frames that are neither blurry (relative) nor featureless (almost flat)."""
    rel = relative_sharpness(stats.sharpness, config.blur_window)
    flat = stats.sharpness < 1e-3 * max(float(np.median(stats.sharpness)), 1e-9)
    return (rel >= config.blur_threshold) & ~flat & (stats.sharpness > 1e-6)


def select_keyframes(stats: FrameStats, config: KeyframeConfig, source: str = "") -> list[int]:
    """Pick keyframe indices (sorted). Raises :class:`SpatialvidError` for < 3 usable frames or a static camera."""
    n = len(stats.sharpness)
    where = f"{source}: " if source else ""
    if n < 3:
        raise SpatialvidError(f"{where}only {n} frame(s); at least 3 usable frames are needed for 3D reconstruction")
    if stats.kind != "video":
        idx = np.arange(n)
        if n > config.max_frames:
            ok = usable_frames(stats, config)
            idx = idx[ok] if ok.sum() >= config.max_frames else idx
            pick = np.unique(np.round(np.linspace(0, len(idx) - 1, config.max_frames)).astype(int))
            idx = idx[pick]
        return idx.tolist()
    ok = usable_frames(stats, config)
    if ok.sum() < 3:
        raise SpatialvidError(f"{where}only {int(ok.sum())} of {n} frames are usable (the others are blurry or "
                              "blank); at least 3 sharp frames are needed")
    cum = stats.cumulative_motion
    total = float(cum[-1])
    if total < config.static_motion:
        raise SpatialvidError(
            f"{where}the camera does not move (total image motion {100 * total:.2f}% of the frame diagonal): "
            "3D reconstruction needs a camera that moves sideways through the scene (parallax); "
            "a static or purely rotating camera cannot be reconstructed")
    target = min(int(config.max_frames), int(ok.sum()), int(total / max(config.min_motion, 1e-9)) + 1)
    target = max(target, 3)
    cand = np.flatnonzero(ok)
    if target >= len(cand):  # room for every usable frame
        return cand.tolist()
    cm = cum[cand]
    step = total / (target - 1)
    chosen: list[int] = []
    used: set[int] = set()
    for k in range(target):
        t = k * step
        lo, hi = t - step / 2, t + step / 2
        inwin = np.flatnonzero((cm >= lo) & (cm <= hi))
        inwin = [j for j in inwin if cand[j] not in used]
        if inwin:
            j = max(inwin, key=lambda j: stats.sharpness[cand[j]])
        else:
            order = np.argsort(np.abs(cm - t))
            free = [j for j in order if cand[j] not in used]
            if not free:
                break
            j = free[0]
            if abs(cm[j] - t) > step:  # nothing usable near this target: skip it
                continue
        used.add(int(cand[j]))
        chosen.append(int(cand[j]))
    chosen = sorted(chosen)
    if len(chosen) < 3:
        raise SpatialvidError(f"{where}only {len(chosen)} usable keyframes; at least 3 are needed")
    return chosen


def write_keyframes(path: str | Path, indices: list[int], out_dir: str | Path, config: KeyframeConfig,
                    info: SourceInfo | None = None, progress: bool = True) -> list[Keyframe]:
    """Pass 2: decode again and write the chosen frames at the working resolution into ``out_dir``.

    Video keyframes are named ``frame_{index:05d}`` + ``config.image_ext``; image-folder keyframes keep their
    file name (re-encoded at the working resolution, same extension)."""
    from spatialvid.atomic import atomic_write_bytes

    info = info or probe(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    want = set(int(i) for i in indices)
    kfs: list[Keyframe] = []
    bar = tqdm(total=len(want), desc="write keyframes", unit="frame", disable=not progress, leave=False)
    fr: Frame
    try:
        for fr in iter_frames(path, resolution=config.resolution, indices=want):
            if info.kind == "video":
                name = Path(fr.name).stem + config.image_ext
            else:
                name = fr.name
            atomic_write_bytes(out / name, encode_image(fr.image, Path(name).suffix))
            kfs.append(Keyframe(str(out / name), name, fr.index, fr.time, fr.image.shape[1], fr.image.shape[0],
                                fr.path))
            bar.update(1)
    finally:
        bar.close()
    if len(kfs) < len(want):
        got = {k.index for k in kfs}
        missing = sorted(want - got)
        if len(kfs) < 3:
            raise SpatialvidError(f"{path}: could only decode {len(kfs)} of the {len(want)} chosen frames "
                                  "(the video is truncated or damaged)")
        import warnings

        warnings.warn(f"{path}: {len(missing)} chosen frames could not be decoded again (first: {missing[:5]})",
                      stacklevel=2)
    return kfs


def ingest(path: str | Path, out_dir: str | Path, config: KeyframeConfig | None = None,
           progress: bool = True, only_names: list[str] | None = None) -> IngestResult:
    """Analyse a video or image folder, select keyframes and write them into ``out_dir``.

    ``only_names``: use exactly these frames (names as in :mod:`spatialvid.io.decode`, e.g. from a poses
    file) instead of selecting; unknown names raise a clear error."""
    import time

    config = config or KeyframeConfig()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    info = probe(path)
    if only_names is not None:
        stats = None
        all_names = _source_names(path, info)
        pos = {n: i for i, n in enumerate(all_names)}
        stem_pos = {Path(n).stem: i for i, n in enumerate(all_names)}
        idx = []
        missing = []
        for n in only_names:
            i = pos.get(Path(n).name, stem_pos.get(Path(n).stem))
            (missing.append(n) if i is None else idx.append(i))
        if missing:
            raise SpatialvidError(
                f"{len(missing)} of {len(only_names)} image names in the poses file do not match any frame of "
                f"{path} (for example {missing[:3]}; the input has e.g. {all_names[:3]})")
        indices = sorted(set(idx))
        dropped = 0
        timings["select"] = time.perf_counter() - t0
    else:
        stats = analyse(path, config, info, progress)
        timings["analyse"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        indices = select_keyframes(stats, config, str(path))
        dropped = int((~usable_frames(stats, config)).sum()) if info.kind == "video" else 0
        timings["select"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kfs = write_keyframes(path, indices, out_dir, config, info, progress)
    timings["write"] = time.perf_counter() - t0
    return IngestResult(info, kfs, stats, dropped, timings=timings)


def _source_names(path: str | Path, info: SourceInfo) -> list[str]:
    from spatialvid.io.decode import list_images, video_frame_name

    if info.kind == "images":
        return [p.name for p in list_images(path)]
    if info.num_frames:
        n = info.num_frames
    else:  # count by demuxing packets (cheap, no decoding)
        import av

        with av.open(str(path)) as c:
            n = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    return [video_frame_name(i) for i in range(n)]


def working_size_for(info: SourceInfo, config: KeyframeConfig) -> tuple[int, int]:
    return working_size(info.width, info.height, config.resolution)
