"""Ingest: video / image-folder decoding and keyframe selection (fast, synthetic inputs)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from spatialvid.errors import SpatialvidError
from spatialvid.io import (
    FrameStats,
    KeyframeConfig,
    frame_index_from_name,
    ingest,
    iter_frames,
    natural_key,
    probe,
    select_keyframes,
    video_frame_name,
    working_size,
)
from spatialvid.io.keyframes import frame_motion


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize(((w // 8 + 2) * 8, (h // 8 + 2) * 8), Image.BILINEAR))
    return np.ascontiguousarray(big[:h, :w])


def _write_video(path: Path, frames: list[np.ndarray], pts: list[int] | None = None, rotation: int | None = None,
                 rate: int = 10) -> Path:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if pts is not None:
            s.codec_context.time_base = Fraction(1, 1000)
            s.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _panning_frames(n: int, h: int = 96, w: int = 128, step: int = 3) -> list[np.ndarray]:
    tex = _texture(h, w + step * n + 8)
    return [np.ascontiguousarray(tex[:h, i * step : i * step + w]) for i in range(n)]


def test_natural_sort_and_names():
    names = ["img10.jpg", "img2.jpg", "IMG1.jpg", "img2b.jpg"]
    assert sorted(names, key=natural_key) == ["IMG1.jpg", "img2.jpg", "img2b.jpg", "img10.jpg"]
    assert video_frame_name(12) == "frame_00012.png"
    assert frame_index_from_name("images/frame_00012.png") == 12
    assert frame_index_from_name("0001.jpg") is None


def test_working_size():
    assert working_size(1920, 1080, 960) == (960, 540)
    assert working_size(1080, 1920, 0.25) == (270, 480)
    assert working_size(320, 240, 960) == (320, 240)  # never upscales
    assert working_size(320, 240, None) == (320, 240)
    with pytest.raises(SpatialvidError):
        working_size(320, 240, -1)


def test_video_decode_stream_vfr_and_subset(tmp_path):
    frames = _panning_frames(12)
    pts = [0, 40, 80, 200, 240, 500, 540, 580, 620, 900, 940, 980]  # ms, irregular: variable frame rate
    vid = _write_video(tmp_path / "v.mp4", frames, pts=pts)
    info = probe(vid)
    assert info.kind == "video" and (info.width, info.height) == (128, 96)
    out = list(iter_frames(vid))
    assert [f.index for f in out] == list(range(12))
    assert [f.name for f in out] == [video_frame_name(i) for i in range(12)]
    times = np.array([f.time for f in out])
    assert np.allclose(times - times[0], np.array(pts) / 1000.0, atol=1e-3)  # real timestamps, not i / fps
    # content survives (lossy codec): mean abs error small
    assert np.abs(out[5].image.astype(float) - frames[5]).mean() < 12
    sub = list(iter_frames(vid, resolution=64, indices={2, 7}))
    assert [f.index for f in sub] == [2, 7] and sub[0].image.shape == (48, 64, 3)


def test_video_rotation_metadata_is_applied(tmp_path):
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :16] = 255  # white left band
    vid = _write_video(tmp_path / "rot.mp4", [img] * 3, rotation=90)
    info = probe(vid)
    assert (info.width, info.height, info.rotation) == (32, 64, 90)
    fr = next(iter(iter_frames(vid)))
    assert fr.image.shape == (64, 32, 3)
    # rotated 90 degrees counter-clockwise: the left band is now at the bottom
    assert fr.image[-10:, :, 0].mean() > 200 and fr.image[:40, :, 0].mean() < 30


def test_unreadable_and_truncated_video(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video at all" * 100)
    with pytest.raises(SpatialvidError, match="cannot open this video"):
        probe(junk)
    vid = _write_video(tmp_path / "ok.mp4", _panning_frames(20))
    data = vid.read_bytes()
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(data[: len(data) // 3])  # moov atom at the end is lost
    with pytest.raises(SpatialvidError, match="damaged|truncated"):
        ingest(trunc, tmp_path / "kf", KeyframeConfig())
    with pytest.raises(SpatialvidError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_image_folder_natural_order_and_resize(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in (10, 2, 1):
        Image.fromarray(_texture(120, 160, seed=i)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("ignored")
    res = ingest(folder, tmp_path / "kf", KeyframeConfig(resolution=80), progress=False)
    assert [k.name for k in res.keyframes] == ["img1.png", "img2.png", "img10.png"]
    assert all((k.width, k.height) == (80, 60) for k in res.keyframes)
    assert all(Path(k.path).exists() and Path(k.path).name == k.name for k in res.keyframes)
    (folder / "img1.png").unlink()
    (folder / "img10.png").unlink()
    with pytest.raises(SpatialvidError, match="only 1 frame.*at least 3"):
        ingest(folder, tmp_path / "kf2", KeyframeConfig(), progress=False)


def _stats(sharp, motion):
    n = len(sharp)
    return FrameStats("video", np.asarray(sharp, float), np.asarray(motion, float),
                      [video_frame_name(i) for i in range(n)], [i / 30 for i in range(n)])


def test_select_drops_blurry_and_spaces_by_motion():
    n = 100
    sharp = np.full(n, 100.0)
    sharp[[30, 31, 70]] = 20.0  # motion-blurred frames
    motion = np.zeros(n)
    motion[1:50] = 0.0  # camera stands still for the first half ...
    motion[50:] = 0.01  # ... then moves steadily
    motion[1:50] = 1e-5
    cfg = KeyframeConfig(max_frames=10)
    idx = select_keyframes(_stats(sharp, motion), cfg)
    assert len(idx) == 10
    assert 30 not in idx and 31 not in idx and 70 not in idx
    # spaced by motion, not time: at most 2 keyframes in the static half
    assert sum(i < 50 for i in idx) <= 2
    gaps = np.diff([i for i in idx if i >= 50])
    assert gaps.max() - gaps.min() <= 2


def test_select_static_camera_and_too_few_frames():
    with pytest.raises(SpatialvidError, match="does not move.*rotating camera cannot be reconstructed"):
        select_keyframes(_stats(np.full(50, 100.0), np.full(50, 1e-5)), KeyframeConfig())
    sharp = np.full(20, 1e-9)
    sharp[3] = 100
    with pytest.raises(SpatialvidError, match="usable"):
        select_keyframes(_stats(sharp, np.full(20, 0.01)), KeyframeConfig())


def test_frame_motion_measures_shift():
    tex = _texture(200, 300)
    a = np.ascontiguousarray(tex[:120, :160, 0])
    b = np.ascontiguousarray(tex[:120, 6:166, 0])  # 6 px shift
    m = frame_motion(a, b) * np.hypot(120, 160)
    assert abs(m - 6) < 0.5
    assert frame_motion(a, a) < 1e-3


def test_ingest_video_static_camera_error(tmp_path):
    still = _texture(96, 128)
    rng = np.random.default_rng(0)
    frames = [np.clip(still.astype(int) + rng.integers(-2, 3, still.shape), 0, 255).astype(np.uint8)
              for _ in range(15)]
    vid = _write_video(tmp_path / "still.mp4", frames)
    with pytest.raises(SpatialvidError, match="camera does not move"):
        ingest(vid, tmp_path / "kf", KeyframeConfig(), progress=False)


def test_ingest_video_writes_keyframes(tmp_path):
    vid = _write_video(tmp_path / "pan.mp4", _panning_frames(30))
    res = ingest(vid, tmp_path / "kf", KeyframeConfig(max_frames=8, resolution=64), progress=False)
    assert 3 <= len(res.keyframes) <= 8
    idx = [k.index for k in res.keyframes]
    assert idx == sorted(idx) and idx[0] <= 2 and idx[-1] >= 27  # covers the whole motion
    for k in res.keyframes:
        assert k.name == video_frame_name(k.index) and Path(k.path).exists()
        assert Image.open(k.path).size == (64, 48)
    # known names: exactly those frames; unknown names: a clear error
    res2 = ingest(vid, tmp_path / "kf2", KeyframeConfig(resolution=64), only_names=["frame_00003.png",
                                                                                     "images/frame_00010.jpg"])
    assert [k.index for k in res2.keyframes] == [3, 10]
    with pytest.raises(SpatialvidError, match="do not match any frame"):
        ingest(vid, tmp_path / "kf3", KeyframeConfig(), only_names=["frame_00003.png", "IMG_0001.jpg"])
