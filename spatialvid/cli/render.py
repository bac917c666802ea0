"""`spatialvid render`: render a scene along a camera path to video (H.264 mp4) or PNG images."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spatialvid.cli._common import add_parser
from spatialvid.errors import SpatialvidError

OUTPUTS = ("rgb", "depth", "alpha", "coverage")
BACKENDS = ("auto", "cpu", "cuda", "torch")
DEFAULT_SECONDS = 6.0

DESCRIPTION = """\
Render a scene along a camera path to video or images (like nerfstudio's ns-render).

Inputs:
  SCENE_DIR            a scene folder (gaussians.ply, transforms.json, scene.json)
  --path               a nerfstudio camera_path.json (renders exactly its frames), or a generator:
                         orbit  - circle around the scene centre at the cameras' mean height and radius
                         spiral - forward-facing LLFF-style spiral (for front-facing captures)
                         train  - smooth spline through the training cameras, in capture order
Outputs (-o OUT):
  OUT.mp4              H.264 video of the RGB output; other outputs go next to it as OUT_depth.mp4,
                       OUT_alpha.mp4, OUT_coverage.mp4; OUT.render.json records frames, fps, size and the
                       colour-map ranges
  OUT (a folder)       PNG sequences OUT/rgb/00000.png, OUT/depth/..., plus OUT/render.json
  Depth is expected camera-space z (scene units) colour-mapped (turbo: near = blue, far = red) over a fixed
  range for the whole video (estimated from a few frames unless --depth-range), faded to black where
  nothing is rendered. Alpha is grey (0..1). Coverage (Gaussians per pixel) uses viridis over 0..max.
Files are written atomically (temporary file, then rename).
"""

EPILOG = """\
Examples:
  spatialvid render scenes/sample --path orbit -o orbit.mp4 --seconds 8 --resolution 640x480
  spatialvid render scenes/sample --path camera_path.json -o frames/ --outputs rgb,depth
  spatialvid render scenes/fox --path train -o train.mp4 --resolution 0.5 --save-path train_path.json
"""


def register(sub) -> None:
    from spatialvid.device import add_device_argument

    p = add_parser(sub, "render", help="Render a scene along a camera path to video or images",
                   description=DESCRIPTION)
    p.epilog = EPILOG
    p.add_argument("scene", metavar="SCENE_DIR", help="scene folder to render")
    p.add_argument("--path", default="orbit", metavar="FILE|orbit|spiral|train",
                   help="camera path: a nerfstudio camera_path.json or a generator name (default: orbit)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output .mp4/.mov/.mkv file, or a folder for PNG sequences")
    p.add_argument("--fps", type=float, default=None,
                   help="frames per second (default: the path file's fps, else 30)")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"duration of a generated path (default: {DEFAULT_SECONDS:g} s for orbit/spiral, one frame "
                        "per training camera for train); not allowed with a path file (it fixes the frames)")
    p.add_argument("--frames", type=int, default=None, help="number of frames of a generated path (instead of --seconds)")
    p.add_argument("--resolution", default=None, metavar="WxH|SCALE",
                   help="output size, e.g. 1280x720, or a scale of the default size, e.g. 0.5 (default: the path "
                        "file's size, else the first training camera's); vertical field of view is kept")
    p.add_argument("--outputs", default="rgb", help=f"comma-separated subset of {','.join(OUTPUTS)} (default: rgb)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="rasterizer backend (default: auto = the kernels of the --device)")
    add_device_argument(p, "the scene's Gaussians")
    p.add_argument("--background", default=None,
                   help="background colour: black, white, gray, #rrggbb or r,g,b (default: the scene's, else black)")
    p.add_argument("--sh-degree", type=int, default=None, help="spherical-harmonics degree to use (default: all)")
    p.add_argument("--depth-range", default=None, metavar="NEAR,FAR",
                   help="depth colour-map range in scene units (default: 2nd-98th percentile of a few frames)")
    p.add_argument("--colormap", default="turbo", choices=("turbo", "viridis", "gray"),
                   help="colour map for depth (default: turbo)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality, 0 (lossless) .. 51 (default: 18)")
    p.add_argument("--up", default=None, metavar="X,Y,Z",
                   help="world up for orbit (default: the scene's metadata 'up', else the cameras' mean up)")
    p.add_argument("--constant-speed", action="store_true", help="train path: move at constant speed")
    p.add_argument("--fill", action="store_true",
                   help="before each frame, let generation fill what that camera sees but the scene does not cover "
                        "(spatialvid.generate.fill_view); the scene on disk is not changed")
    p.add_argument("--save-path", default=None, metavar="FILE",
                   help="also write the camera path used as nerfstudio camera_path.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ---- argument parsing helpers ------------------------------------------------------------------------
def parse_outputs(text: str) -> list[str]:
    items = [s.strip().lower() for s in str(text).split(",") if s.strip()]
    bad = [s for s in items if s not in OUTPUTS]
    if bad or not items:
        raise SpatialvidError(f"--outputs: unknown {', '.join(bad) or '(empty)'}; choose from {','.join(OUTPUTS)}")
    return list(dict.fromkeys(items))


def parse_resolution(text: str | None, default_wh: tuple[int, int], even: bool) -> tuple[int, int]:
    """'WxH' -> (W, H); 'SCALE' -> default size times SCALE (rounded to even for video)."""
    if text is None:
        w, h = default_wh
        if even:
            w, h = w - w % 2, h - h % 2
        return max(w, 2), max(h, 2)
    s = str(text).lower().strip()
    try:
        if "x" in s:
            ws, hs = s.split("x")
            w, h = int(ws), int(hs)
        else:
            f = float(s)
            if not (np.isfinite(f) and f > 0):
                raise ValueError
            w, h = (int(round(default_wh[0] * f)), int(round(default_wh[1] * f)))
            if even:
                w, h = w - w % 2, h - h % 2
            w, h = max(w, 2), max(h, 2)
    except ValueError:
        raise SpatialvidError(f"--resolution {text!r}: use WxH (e.g. 1280x720) or a scale (e.g. 0.5)") from None
    if w <= 0 or h <= 0:
        raise SpatialvidError(f"--resolution {text!r}: width and height must be positive")
    if even and (w % 2 or h % 2):
        raise SpatialvidError(f"--resolution {w}x{h}: H.264 video needs an even width and height "
                              "(or write PNGs to a folder)")
    return w, h


def parse_floats(text: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        vals = []
    if len(vals) != n or not all(np.isfinite(vals)):
        raise SpatialvidError(f"{what} {text!r}: expected {n} comma-separated numbers")
    return vals


def output_files(out: Path, outputs: list[str]) -> dict[str, Path]:
    """Where each output goes: OUT.mp4 + OUT_depth.mp4 ..., or OUT/rgb, OUT/depth ... folders."""
    from spatialvid.render.video import is_video_path

    if is_video_path(out):
        return {k: (out if k == "rgb" else out.with_name(f"{out.stem}_{k}{out.suffix}")) for k in outputs}
    return {k: out / k for k in outputs}


def sidecar_path(out: Path) -> Path:
    from spatialvid.render.video import is_video_path

    return out.with_name(f"{out.stem}.render.json") if is_video_path(out) else out / "render.json"


# ---- the path ----------------------------------------------------------------------------------------
def resolve_up(scene, override: str | None) -> tuple[np.ndarray, str]:
    """World up for generators: --up, else scene metadata (if it agrees with the cameras), else cameras' mean."""
    from spatialvid.paths import mean_up

    if override is not None:
        u = np.asarray(parse_floats(override, 3, "--up"))
        if np.linalg.norm(u) < 1e-9:
            raise SpatialvidError(f"--up {override!r} is not a direction")
        return u / np.linalg.norm(u), "--up"
    cam_up = mean_up(scene.cameras)
    meta = scene.metadata.get("up")
    if meta is not None:
        u = np.asarray(meta, dtype=np.float64).reshape(-1)
        if u.shape == (3,) and np.isfinite(u).all() and np.linalg.norm(u) > 1e-9:
            u = u / np.linalg.norm(u)
            if float(u @ cam_up) > 0.3:
                return u, "scene metadata"
    return cam_up, "cameras' mean up"


def build_path(scene, args, video: bool):
    """(CameraPath, description) from --path and the size/timing options."""
    from spatialvid.paths import GENERATORS, orbit, read_camera_path, spiral, train

    spec = str(args.path)
    if spec in GENERATORS:
        fps = float(args.fps) if args.fps is not None else 30.0
        if not fps > 0:
            raise SpatialvidError(f"--fps must be positive, got {fps}")
        if args.frames is not None:
            n = int(args.frames)
        elif args.seconds is not None:
            n = int(round(float(args.seconds) * fps))
        else:
            n = len(scene.cameras) if spec == "train" else int(round(DEFAULT_SECONDS * fps))
        if n < 1:
            raise SpatialvidError(f"the path would have {n} frames; give --seconds/--frames > 0")
        cams = scene.cameras
        default_wh = (int(cams.width[0]), int(cams.height[0]))
        w, h = parse_resolution(args.resolution, default_wh, even=video)
        g = scene.gaussians
        pts = g.means.detach()[g.opacities.detach() > 0.2].cpu().numpy() if len(g) else None
        if pts is not None and len(pts) > 200_000:
            pts = pts[np.random.default_rng(0).choice(len(pts), 200_000, replace=False)]
        if spec == "orbit":
            up, src = resolve_up(scene, args.up)
            path = orbit(cams, n, fps=fps, up=up, points=pts, width=w, height=h)
            desc = f"orbit ({n} frames, up {np.round(up, 3).tolist()} from {src})"
        elif spec == "spiral":
            path = spiral(cams, n, fps=fps, points=pts, width=w, height=h)
            desc = f"spiral ({n} frames)"
        else:
            path = train(cams, n, fps=fps, width=w, height=h, constant_speed=args.constant_speed)
            desc = f"train ({n} frames through {len(path.keyframes)} of {len(cams)} training cameras)"
        return path, desc
    p = Path(spec)
    if p.suffix.lower() != ".json" and not p.exists():
        raise SpatialvidError(f"--path {spec!r}: not a file and not one of {', '.join(GENERATORS)}")
    if args.seconds is not None or args.frames is not None:
        raise SpatialvidError("--seconds/--frames apply to generated paths; a camera_path.json fixes its frames "
                              "(use --fps to change the playback rate)")
    path = read_camera_path(p)
    if args.fps is not None:
        if not args.fps > 0:
            raise SpatialvidError(f"--fps must be positive, got {args.fps}")
        path.fps = float(args.fps)
    w, h = parse_resolution(args.resolution, (path.width, path.height), even=video)
    if (w, h) != (path.width, path.height):
        path = path.with_resolution(w, h)
    return path, f"{p} ({len(path)} frames)"


# ---- rendering ---------------------------------------------------------------------------------------
@dataclass
class RenderSummary:
    frames: int
    seconds: float
    files: dict[str, str]
    ranges: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def _estimate_ranges(scene, cams, outputs, depth_range, colormap, render_kw) -> dict[str, Any]:
    """Fixed colour-map ranges for depth/coverage from up to 5 low-resolution frames along the path."""
    from spatialvid.render.api import render_scene
    from spatialvid.render.colormap import ValueRange, estimate_depth_range

    ranges: dict[str, Any] = {}
    need_depth = "depth" in outputs and depth_range is None
    if need_depth or "coverage" in outputs:
        idx = np.unique(np.linspace(0, len(cams) - 1, min(5, len(cams))).round().astype(int))
        w = int(cams.width[0])
        scale = min(1.0, 256.0 / max(w, int(cams.height[0])))
        samples = [render_scene(scene, cams[int(i)].scaled(scale), **render_kw) for i in idx]
        if "depth" in outputs:
            if depth_range is None:
                near, far = estimate_depth_range([s.depth for s in samples], [s.alpha for s in samples])
                how = "2nd-98th percentile of covered pixels in a few frames"
            else:
                near, far = depth_range
                how = "--depth-range"
            ranges["depth"] = ValueRange(near, far, colormap)
            ranges["depth_how"] = how
        if "coverage" in outputs:
            top = max(1.0, float(np.percentile(np.concatenate([s.coverage.ravel() for s in samples]), 99.5)) * 1.5)
            ranges["coverage"] = ValueRange(0.0, float(np.ceil(top)), "viridis")
    elif "depth" in outputs:
        ranges["depth"] = ValueRange(depth_range[0], depth_range[1], colormap)
        ranges["depth_how"] = "--depth-range"
    return ranges


def frame_images(result, outputs, ranges) -> dict[str, np.ndarray]:
    """The images to write for one :class:`~spatialvid.render.api.RenderResult`."""
    from spatialvid.render.colormap import apply_colormap, colorize_depth

    out = {}
    for k in outputs:
        if k == "rgb":
            out[k] = result.rgb
        elif k == "depth":
            out[k] = colorize_depth(result.depth, result.alpha, ranges["depth"])
        elif k == "alpha":
            out[k] = result.alpha
        else:
            out[k] = apply_colormap(ranges["coverage"].normalize(result.coverage), "viridis")
    return out


def render_path_to_files(scene, path, out: str | Path, outputs=("rgb",), *, backend: str = "auto",
                         background=None, sh_degree: int | None = None, depth_range=None,
                         colormap: str = "turbo", crf: int = 18, fill: bool = False, progress: bool = True,
                         extra_info: dict | None = None) -> RenderSummary:
    """Render every frame of ``path`` (a :class:`~spatialvid.paths.CameraPath`) and write the outputs.

    Returns a :class:`RenderSummary` (frames, wall seconds, files, colour-map ranges). The sidecar JSON
    (``OUT.render.json`` or ``OUT/render.json``) records the same.
    """
    from tqdm import tqdm

    from spatialvid.atomic import atomic_dir
    from spatialvid.render.api import parse_background, render_scene
    from spatialvid.render.video import VideoWriter, _default_mode, is_video_path

    out = Path(out)
    outputs = parse_outputs(",".join(outputs)) if not isinstance(outputs, str) else parse_outputs(outputs)
    video = is_video_path(out)
    path.validate("camera path")
    bg = parse_background(background if background is not None else scene.metadata.get("background"))
    fill_fn = _fill_function() if fill else None
    cams = path.cameras()
    render_kw = {"background": bg, "sh_degree": sh_degree, "backend": backend}
    t0 = time.perf_counter()
    ranges = _estimate_ranges(scene, cams, outputs, depth_range, colormap, render_kw)
    files = output_files(out, outputs)
    for k, r in ranges.items():
        if k in ("depth", "coverage"):
            what = "camera z, scene units" if k == "depth" else "Gaussians per pixel"
            print(f"{k}: {files[k]}  {r.colormap} range {r.near:.4g} .. {r.far:.4g} ({what})")

    def _run(writers) -> int:
        n_done = 0
        bar = tqdm(total=len(cams), unit="frame", desc="render", disable=not progress, dynamic_ncols=True)
        try:
            for i in range(len(cams)):
                cam = cams[i]
                if fill_fn is not None:
                    fill_fn(scene, cam)
                res = render_scene(scene, cam, **render_kw)
                for k, img in frame_images(res, outputs, ranges).items():
                    writers[k].write(img)
                n_done += 1
                bar.update(1)
        finally:
            bar.close()
        return n_done

    if video:
        writers = {k: VideoWriter(files[k], fps=path.fps, crf=crf) for k in outputs}
        try:
            n = _run(writers)
            for w in writers.values():
                w.close()
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
    else:
        with atomic_dir(out) as tmp:
            os.chmod(tmp, _default_mode(True))  # a temp folder is 0700; give the result normal permissions
            writers = {k: VideoWriter(tmp / k, fps=path.fps, atomic=False) for k in outputs}
            n = _run(writers)
            for w in writers.values():
                w.close()
            # the sidecar goes inside the folder before it is swapped into place
            _write_sidecar(tmp / "render.json", path, files, ranges, n, time.perf_counter() - t0, extra_info)
    elapsed = time.perf_counter() - t0
    if video:
        _write_sidecar(sidecar_path(out), path, files, ranges, n, elapsed, extra_info)
    return RenderSummary(frames=n, seconds=elapsed, files={k: str(v) for k, v in files.items()},
                         ranges={k: v.to_json() for k, v in ranges.items() if k in ("depth", "coverage")})


def _write_sidecar(target: Path, path, files, ranges, n, elapsed, extra_info) -> None:
    from spatialvid.atomic import atomic_write_json

    info: dict[str, Any] = {
        "frames": n, "fps": path.fps, "width": path.width, "height": path.height,
        "outputs": {k: str(v) for k, v in files.items()},
        "render_seconds": round(elapsed, 3), "render_fps": round(n / max(elapsed, 1e-9), 3),
    }
    if "depth" in ranges:
        info["depth"] = {**ranges["depth"].to_json(), "quantity": "expected camera-space z (scene units)",
                         "near_color": "low end of the colour map", "how": ranges.get("depth_how"),
                         "empty_pixels": "black (colour faded by alpha)"}
    if "coverage" in ranges:
        info["coverage"] = {**ranges["coverage"].to_json(), "quantity": "Gaussians composited per pixel"}
    if "alpha" in files:
        info["alpha"] = {"min": 0.0, "max": 1.0, "colormap": "gray"}
    info.update(extra_info or {})
    atomic_write_json(target, info)


def _fill_function():
    try:
        from spatialvid.generate import fill_view
    except ImportError as e:
        raise SpatialvidError(f"--fill is unavailable: spatialvid.generate.fill_view cannot be imported ({e})") from None
    return fill_view


def run(args: argparse.Namespace) -> int:
    from spatialvid.device import check_backend, move_scene, resolve_device
    from spatialvid.paths import write_camera_path
    from spatialvid.render.video import is_video_path
    from spatialvid.scene import Scene

    device = resolve_device(getattr(args, "device", "auto"), args.backend)
    check_backend(args.backend, device)
    outputs = parse_outputs(args.outputs)
    out = Path(args.output)
    video = is_video_path(out)
    if not video and out.exists() and not out.is_dir():
        raise SpatialvidError(f"{out}: exists and is not a folder; give a .mp4 name or a folder for PNGs")
    if args.depth_range is not None:
        near, far = parse_floats(args.depth_range, 2, "--depth-range")
        if not 0 <= near < far:
            raise SpatialvidError(f"--depth-range {args.depth_range!r}: need 0 <= near < far")
        depth_range = (near, far)
    else:
        depth_range = None
    if not 0 <= args.crf <= 51:
        raise SpatialvidError(f"--crf must be 0..51, got {args.crf}")
    if args.sh_degree is not None and not 0 <= args.sh_degree <= 3:
        raise SpatialvidError(f"--sh-degree must be 0..3, got {args.sh_degree}")
    if args.fill:
        _fill_function()
    from spatialvid.render.api import parse_background

    parse_background(args.background)
    scene = move_scene(Scene.load(args.scene), device)
    path, desc = build_path(scene, args, video)
    path.validate(str(args.path))
    if args.save_path:
        write_camera_path(args.save_path, path)
        print(f"camera path: {args.save_path}")
    print(f"rendering {desc} at {path.width}x{path.height}, {path.fps:g} fps -> {out}")
    n_before = len(scene.gaussians)
    summary = render_path_to_files(
        scene, path, out, outputs, backend=args.backend, background=args.background, sh_degree=args.sh_degree,
        depth_range=depth_range, colormap=args.colormap, crf=args.crf, fill=args.fill, progress=not args.quiet,
        extra_info={"scene": str(args.scene), "path": str(args.path), "backend": args.backend,
                    "device": str(device)},
    )
    print(f"wrote {summary.frames} frames in {summary.seconds:.1f} s ({summary.fps:.2f} frames/s): "
          + ", ".join(summary.files.values()) + f"; details in {sidecar_path(out)}")
    if args.fill:
        print(f"fill: added {len(scene.gaussians) - n_before} Gaussians while rendering "
              f"(in memory only; {args.scene} is unchanged: use `spatialvid fill` to keep them)")
    return 0
