"""Hand-held test clips for ``spatialvid sample --mode``: the captures real users film, with exact ground truth.

Every mode ray casts a small-object-on-a-floor scene (the analytic renderer of :mod:`spatialvid._sample_scene`,
z-up world, metres): an "apple" (sphere, r = 9 cm) and a "mug" (box 10 x 10 x 14 cm) in the middle of the
sample room's 6.4 x 6.4 m floor, which fills most of every frame, so one homography explains most matches.

* ``table``: the camera walks a 200-degree arc around the objects while rising over them (radius 0.85 ->
  0.6 m, eye height 0.45 -> 0.9 m), looking at them, with smooth hand-held bobbing and roll. The floor is a
  fine speckled countertop texture.
* ``low-texture``: the same arc over a nearly plain floor (low-contrast noise, sparse faint speckles).
* ``blur``: the ``table`` arc with hand tremor (9-13 Hz shake), motion blur (each frame averages 5
  sub-exposures over 60% of the frame interval) and a rolling shutter (row ``r`` is exposed
  ``readout * (r / H - 0.5)`` of a frame interval later; readout 0.8): the image wobbles.
* ``rotation``: the camera stands still and only turns (pans 50 degrees and tilts a little): no parallax,
  which structure from motion must refuse.

Ground truth (``transforms.json``, ``depth.npz``) is the pose at the middle of each frame's exposure and
the middle image row (for ``blur``, the other rows are seen from slightly different poses). Layout as for
the room sample (see :mod:`spatialvid.sample`): video.mp4, images/, transforms.json, depth.npz, heldout/
(images/, transforms.json, depth.npz: 4 views off the path) and sample.json; no gt_gaussians.ply.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from spatialvid import _sample_scene as S
from spatialvid.atomic import atomic_dir
from spatialvid.errors import SpatialvidError

MODES = ("table", "low-texture", "blur", "rotation")
TARGET = (0.0, 0.0, 0.07)
FPS = 30
BLUR_SUBFRAMES = 5
EXPOSURE = 0.6  # fraction of the frame interval the shutter is open (blur mode)
READOUT = 0.8  # rolling-shutter readout time, fraction of the frame interval (blur mode)


def build_scene(mode: str, seed: int = 0) -> S.SceneDef:
    """The objects-on-a-floor scene; ``low-texture`` gets a nearly plain floor."""
    mats = S._materials()
    if mode == "low-texture":  # pale, low-contrast floor with a few faint speckles
        floor = S.Material((0.70, 0.67, 0.62), (0.74, 0.71, 0.66), 2.0, (0.10, 0.04), 0.04, salt=977)
    else:  # speckled countertop: fine dots of many colours on a mottled stone base
        floor = S.Material((0.55, 0.50, 0.44), (0.78, 0.74, 0.68), 5.0, (0.06, 0.025), 0.6, salt=977)
    mats[0] = floor
    boxes = [S.Box("mug", (0.16, 0.05, 0.07), (0.10, 0.10, 0.14), 20.0, 7)]
    spheres = [S.Sphere("apple", (-0.03, -0.04, 0.09), 0.09, 3)]
    return S.SceneDef(seed=seed, hidden_region=False, boxes=boxes, spheres=spheres, materials=mats)


def _wiggle(t: np.ndarray, rng: np.random.Generator, amps, freqs) -> np.ndarray:
    out = np.zeros_like(t)
    for a, f in zip(amps, freqs):
        out = out + a * np.sin(2 * np.pi * (f * t + rng.random()))
    return out


def trajectory(mode: str, t, seed: int, duration: float) -> np.ndarray:
    """Camera-to-world 4x4 (OpenCV axes) at normalised times ``t`` in [0,1] (``duration`` s for the clip)."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    rng = np.random.default_rng([seed, 19])
    target = np.array(TARGET)[None] + np.stack(
        [_wiggle(t, rng, (0.02, 0.005), (0.9, 2.9)), _wiggle(t, rng, (0.02, 0.005), (0.8, 3.1)),
         _wiggle(t, rng, (0.01,), (1.2,))], 1)
    roll = _wiggle(t, rng, (2.0, 0.5), (0.8, 3.3))
    if mode == "rotation":  # stand still, pan and tilt
        eye = np.array([0.05, -0.95, 0.85])
        pan = np.radians(-25.0 + 50.0 * t)
        tilt = np.radians(-32.0 + 6.0 * np.sin(np.pi * t))
        d = np.stack([np.sin(pan) * np.cos(tilt), np.cos(pan) * np.cos(tilt), np.sin(tilt)], 1)
        return np.stack([S.look_at_c2w(eye, eye + di, r) for di, r in zip(d, roll)])
    ease = t + 0.03 * np.sin(2 * np.pi * t)
    az = np.radians(-190.0 + 200.0 * ease) + _wiggle(t, rng, (0.01,), (1.7,))
    radius = 0.85 - 0.25 * t + _wiggle(t, rng, (0.02, 0.005), (0.7, 3.3))
    height = 0.45 + 0.45 * t + _wiggle(t, rng, (0.02, 0.006), (1.1, 3.7))
    eye = np.stack([radius * np.cos(az), radius * np.sin(az), height], 1)
    if mode == "blur":  # hand tremor: a few mm at 9-13 Hz (a function of time in seconds)
        ts = t * duration
        eye = eye + np.stack([_wiggle(ts, rng, (0.003, 0.002), (9.0, 12.7)),
                              _wiggle(ts, rng, (0.003, 0.002), (10.3, 13.1)),
                              _wiggle(ts, rng, (0.002,), (11.1,))], 1)
        target = target + np.stack([_wiggle(ts, rng, (0.006,), (9.7,)), _wiggle(ts, rng, (0.006,), (11.9,)),
                                    np.zeros_like(ts)], 1)
    return np.stack([S.look_at_c2w(e, g, r) for e, g, r in zip(eye, target, roll)])


def heldout_poses(mode: str, seed: int) -> list[dict]:
    """Four views off the video path (higher, lower, closer), named view_000..."""
    views = []
    for i, (az, rad, hgt) in enumerate(((-120.0, 0.75, 1.0), (-40.0, 0.9, 0.35), (30.0, 0.55, 0.7),
                                        (-150.0, 0.65, 0.6))):
        a = math.radians(az)
        eye = np.array([rad * math.cos(a), rad * math.sin(a), hgt])
        views.append({"name": f"view_{i:03d}", "kind": "off_path", "c2w": S.look_at_c2w(eye, TARGET, 1.0)})
    return views


def _rays_rolling(c2ws: np.ndarray, fx, fy, cx, cy, width, height):
    """Rays of one image whose row r is seen from pose c2ws[r] (rolling shutter): origins, dirs [H*W,3]."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dc = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)  # [H,W,3]
    dirs = np.einsum("hwj,hij->hwi", dc, c2ws[:, :3, :3]).reshape(-1, 3)
    origins = np.repeat(c2ws[:, :3, 3], width, axis=0)
    return origins, dirs


def render_frame(scene, mode: str, t_mid: float, dt: float, seed: int, duration: float, width: int,
                 height: int):
    """RGB float [H,W,3] of the frame centred at normalised time ``t_mid`` (``dt`` = one frame interval)."""
    from spatialvid.sample import intrinsics

    fx, fy, cx, cy = intrinsics(width, height)
    if mode != "blur":
        c2w = trajectory(mode, t_mid, seed, duration)[0]
        return S.render(scene, c2w, fx, fy, cx, cy, width, height)[0]
    acc = np.zeros((height * width, 3))
    rows = (np.arange(height) + 0.5) / height - 0.5
    for s in range(BLUR_SUBFRAMES):
        ts = t_mid + dt * (EXPOSURE * ((s + 0.5) / BLUR_SUBFRAMES - 0.5) + READOUT * rows)
        c2ws = trajectory(mode, ts, seed, duration)
        o, d = _rays_rolling(c2ws, fx, fy, cx, cy, width, height)
        tt, prim, n = S.cast_rays(scene, o, d)
        acc += S.radiance(scene, o + tt[:, None] * d, prim, n)
    return (acc / BLUR_SUBFRAMES).reshape(height, width, 3)


def make_handheld_sample(out_dir: str | Path, mode: str, num_frames: int = 60, width: int = 320,
                         height: int = 240, seed: int = 0, progress: bool = True):
    """Render a hand-held test clip (``mode`` in :data:`MODES`) into ``out_dir``; returns a SampleInfo."""
    from tqdm import tqdm

    from spatialvid import sample as SM

    if mode not in MODES:
        raise SpatialvidError(f"--mode must be one of room, {', '.join(MODES)} (got {mode!r})")
    SM._check_args(num_frames, width, height, seed)
    num_frames, width, height, seed = int(num_frames), int(width), int(height), int(seed)
    out = Path(out_dir).resolve()
    SM._check_out_dir(out)
    t_start = time.perf_counter()
    scene = build_scene(mode, seed)
    fx, fy, cx, cy = SM.intrinsics(width, height)
    duration = num_frames / FPS
    ts = np.linspace(0.0, 1.0, num_frames)
    dt = 1.0 / max(num_frames - 1, 1)
    video_c2w = trajectory(mode, ts, seed, duration)
    views = heldout_poses(mode, seed)
    with atomic_dir(out) as tmp, tqdm(total=num_frames + len(views) + 1, desc=f"sample {mode}", unit="view",
                                      disable=not progress) as bar:
        (tmp / "images").mkdir()
        (tmp / "heldout" / "images").mkdir(parents=True)
        frames, depths = [], []
        for i, t in enumerate(ts):
            img = SM._to_u8(render_frame(scene, mode, float(t), dt, seed, duration, width, height))
            _, depth, _ = S.render(scene, video_c2w[i], fx, fy, cx, cy, width, height, need_rgb=False)
            SM._write_png(tmp / "images" / f"frame_{i:05d}.png", img)
            frames.append(img)
            depths.append(depth)
            bar.update(1)
        held_depths = []
        for v in views:
            rgb, depth, _ = S.render(scene, v["c2w"], fx, fy, cx, cy, width, height)
            SM._write_png(tmp / "heldout" / "images" / f"{v['name']}.png", SM._to_u8(rgb))
            held_depths.append(depth)
            bar.update(1)
        SM._write_video(tmp / "video.mp4", frames, fps=FPS)
        SM.write_npz(tmp / "depth.npz", depth=np.stack(depths))
        SM.write_npz(tmp / "heldout" / "depth.npz", depth=np.stack(held_depths))
        extra = {"spatialvid_sample": True, "fps": FPS, "mode": mode}
        (tmp / "transforms.json").write_text(json.dumps(SM.transforms_dict(
            video_c2w, [f"images/frame_{i:05d}.png" for i in range(num_frames)], width, height, extra),
            indent=2) + "\n")
        (tmp / "heldout" / "transforms.json").write_text(json.dumps(SM.transforms_dict(
            np.stack([v["c2w"] for v in views]), [f"images/{v['name']}.png" for v in views], width, height,
            {"spatialvid_sample": True, "mode": mode}), indent=2) + "\n")
        lo, hi = scene.objects_bounds()
        floor_px = _floor_fraction(scene, video_c2w[:: max(1, num_frames // 10)], fx, fy, cx, cy, width, height)
        meta = {
            "format": SM.FORMAT, "version": SM.FORMAT_VERSION, "mode": mode, "seed": seed,
            "num_frames": num_frames, "width": width, "height": height, "fps": FPS, "supersampling": 1,
            "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
            "units": "metres", "up_axis": "+z", "world": "z up; cameras OpenCV in code, OpenGL in transforms.json",
            "scene_center": list(TARGET), "objects_bounds": {"min": lo.tolist(), "max": hi.tolist()},
            "room_bounds": {"min": list(S.ROOM_LO), "max": list(S.ROOM_HI)},
            "objects": scene.describe(), "floor_pixel_fraction": round(floor_px, 4),
            "trajectory": _TRAJECTORY_TEXT[mode],
            "motion_blur": ({"subframes": BLUR_SUBFRAMES, "exposure": EXPOSURE, "rolling_shutter_readout": READOUT,
                             "tremor_hz": [9.0, 13.1]} if mode == "blur" else None),
            "ground_truth_pose": "middle of the exposure, middle image row",
            "heldout": [{"name": v["name"], "kind": v["kind"], "file_path": f"images/{v['name']}.png"}
                        for v in views],
            "files": {"video": "video.mp4", "images": "images/", "transforms": "transforms.json",
                      "depth": "depth.npz (key 'depth': float32 [F,H,W] camera z, metres)",
                      "heldout": "heldout/ (images/, transforms.json, depth.npz)"},
        }
        (tmp / "sample.json").write_text(json.dumps(meta, indent=2) + "\n")
        bar.update(1)
    return SM.SampleInfo(
        out_dir=out, video=out / "video.mp4", images_dir=out / "images", transforms=out / "transforms.json",
        depth=out / "depth.npz", heldout_dir=out / "heldout", heldout_transforms=out / "heldout" / "transforms.json",
        unseen_masks=None, hidden_masks=None, gt_gaussians=None, sample_json=out / "sample.json",
        num_frames=num_frames, num_heldout=len(views), width=width, height=height, num_gaussians=0,
        hidden_region=False, seed=seed, seconds=time.perf_counter() - t_start)


_TRAJECTORY_TEXT = {
    "table": "200-degree arc around and over the objects (radius 0.85 -> 0.6 m, eye height 0.45 -> 0.9 m)",
    "low-texture": "as table, over a nearly plain floor",
    "blur": "as table, plus 9-13 Hz hand tremor, motion blur and a rolling shutter",
    "rotation": "standing still at (0.05, -0.95, 0.85) m, panning 50 degrees and tilting: pure rotation",
}


def _floor_fraction(scene, c2ws, fx, fy, cx, cy, width, height) -> float:
    """Mean fraction of pixels that show the floor (primitive FLOOR) over the given views."""
    fr = []
    for c2w in c2ws:
        _, _, prim = S.render(scene, c2w, fx, fy, cx, cy, width, height, need_rgb=False)
        fr.append(float(np.mean(prim == S.FLOOR)))
    return float(np.mean(fr))


