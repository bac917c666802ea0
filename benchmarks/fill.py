"""Benchmark one fill step (coverage -> inpaint -> depth -> lift -> fit) at 512x512 with classical backends.

Scene: a textured wall and floor of captured Gaussians (about 120k) with a hole in the wall, seen from a
camera that also looks past the wall's edge, so a realistic share of the view (about a third) is unseen.
With ``--scene DIR`` the scene's first camera (resized to --size) turned by ``--yaw`` degrees is used.

Usage: python benchmarks/fill.py [--size 512] [--threads 2] [--fit-iters 20] [--json]
The last line printed is JSON: wall seconds per stage and in total, process CPU seconds (all threads),
the 1-minute load average (a shared machine inflates wall time), unseen fraction, Gaussians added.

Quality: python benchmarks/fill.py --hidden-region [--width 320 --height 240] [--inpainter classical] --json
makes the sample with --hidden-region (objects behind the cabinet that no video frame sees), keeps the
ground-truth Gaussians the video sees, fills each held-out view that shows the hidden objects, and scores
PSNR (dB) / SSIM against the truth for the fill and two baselines (no fill over a black background; the
holes painted the mean colour of the rest of the view), on the unseen pixels and on the hidden objects.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch


def synthetic_scene(size: int):
    from spatialvid import Cameras, Gaussians, Scene

    spacing = 0.012
    xs = torch.arange(-1.6, 1.6, spacing)
    zs = torch.arange(-0.6, 1.0, spacing)
    X, Z = torch.meshgrid(xs, zs, indexing="xy")
    X, Z = X.reshape(-1), Z.reshape(-1)
    keep = ~((X.abs() < 0.5) & ((Z - 0.2).abs() < 0.35))
    X, Z = X[keep], Z[keep]
    wall = torch.stack([X, torch.full_like(X, 3.0), Z], 1)
    wall_rgb = torch.stack([0.5 + 0.4 * torch.sin(X * 14), 0.3 + 0.4 * (((X * 6).floor() + (Z * 6).floor()) % 2),
                            0.5 + 0.3 * torch.cos(Z * 11)], 1)
    fx = torch.arange(-1.6, 1.6, spacing * 1.5)
    fy = torch.arange(0.5, 3.0, spacing * 1.5)
    FX, FY = torch.meshgrid(fx, fy, indexing="xy")
    FX, FY = FX.reshape(-1), FY.reshape(-1)
    floor = torch.stack([FX, FY, torch.full_like(FX, -0.6)], 1)
    floor_rgb = torch.stack([0.4 + 0.2 * torch.sin(FX * 20) * torch.sin(FY * 20), 0.35 + 0 * FX,
                             0.25 + 0.1 * ((FX * 8).floor() % 2)], 1)
    g = Gaussians.cat([Gaussians.from_points(wall, wall_rgb.clamp(0, 1), scale=spacing * 0.6, opacity=0.97),
                       Gaussians.from_points(floor, floor_rgb.clamp(0, 1), scale=spacing * 0.9, opacity=0.97)])
    cam = Cameras.look_at([0.5, 0.0, 0.3], [0.9, 3.0, 0.1], up=(0, 0, 1), fov_deg=55, width=size, height=size)
    return Scene(g, cam, {"up": [0, 0, 1]}, []), cam


def scene_camera(path: str, size: int, yaw: float):
    from spatialvid import Cameras
    from spatialvid.scene import Scene

    scene = Scene.load(path)
    c = scene.cameras[0]
    c2w = c.c2w()[0].double()
    a = math.radians(yaw)
    rot = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=torch.float64)
    c2w[:3, :3] = c2w[:3, :3] @ rot  # turn about the camera's own y (down) axis
    f = float(c.fy[0]) * size / float(c.height[0])
    cam = Cameras.from_c2w(c2w, f, f, size / 2, size / 2, size, size)
    return scene, cam


def hidden_region(args) -> dict:
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.generate import fill_view
    from spatialvid.generate.coverage import render_coverage
    from spatialvid.metrics import masked_psnr_ssim
    from spatialvid.sample import make_sample, video_visible_scene
    from spatialvid.scene import Scene

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sample"
        make_sample(root, hidden_region=True, num_frames=24, width=args.width, height=args.height, progress=False)
        scene0 = video_visible_scene(root)
        held = read_transforms(root / "heldout" / "transforms.json")
        hidden = np.load(root / "heldout" / "hidden_masks.npz")["masks"]
        unseen = np.load(root / "heldout" / "unseen_masks.npz")["masks"]
        views = [i for i in range(len(held)) if hidden[i].sum() > 50]
        res = {k: {"unseen": [], "hidden_objects": []} for k in ("no_fill", "mean_colour", "fill")}
        seconds = []
        for i in views:
            scene = Scene(scene0.gaussians.clone(), scene0.cameras, dict(scene0.metadata), [])
            cam = held[i]
            gt = np.asarray(Image.open(held.image_paths[i]).convert("RGB"), np.float32) / 255
            base = render_coverage(scene.gaussians, cam, backend=args.backend)
            holes = base.alpha < 0.5
            meanfill = base.rgb.copy()
            meanfill[holes] = base.surface[~holes].mean(0)
            t = time.perf_counter()
            fill_view(scene, cam, inpainter=args.inpainter, fit_iters=args.fit_iters, backend=args.backend)
            seconds.append(time.perf_counter() - t)
            after = render_coverage(scene.gaussians, cam, backend=args.backend)
            for name, img in (("no_fill", base.rgb), ("mean_colour", meanfill), ("fill", after.rgb)):
                res[name]["unseen"].append(masked_psnr_ssim(img, gt, unseen[i]))
                res[name]["hidden_objects"].append(masked_psnr_ssim(img, gt, hidden[i]))
    avg = {k: {r: dict(zip(("psnr", "ssim"), np.mean(np.array(v), 0).round(4).tolist())) for r, v in d.items()}
           for k, d in res.items()}
    win = {r: bool(avg["fill"][r]["psnr"] > max(avg["no_fill"][r]["psnr"], avg["mean_colour"][r]["psnr"])
                   and avg["fill"][r]["ssim"] > max(avg["no_fill"][r]["ssim"], avg["mean_colour"][r]["ssim"]))
           for r in ("unseen", "hidden_objects")}
    return {"benchmark": "fill_hidden_region", "size": f"{args.width}x{args.height}", "views": views,
            "inpainter": args.inpainter, "fit_iters": args.fit_iters, "scores": avg, "fill_beats_both": win,
            "fill_seconds_mean": round(float(np.mean(seconds)), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fit-iters", type=int, default=10)
    ap.add_argument("--scene", default=None, help="a scene folder instead of the synthetic wall")
    ap.add_argument("--yaw", type=float, default=25.0, help="with --scene: turn the first camera by this (deg)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--hidden-region", action="store_true",
                    help="score the fill against ground truth on the sample's hidden region (see above)")
    ap.add_argument("--width", type=int, default=320, help="--hidden-region: sample width (default 320)")
    ap.add_argument("--height", type=int, default=240, help="--hidden-region: sample height (default 240)")
    ap.add_argument("--inpainter", default="classical", help="--hidden-region: inpainter spec")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.hidden_region:
        out = hidden_region(args)
        if not args.json:
            print(json.dumps(out, indent=1), file=sys.stderr)
        print(json.dumps(out))
        return 0
    from spatialvid.generate import fill_view
    from spatialvid.render import render_gaussians

    scene, cam = scene_camera(args.scene, args.size, args.yaw) if args.scene else synthetic_scene(args.size)
    render_gaussians(scene.gaussians, cam, backend=args.backend)  # warm-up (extension build/load)
    n0 = len(scene.gaussians)
    t, c = time.perf_counter(), time.process_time()
    res = fill_view(scene, cam, fit_iters=args.fit_iters, backend=args.backend)
    total, cpu = time.perf_counter() - t, time.process_time() - c
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = {"benchmark": "fill_step", "size": f"{args.size}x{args.size}", "threads": torch.get_num_threads(),
           "captured_gaussians": n0, "unseen_fraction": round(res.unseen_fraction, 4), "added": res.added,
           "fit_iters": args.fit_iters, "seconds_total": round(total, 3), "cpu_seconds": round(cpu, 3),
           "load_avg_1min": None if load is None else round(load, 2),
           "seconds": {k: round(v, 3) for k, v in res.timings.items()},
           "cpu_seconds_per_stage": {k: round(v, 3) for k, v in res.cpu_timings.items()}, "inpainter": res.inpainter,
           "depth": res.depth_estimator, "under_10s": total < 10.0}
    if not args.json:
        for k, v in out.items():
            print(f"{k:>20}: {v}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
