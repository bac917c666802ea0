"""Forward-facing sample: a hand-held small-baseline capture of objects in front of one wall, with ground truth.

Like a phone capture of one object: the camera stays on one side, about 1.4 m from a small group of objects
(a box with a ball on top, a tower, a ball on the floor) that stand 0.5-1 m in front of the +y wall of the
sample room, and moves only ~0.4 m sideways (a shallow arc with hand-held bobbing, sway and roll, the camera
aimed at the objects with a few degrees of jitter). Every view sees the same wall, so the views differ by a
small baseline only: the hard case for structure from motion (rotation and translation are easily confused).

``make_forward_sample(out_dir)`` reuses the ray caster, textures and writers of :mod:`spatialvid.sample` and
writes::

    OUT_DIR/
      images/frame_00000.png   the views (lossless), one "photo" per path position
      video.mp4                the same frames as an H.264 video (30 fps)
      transforms.json          nerfstudio: OpenGL camera-to-world, fl_x fl_y cx cy w h, zero distortion
      depth.npz                "depth": float32 [F,H,W] camera z-depth (metres)
      sample.json              layout, objects, trajectory ("mode": "forward_facing")

No held-out views or ground-truth Gaussians (this sample scores camera poses). Deterministic for a seed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatialvid import _sample_scene as S
from spatialvid.atomic import atomic_dir

TARGET = (0.0, 2.25, 0.45)  # what the camera aims at (metres, z up)
EYE = (0.0, 0.85, 1.0)  # centre of the capture path


@dataclass
class ForwardSampleInfo:
    """Paths and counts of a generated forward-facing sample (paths absolute)."""

    out_dir: Path
    video: Path
    images_dir: Path
    transforms: Path
    depth: Path
    sample_json: Path
    num_frames: int
    width: int
    height: int
    baseline: float  # metres: diagonal of the bounding box of the camera centres
    seed: int
    seconds: float


def build_forward_scene(seed: int = 0) -> S.SceneDef:
    """Objects in front of the +y wall (y = 3.2 m): a box with a ball on it, a tower, a ball on the floor."""
    boxes = [
        S.Box("pedestal", (0.0, 2.35, 0.3), (0.55, 0.45, 0.6), 18.0, 3),
        S.Box("tower", (0.75, 2.6, 0.5), (0.3, 0.3, 1.0), -25.0, 4),
        S.Box("low_crate", (-0.8, 2.55, 0.18), (0.5, 0.4, 0.36), 35.0, 7),
    ]
    spheres = [
        S.Sphere("ball_on_pedestal", (0.0, 2.35, 0.8), 0.2, 5),
        S.Sphere("floor_ball", (-0.45, 2.0, 0.16), 0.16, 6),
    ]
    return S.SceneDef(seed=seed, hidden_region=False, boxes=boxes, spheres=spheres)


def forward_trajectory(t: np.ndarray, seed: int, baseline: float = 0.4) -> np.ndarray:
    """Camera-to-world 4x4 (OpenCV axes) at normalised times ``t`` in [0,1]: a shallow sideways arc of width
    ``baseline`` metres (plus ~3 cm of hand-held bobbing and sway) facing +y, aimed at :data:`TARGET` with
    up to ~2 degrees of jitter and roll."""
    from spatialvid.sample import _wiggle

    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    rng = np.random.default_rng([seed, 16])
    s = t - 0.5 + 0.03 * np.sin(2 * np.pi * t)  # uneven speed, still monotone
    x = EYE[0] + baseline * s + _wiggle(t, rng, (0.012, 0.004), (1.7, 4.3))
    y = EYE[1] + 0.3 * baseline * (s * s - 1 / 12) + _wiggle(t, rng, (0.015, 0.005), (1.1, 3.7))
    z = EYE[2] + _wiggle(t, rng, (0.02, 0.006, 0.003), (1.3, 3.9, 8.1))
    aim = np.array(TARGET)[None] + np.stack(
        [_wiggle(t, rng, (0.05, 0.012), (0.9, 3.3)), _wiggle(t, rng, (0.03, 0.01), (0.7, 2.9)),
         _wiggle(t, rng, (0.04, 0.01), (1.2, 4.1))], 1)
    roll = _wiggle(t, rng, (1.5, 0.5), (0.8, 3.6))
    eye = np.stack([x, y, z], 1)
    return np.stack([S.look_at_c2w(e, g, r) for e, g, r in zip(eye, aim, roll)])


def make_forward_sample(out_dir: str | Path, num_frames: int = 24, width: int = 480, height: int = 360,
                        seed: int = 0, baseline: float = 0.4, progress: bool = True) -> ForwardSampleInfo:
    """Render the forward-facing sample into ``out_dir`` (layout in the module docstring); an existing sample
    there is replaced, any other non-empty folder is refused. Raises ``SpatialvidError`` on bad arguments."""
    from tqdm import tqdm

    from spatialvid.errors import SpatialvidError
    from spatialvid.sample import (
        FORMAT,
        FORMAT_VERSION,
        FPS,
        _check_args,
        _check_out_dir,
        _to_u8,
        _write_png,
        _write_video,
        intrinsics,
        render_view,
        supersampling,
        transforms_dict,
        write_npz,
    )

    _check_args(num_frames, width, height, seed)
    if not 0.01 <= float(baseline) <= 2.0:
        raise SpatialvidError(f"baseline must be in 0.01..2 metres, got {baseline!r}")
    num_frames, width, height, seed = int(num_frames), int(width), int(height), int(seed)
    out = Path(out_dir).resolve()
    _check_out_dir(out)
    t_start = time.perf_counter()
    scene = build_forward_scene(seed)
    fx, fy, cx, cy = intrinsics(width, height)
    c2w = forward_trajectory(np.linspace(0.0, 1.0, num_frames), seed, baseline)
    ss = supersampling(width, height)
    with atomic_dir(out) as tmp, tqdm(total=num_frames + 1, desc="forward sample", unit="view",
                                      disable=not progress) as bar:
        (tmp / "images").mkdir()
        frames, depths = [], []
        for i, m in enumerate(c2w):
            rgb, depth, _, _ = render_view(scene, m, width, height, ss)
            img = _to_u8(rgb)
            _write_png(tmp / "images" / f"frame_{i:05d}.png", img)
            frames.append(img)
            depths.append(depth)
            bar.update(1)
        _write_video(tmp / "video.mp4", frames)
        write_npz(tmp / "depth.npz", depth=np.stack(depths))
        (tmp / "transforms.json").write_text(json.dumps(transforms_dict(
            c2w, [f"images/frame_{i:05d}.png" for i in range(num_frames)], width, height,
            {"spatialvid_sample": True, "fps": FPS}), indent=2) + "\n")
        centres = c2w[:, :3, 3]
        extent = float(np.linalg.norm(centres.max(0) - centres.min(0)))
        lo, hi = scene.objects_bounds()
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION, "mode": "forward_facing", "seed": seed,
            "num_frames": num_frames, "width": width, "height": height, "fps": FPS, "supersampling": ss,
            "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
            "units": "metres", "up_axis": "+z", "world": "z up; cameras OpenCV in code, OpenGL in transforms.json",
            "scene_center": list(TARGET),
            "objects_bounds": {"min": lo.tolist(), "max": hi.tolist()},
            "room_bounds": {"min": list(S.ROOM_LO), "max": list(S.ROOM_HI)},
            "objects": scene.describe(),
            "trajectory": f"shallow sideways arc of {baseline:g} m at y ~{EYE[1]} m, eye height ~{EYE[2]} m, facing "
                          "the +y wall, aimed at the objects with hand-held jitter and roll",
            "camera_extent": round(extent, 4),
            "files": {"video": "video.mp4", "images": "images/", "transforms": "transforms.json",
                      "depth": "depth.npz (key 'depth': float32 [F,H,W] camera z, metres)"},
        }
        (tmp / "sample.json").write_text(json.dumps(meta, indent=2) + "\n")
        bar.update(1)
    return ForwardSampleInfo(out, out / "video.mp4", out / "images", out / "transforms.json", out / "depth.npz",
                             out / "sample.json", num_frames, width, height, extent, seed,
                             time.perf_counter() - t_start)
