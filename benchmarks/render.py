"""Frames per second of `spatialvid render` (CPU backend by default) and temporal stability.

Usage: python benchmarks/render.py [--scene SCENE_DIR] [--frames 30] [--backend cpu] [--json]

Scene: a trained scene folder (e.g. the fox) given by --scene; otherwise the bundled sample's
ground-truth Gaussians (``spatialvid.sample.make_sample``, built in a temporary folder).
For 512x512 and 1280x720 it renders an orbit of --frames frames and reports:
  render_fps    ``render_scene`` alone (rasterize + copy to numpy)
  pipeline_fps  the whole ``spatialvid render`` loop writing an H.264 mp4 (render + encode)
and temporal stability at 512x512: the mean absolute frame-to-frame difference (RGB, 0..1) on a static
camera (must be exactly 0: rendering is deterministic) and on a slow orbit (0.5 degree per frame).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from spatialvid.paths import CameraPath, orbit
from spatialvid.render.api import render_scene
from spatialvid.scene import Scene


def load_scene(scene_dir: str | None, tmp: Path) -> tuple[Scene, str]:
    if scene_dir:
        return Scene.load(scene_dir), str(scene_dir)
    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.formats.ply import read_ply
    from spatialvid.sample import make_sample

    info = make_sample(tmp / "sample")
    scene = Scene(read_ply(info.gt_gaussians), read_transforms(info.transforms), {"up": [0.0, 0.0, 1.0]})
    return scene, "sample gt_gaussians.ply"


def orbit_path(scene: Scene, frames: int, width: int, height: int, degrees_per_frame: float | None = None):
    revolutions = 1.0 if degrees_per_frame is None else degrees_per_frame * frames / 360.0
    up = scene.metadata.get("up")
    return orbit(scene.cameras, frames, up=up, width=width, height=height, revolutions=revolutions,
                 points=scene.gaussians.means.detach().numpy()[::10])


def mean_abs_diffs(frames: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a.astype(np.float64) - b).mean() for a, b in zip(frames, frames[1:])]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default=None, help="scene folder (default: the sample's ground-truth Gaussians)")
    ap.add_argument("--frames", type=int, default=30, help="frames per measurement (default 30)")
    ap.add_argument("--backend", default="cpu", help="rasterizer backend (default cpu)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()
    from spatialvid.cli.render import render_path_to_files

    out: dict = {"backend": args.backend, "frames": args.frames}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        scene, name = load_scene(args.scene, d)
        out.update(scene=name, num_gaussians=len(scene.gaussians))
        render_scene(scene, scene.cameras[0].scaled(0.25), backend=args.backend)  # warm-up (extension load)
        for w, h in ((512, 512), (1280, 720)):
            path = orbit_path(scene, args.frames, w, h)
            cams = path.cameras()
            t = time.perf_counter()
            for i in range(len(cams)):
                render_scene(scene, cams[i], backend=args.backend)
            out[f"render_fps_{w}x{h}"] = round(args.frames / (time.perf_counter() - t), 3)
            s = render_path_to_files(scene, path, d / f"o{w}.mp4", ["rgb"], backend=args.backend, progress=False)
            out[f"pipeline_fps_{w}x{h}"] = round(s.fps, 3)
            if not args.json:
                print(f"{w}x{h}: render {out[f'render_fps_{w}x{h}']} fps, pipeline {out[f'pipeline_fps_{w}x{h}']} fps")
        cam0 = orbit_path(scene, 1, 512, 512)
        static = CameraPath(c2w=np.repeat(cam0.c2w, 10, 0), fov=cam0.fov[0], width=512, height=512).cameras()
        out["static_mean_abs_diff"] = mean_abs_diffs([render_scene(scene, static[i], backend=args.backend).rgb
                                                      for i in range(10)])
        slow = orbit_path(scene, 10, 512, 512, degrees_per_frame=0.5).cameras()
        out["slow_orbit_0.5deg_mean_abs_diff"] = round(mean_abs_diffs(
            [render_scene(scene, slow[i], backend=args.backend).rgb for i in range(10)]), 6)
    out["goal_10fps_512"] = out["render_fps_512x512"] >= 10
    print(json.dumps(out))


if __name__ == "__main__":
    main()
