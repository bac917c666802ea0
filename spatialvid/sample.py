"""The bundled synthetic sample: a small textured room, a hand-held-like video of it, and exact ground truth.

``make_sample(out_dir)`` ray casts the analytic scene of :mod:`spatialvid._sample_scene` (z-up world,
metres) and writes::

    OUT_DIR/
      video.mp4                 H.264 yuv420p, ``num_frames`` frames at 30 fps
      images/frame_00000.png    the same frames, lossless
      transforms.json           nerfstudio: OpenGL camera-to-world, fl_x fl_y cx cy w h, OPENCV, zero distortion
      depth.npz                 "depth": float32 [F,H,W] camera z-depth (metres); every ray hits (closed room)
      heldout/images/view_000.png, heldout/transforms.json, heldout/depth.npz
      heldout/unseen_masks.npz  "masks" bool [V,H,W]: pixels showing surfaces no video frame sees; "names"
      heldout/hidden_masks.npz  (``hidden_region=True`` only) pixels showing the hidden objects
      gt_gaussians.ply          3DGS PLY sampled from the analytic surfaces (renders close to the images)
      sample.json               what is where: scene centre/extent, up axis, objects, held-out views

Images at or below 160x120 px are anti-aliased with 2x2 samples per pixel (depth and masks are taken at the
pixel centres). Everything is deterministic for a given seed: PNG, NPZ, PLY and JSON files are byte-identical
across runs (the mp4 too, for the same PyAV/x264 build).
With ``hidden_region=True`` two extra objects stand behind the cabinet where no video frame sees them
(checked by ray casting) while several held-out views do; the video frames are then identical to those of
the plain variant.
"""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spatialvid import _sample_scene as S
from spatialvid.atomic import atomic_dir
from spatialvid.errors import SpatialvidError

FPS = 30
FORMAT = "spatialvid-sample"
FORMAT_VERSION = 1
MAX_GAUSSIANS = 150_000


@dataclass
class SampleInfo:
    """Paths and counts of a generated sample (all paths absolute)."""

    out_dir: Path
    video: Path
    images_dir: Path
    transforms: Path
    depth: Path
    heldout_dir: Path
    heldout_transforms: Path
    unseen_masks: Path
    hidden_masks: Path | None
    gt_gaussians: Path
    sample_json: Path
    num_frames: int
    num_heldout: int
    width: int
    height: int
    num_gaussians: int
    hidden_region: bool
    seed: int
    seconds: float


# ---------------------------------------------------------------------------------------------------
# Cameras: trajectory and held-out views
# ---------------------------------------------------------------------------------------------------
def intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels: square pixels, fx = 0.9 * width, principal point at the image centre."""
    f = 0.9 * width
    return f, f, width / 2.0, height / 2.0


def _wiggle(t: np.ndarray, rng: np.random.Generator, amps, freqs) -> np.ndarray:
    """Smooth pseudo-random signal: a sum of sinusoids with random phases (a function of t only)."""
    out = np.zeros_like(t)
    for a, f in zip(amps, freqs):
        out = out + a * np.sin(2 * np.pi * (f * t + rng.random()))
    return out


def trajectory_pose(t: np.ndarray, seed: int) -> np.ndarray:
    """Camera-to-world 4x4 (OpenCV axes) at normalised times ``t`` in [0,1] along the hand-held arc.

    The camera walks an arc of 120 degrees on the -y side of the room (azimuth -150 -> -30 degrees, radius
    ~2.55 m, eye height ~1.45 m), looking at the scene centre, with smooth bobbing, sway and roll.
    """
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    rng = np.random.default_rng([seed, 7])
    ease = t + 0.04 * np.sin(2 * np.pi * t)  # uneven walking speed, still monotone
    az = np.radians(-150.0 + 120.0 * ease) + _wiggle(t, rng, (0.012, 0.004), (1.3, 4.1))
    radius = 2.55 + _wiggle(t, rng, (0.10, 0.02), (0.7, 3.3))
    height = 1.45 + _wiggle(t, rng, (0.06, 0.015, 0.006), (1.1, 3.7, 7.9))
    target = np.array(S.SCENE_CENTER)[None] + np.stack(
        [_wiggle(t, rng, (0.10, 0.02), (0.9, 2.9)), _wiggle(t, rng, (0.08, 0.02), (0.8, 3.1)),
         _wiggle(t, rng, (0.05, 0.01), (1.2, 4.3))], 1)
    roll = _wiggle(t, rng, (1.5, 0.4), (1.0, 3.9))
    eye = np.stack([radius * np.cos(az), radius * np.sin(az), height], 1)
    return np.stack([S.look_at_c2w(e, g, r) for e, g, r in zip(eye, target, roll)])


def heldout_views(num_frames: int, seed: int) -> list[dict]:
    """Eight held-out views: 3 between video frames, 2 off the path, 3 from the far (+y) side of the room.

    Each is ``{"name", "kind", "c2w" (4x4 OpenCV camera-to-world)}``.
    """
    views = []
    n = max(num_frames - 1, 1)
    for i in (num_frames // 5, num_frames // 2, (4 * num_frames) // 5):
        t = min((i + 0.5) / n, 1.0)
        views.append({"kind": "between_frames", "t": t, "c2w": trajectory_pose(t, seed)[0]})
    low = trajectory_pose(0.35, seed)[0].copy()
    views.append({"kind": "off_path_low", "c2w": S.look_at_c2w(
        low[:3, 3] * np.array([1.05, 1.05, 0.0]) + np.array([0, 0, 0.75]), (0.0, 0.2, 0.35), -2.0)})
    views.append({"kind": "off_path_high", "c2w": S.look_at_c2w(
        np.array([2.0 * math.cos(math.radians(-75)), 2.0 * math.sin(math.radians(-75)), 2.45]),
        (0.0, 0.3, 0.2), 1.0)})
    views.append({"kind": "far_side", "c2w": S.look_at_c2w((2.75, 2.55, 1.35), (0.0, 1.6, 0.35), 0.0)})
    views.append({"kind": "far_side", "c2w": S.look_at_c2w((-2.8, 2.35, 1.55), (0.1, 1.5, 0.3), 1.5)})
    views.append({"kind": "far_side", "c2w": S.look_at_c2w((0.6, 3.0, 2.35), (-0.1, 0.9, 0.25), -1.0)})
    for i, v in enumerate(views):
        v["name"] = f"view_{i:03d}"
    return views


# ---------------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------------
def _c2w_gl(c2w_cv: np.ndarray) -> list[list[float]]:
    """OpenCV camera-to-world -> nerfstudio/OpenGL camera-to-world (flip the camera y and z axes)."""
    return (c2w_cv @ np.diag([1.0, -1.0, -1.0, 1.0])).tolist()


def transforms_dict(c2ws: np.ndarray, file_paths: list[str], width: int, height: int, extra=None) -> dict:
    """A nerfstudio ``transforms.json`` dict for pinhole cameras sharing intrinsics."""
    fx, fy, cx, cy = intrinsics(width, height)
    d = {"camera_model": "OPENCV", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": width, "h": height,
         "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    d.update(extra or {})
    d["frames"] = [{"file_path": fp, "transform_matrix": _c2w_gl(m)} for fp, m in zip(file_paths, c2ws)]
    return d


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Compressed ``.npz`` with fixed zip timestamps, so equal arrays give byte-identical files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            body = io.BytesIO()
            np.lib.format.write_array(body, np.asarray(arr), allow_pickle=False)
            zf.writestr(info, body.getvalue(), compresslevel=1)  # fast: depth maps hardly compress anyway
    Path(path).write_bytes(buf.getvalue())


def _write_png(path: Path, rgb8: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb8).save(path, format="PNG", compress_level=1)


def _write_video(path: Path, frames: list[np.ndarray], fps: int = FPS, crf: int = 12) -> None:
    """H.264 (libx264, yuv420p, high quality) mp4 via PyAV."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def supersampling(width: int, height: int) -> int:
    """Anti-aliasing factor: small images (<= 160x120 px) are rendered at 2x2 samples per pixel."""
    return 2 if width * height <= 160 * 120 else 1


def render_view(scene: S.SceneDef, c2w: np.ndarray, width: int, height: int, ss: int = 1):
    """Ground-truth view: rgb float [H,W,3] (averaged over ss x ss samples per pixel), z-depth [H,W] and
    primitive id [H,W] at the pixel centres, and the primitive ids of all colour samples [H*ss,W*ss]."""
    fx, fy, cx, cy = intrinsics(width, height)
    if ss == 1:
        rgb, depth, prim = S.render(scene, c2w, fx, fy, cx, cy, width, height)
        return rgb, depth, prim, prim
    rgb, _, prim_ss = S.render(scene, c2w, fx * ss, fy * ss, cx * ss, cy * ss, width * ss, height * ss)
    rgb = rgb.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
    _, depth, prim = S.render(scene, c2w, fx, fy, cx, cy, width, height, need_rgb=False)
    return rgb, depth, prim, prim_ss


def _to_u8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def unseen_mask(points: np.ndarray, video_c2w: np.ndarray, video_depth: np.ndarray, fx: float, fy: float,
                cx: float, cy: float) -> np.ndarray:
    """[P] bool: world points that no video frame sees (outside every frustum, or occluded in every frame).

    A point counts as seen by a frame when its camera z lies within the range of that frame's depth at the
    2x2 pixel centres around its projection (tolerance 2 cm + 1 %), so grazing surfaces are handled; within
    about a pixel of occlusion edges the answer is approximate.
    """
    f, h, w = video_depth.shape
    seen = np.zeros(len(points), dtype=bool)
    for j in range(f):
        cam = S.mat3(points - video_c2w[j, :3, 3], video_c2w[j, :3, :3])
        z = cam[:, 2]
        zs = np.where(z > 1e-6, z, 1.0)
        uf = fx * cam[:, 0] / zs + cx - 0.5  # continuous pixel-centre coordinates
        vf = fy * cam[:, 1] / zs + cy - 0.5
        ok = (z > 1e-3) & (uf > -0.5) & (uf < w - 0.5) & (vf > -0.5) & (vf < h - 0.5)
        u0 = np.clip(np.floor(uf).astype(np.int64), 0, w - 1)
        v0 = np.clip(np.floor(vf).astype(np.int64), 0, h - 1)
        u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
        d4 = np.stack([video_depth[j, v0, u0], video_depth[j, v0, u1], video_depth[j, v1, u0],
                       video_depth[j, v1, u1]])
        tol = 0.02 + 0.01 * z
        seen |= ok & (z > d4.min(0) - tol) & (z < d4.max(0) + tol)
    return ~seen


# ---------------------------------------------------------------------------------------------------
# make_sample
# ---------------------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_args(num_frames: int, width: int, height: int, seed: int) -> None:
    if not _is_int(num_frames) or not 2 <= num_frames <= 2000:
        raise SpatialvidError(f"--frames (num_frames) must be an integer in 2..2000, got {num_frames!r}")
    for name, v in (("width", width), ("height", height)):
        if not _is_int(v) or not 32 <= v <= 4096:
            raise SpatialvidError(f"--{name} must be an integer in 32..4096, got {v!r}")
        if v % 2:
            raise SpatialvidError(f"--{name} must be even (H.264 yuv420p needs even sizes), got {v}")
    if not _is_int(seed) or seed < 0:
        raise SpatialvidError(f"--seed must be a non-negative integer, got {seed!r}")


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SpatialvidError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "sample.json").is_file():
        raise SpatialvidError(f"{out} is not empty and is not a spatialvid sample; "
                              "choose a new or empty folder (an existing sample is replaced)")


def make_sample(out_dir: str | Path, hidden_region: bool = False, num_frames: int = 60, width: int = 320,
                height: int = 240, seed: int = 0, progress: bool = True) -> SampleInfo:
    """Render the synthetic sample into ``out_dir`` (see the module docstring for the layout).

    The folder is built next to ``out_dir`` and swapped in when complete; an existing sample there is
    replaced, any other non-empty folder is refused. Raises :class:`SpatialvidError` on bad arguments.
    """
    from tqdm import tqdm

    _check_args(num_frames, width, height, seed)
    num_frames, width, height, seed = int(num_frames), int(width), int(height), int(seed)
    out = Path(out_dir).resolve()
    _check_out_dir(out)
    t_start = time.perf_counter()
    scene = S.build_scene(seed, hidden_region)
    fx, fy, cx, cy = intrinsics(width, height)
    video_c2w = trajectory_pose(np.linspace(0.0, 1.0, num_frames), seed)
    views = heldout_views(num_frames, seed)
    held_c2w = np.stack([v["c2w"] for v in views])
    hidden_ids = scene.hidden_ids()

    total = num_frames + len(views) + 3
    with atomic_dir(out) as tmp, tqdm(total=total, desc="sample", unit="view", disable=not progress) as bar:
        (tmp / "images").mkdir()
        (tmp / "heldout" / "images").mkdir(parents=True)
        frames, depths = [], []
        hidden_px_video = 0
        ss = supersampling(width, height)
        for i, c2w in enumerate(video_c2w):
            rgb, depth, _, prim_samples = render_view(scene, c2w, width, height, ss)
            img = _to_u8(rgb)
            _write_png(tmp / "images" / f"frame_{i:05d}.png", img)
            frames.append(img)
            depths.append(depth)
            hidden_px_video += int(np.isin(prim_samples, hidden_ids).sum())
            bar.update(1)
        if hidden_px_video:
            raise SpatialvidError(
                f"the hidden region shows in {hidden_px_video} video pixels at {width}x{height}; "
                "use an aspect ratio closer to 4:3")
        video_depth = np.stack(depths)
        held_depths, hidden_masks, unseen_masks = [], [], []
        for v in views:
            rgb, depth, prim, _ = render_view(scene, v["c2w"], width, height, ss)
            _write_png(tmp / "heldout" / "images" / f"{v['name']}.png", _to_u8(rgb))
            held_depths.append(depth)
            hidden_masks.append(np.isin(prim, hidden_ids))
            o, d = S.camera_rays(v["c2w"], fx, fy, cx, cy, width, height)
            pts = o + depth.reshape(-1, 1).astype(np.float64) * d
            unseen_masks.append(unseen_mask(pts, video_c2w, video_depth, fx, fy, cx, cy).reshape(height, width))
            bar.update(1)

        bar.set_postfix_str("video")
        _write_video(tmp / "video.mp4", frames)
        bar.update(1)
        write_npz(tmp / "depth.npz", depth=video_depth)
        write_npz(tmp / "heldout" / "depth.npz", depth=np.stack(held_depths))
        names = np.array([v["name"] for v in views])
        write_npz(tmp / "heldout" / "unseen_masks.npz", masks=np.stack(unseen_masks), names=names)
        if hidden_region:
            write_npz(tmp / "heldout" / "hidden_masks.npz", masks=np.stack(hidden_masks), names=names)

        bar.set_postfix_str("gaussians")
        from spatialvid import _sample_gaussians as G

        step = max(1, num_frames // 20)
        vs = G.ViewSet(np.concatenate([video_c2w[::step], held_c2w]),
                       np.concatenate([video_depth[::step], np.stack(held_depths)]), fx, fy, cx, cy)
        gaussians, gstats = G.sample_gaussians_capped(scene, vs, MAX_GAUSSIANS, k_px=3.0)
        from spatialvid.formats.ply import write_ply

        write_ply(tmp / "gt_gaussians.ply", gaussians)
        bar.update(1)

        info_extra = {"spatialvid_sample": True, "fps": FPS}
        (tmp / "transforms.json").write_text(json.dumps(transforms_dict(
            video_c2w, [f"images/frame_{i:05d}.png" for i in range(num_frames)], width, height, info_extra),
            indent=2) + "\n")
        (tmp / "heldout" / "transforms.json").write_text(json.dumps(transforms_dict(
            held_c2w, [f"images/{v['name']}.png" for v in views], width, height, {"spatialvid_sample": True}),
            indent=2) + "\n")
        lo, hi = scene.objects_bounds()
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION, "seed": seed, "hidden_region": hidden_region,
            "num_frames": num_frames, "width": width, "height": height, "fps": FPS, "supersampling": ss,
            "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
            "units": "metres", "up_axis": "+z", "world": "z up; cameras OpenCV in code, OpenGL in transforms.json",
            "scene_center": list(S.SCENE_CENTER),
            "objects_bounds": {"min": lo.tolist(), "max": hi.tolist()},
            "scene_radius": round(float(np.linalg.norm(np.maximum(np.abs(lo - S.SCENE_CENTER),
                                                                  np.abs(hi - S.SCENE_CENTER)))), 4),
            "room_bounds": {"min": list(S.ROOM_LO), "max": list(S.ROOM_HI)},
            "objects": scene.describe(),
            "light": {"direction": S.LIGHT_DIR.tolist(), "ambient": S.AMBIENT, "model": "lambertian"},
            "trajectory": "arc of 120 deg (azimuth -150..-30 deg) around the scene centre on the -y side, "
                          "radius ~2.55 m, eye height ~1.45 m, smooth bobbing/sway/roll",
            "heldout": [{"name": v["name"], "kind": v["kind"], "file_path": f"images/{v['name']}.png",
                         "hidden_pixels": int(m.sum()), "sees_hidden": bool(m.any()),
                         "unseen_fraction": round(float(u.mean()), 4)}
                        for v, m, u in zip(views, hidden_masks, unseen_masks)],
            "hidden": ({"object_ids": hidden_ids, "names": [scene.prim_names[i] for i in hidden_ids],
                        "video_pixels": hidden_px_video,
                        "views": [v["name"] for v, m in zip(views, hidden_masks) if m.any()],
                        "masks": "heldout/hidden_masks.npz"} if hidden_region else None),
            "gt_gaussians": {"count": len(gaussians), **{k: v for k, v in gstats.items() if k != "num_gaussians"}},
            "files": {"video": "video.mp4", "images": "images/", "transforms": "transforms.json",
                      "depth": "depth.npz (key 'depth': float32 [F,H,W] camera z, metres)",
                      "heldout": "heldout/ (images/, transforms.json, depth.npz, unseen_masks.npz"
                                 + (", hidden_masks.npz)" if hidden_region else ")"),
                      "gt_gaussians": "gt_gaussians.ply"},
        }
        (tmp / "sample.json").write_text(json.dumps(meta, indent=2) + "\n")
        bar.update(1)
    seconds = time.perf_counter() - t_start
    return SampleInfo(
        out_dir=out, video=out / "video.mp4", images_dir=out / "images", transforms=out / "transforms.json",
        depth=out / "depth.npz", heldout_dir=out / "heldout", heldout_transforms=out / "heldout" / "transforms.json",
        unseen_masks=out / "heldout" / "unseen_masks.npz",
        hidden_masks=(out / "heldout" / "hidden_masks.npz") if hidden_region else None,
        gt_gaussians=out / "gt_gaussians.ply", sample_json=out / "sample.json", num_frames=num_frames,
        num_heldout=len(views), width=width, height=height, num_gaussians=len(gaussians),
        hidden_region=hidden_region, seed=seed, seconds=seconds)


def video_visible_scene(root: str | Path):
    """The sample's ground-truth Gaussians minus every one that no video frame sees (a depth test against
    the frames' z-depth in depth.npz), as a Scene with the video's cameras: with ``--hidden-region`` the
    hidden objects and the floor behind the cabinet become real holes, a test bed for ``fill``."""
    import torch

    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.formats.ply import read_ply
    from spatialvid.scene import Scene

    root = Path(root)
    gt = read_ply(root / "gt_gaussians.ply")
    vid = read_transforms(root / "transforms.json")
    vd = torch.from_numpy(np.load(root / "depth.npz")["depth"])
    f, h, w = vd.shape
    uv, z = vid.project(gt.means)
    u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (z > 0.05) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    dz = vd[torch.arange(f)[:, None].expand_as(u), v.clamp(0, h - 1), u.clamp(0, w - 1)]
    seen = (inside & ((z - dz).abs() < 0.02 + 0.02 * z)).any(0)
    return Scene(gt[seen], vid, {"up": [0, 0, 1]}, [])


def info_dict(info: SampleInfo) -> dict:
    """JSON-friendly :class:`SampleInfo`."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}
