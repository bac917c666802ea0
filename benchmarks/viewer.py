"""Viewer benchmark: server-side exact render latency (what a browser waits for in exact mode).

Measures, per view mode, the time from a client camera to a JPEG ready to send: frustum cull, rasterize
(spatialvid's renderer, view-dependent SH), false-colour, JPEG encode. "exact rgb preview" is the half-size
frame a moving camera gets first (the full size follows when the camera stops). Default scene: ~100k Gaussians (SH degree 3) on the
walls of a 4 m room, viewed from inside at 512x512 (goal: < 150 ms per frame on 2 CPU cores).

    python benchmarks/viewer.py --json                # synthetic 100k-Gaussian room
    python benchmarks/viewer.py --scene scenes/sample --json

The last line of output is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spatialvid.cameras import Cameras  # noqa: E402
from spatialvid.gaussians import Gaussians  # noqa: E402
from spatialvid.scene import Scene  # noqa: E402


def room_scene(n: int, seed: int = 0) -> Scene:
    """``n`` Gaussians on the 6 faces of a 4 x 4 x 2.5 m box (z up), SH degree 3, plus 8 cameras inside."""
    g = torch.Generator().manual_seed(seed)
    half = torch.tensor([2.0, 2.0, 1.25])
    face = torch.randint(0, 6, (n,), generator=g)
    axis, sign = face // 2, (face % 2) * 2 - 1
    p = (torch.rand(n, 3, generator=g) * 2 - 1) * half
    p[torch.arange(n), axis] = sign.float() * half[axis]
    rgb = 0.5 + 0.4 * torch.sin(p[:, [0, 1, 2]] * torch.tensor([3.0, 5.0, 7.0]) + face[:, None].float())
    gs = Gaussians.from_points(p, rgb.clamp(0, 1), scale=0.03, opacity=0.8, sh_degree=3)
    gs.shN.normal_(0.0, 0.05, generator=g)
    flat = torch.full((n, 3), math.log(0.03))
    flat[torch.arange(n), axis] = math.log(0.003)
    gs.log_scales = flat
    eyes = [(1.5 * math.cos(a), 1.5 * math.sin(a), 0.3) for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)]
    # near one wall, looking across the room (floor, ceiling and three walls in view)
    cams = Cameras.cat([Cameras.look_at(e, (0, 0, 0.0), (0, 0, 1), 70, 512, 512, name=f"cam{i}")
                        for i, e in enumerate(eyes)])
    return Scene(gaussians=gs, cameras=cams, metadata={"up": [0.0, 0.0, 1.0]})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, help="a scene folder (default: synthetic room)")
    ap.add_argument("--num", type=int, default=100_000, help="Gaussians in the synthetic room (default 100000)")
    ap.add_argument("--size", type=int, default=512, help="render size, square (default 512)")
    ap.add_argument("--repeats", type=int, default=10, help="timed frames per mode (default 10)")
    ap.add_argument("--backend", default="auto", help="rasterizer backend (default auto)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()

    import cv2

    from viewer import ViewerApp, ViewerConfig

    scene = Scene.load(args.scene) if args.scene else room_scene(args.num)
    app = ViewerApp(scene, config=ViewerConfig(port=0, exact_max_side=args.size, backend=args.backend,
                                               thumbnail_px=0))
    try:
        n_cams = len(scene.cameras)
        results = {}
        for mode, size in (("exact rgb", args.size), ("exact depth", args.size), ("exact coverage", args.size),
                           ("exact rgb preview", max(96, args.size // 2))):
            times = []
            for r in range(args.repeats + 2):  # 2 warm-up frames (kernel build, caches)
                i = r % n_cams
                from viewer.app import View
                from viewer.convert import camera_pose

                wxyz, pos = camera_pose(scene.cameras, i)
                cam = View(np.asarray(wxyz), np.asarray(pos), math.radians(float(scene.cameras.fov_y()[i])),
                           1.0).camera(size)
                t0 = time.perf_counter()
                img, _ = app.render_image(cam, mode.replace(" preview", ""))
                ok, _buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
                dt = time.perf_counter() - t0
                if r >= 2:
                    times.append(dt * 1000)
            results[mode.replace(" ", "_") + "_ms"] = {"median": round(statistics.median(times), 1),
                                                       "min": round(min(times), 1), "max": round(max(times), 1)}
            if not args.json:
                print(f"{mode:15s} median {statistics.median(times):7.1f} ms  (min {min(times):.1f}, "
                      f"max {max(times):.1f})")
        from spatialvid.render.rasterizer import resolve_backend

        out = {
            "benchmark": "viewer_exact_render",
            "gaussians": len(scene.gaussians),
            "sh_degree": scene.gaussians.sh_degree,
            "size": [args.size, args.size],
            "backend": resolve_backend(args.backend, torch.device("cpu")),
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "goal_ms": 150,
            **results,
            "meets_goal": results["exact_rgb_ms"]["median"] < 150,
        }
    finally:
        app.stop()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
