"""`spatialvid view`: open a scene in the interactive web viewer."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from spatialvid.cli._common import add_parser
from spatialvid.errors import SpatialvidError

DESCRIPTION = """\
Open a scene folder (gaussians.ply + transforms.json + scene.json, as written by `spatialvid reconstruct`)
in a browser viewer (viser).

In the browser:
  View tab         splats (fast, client-side) or exact rgb / depth / coverage (the server renders your view
                   with spatialvid's rasterizer; coverage shows unseen pixels magenta, generated ones cyan);
                   toggle captured / generated Gaussians and the training cameras (click one to jump there).
  Fill & save tab  "Fill from here" generates Gaussians for what this view sees but the scene does not cover;
                   undo the last fill; save the scene back to SCENE_DIR (atomic).
  Camera path tab  add / move / delete keyframes from the current view, duration, fps, size, preview,
                   export SCENE_DIR/camera_path.json (nerfstudio format), import one, render an mp4 into
                   SCENE_DIR.

The server reads and writes files only inside SCENE_DIR. It listens on 127.0.0.1 (this machine only) unless
--host says otherwise. Stop it with Ctrl-C; unsaved changes are lost (press "Save scene" first).
"""


def register(sub) -> None:
    from spatialvid.device import add_device_argument

    p = add_parser(sub, "view", help="Open a scene in the interactive web viewer", description=DESCRIPTION)
    p.add_argument("scene_dir", metavar="SCENE_DIR", type=Path, help="scene folder to open")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 = every "
                        "network interface: anyone who can reach it can edit the scene)")
    p.add_argument("--port", type=int, default=8080,
                   help="port (default: 8080; the next free one is used when taken; 0 = any free port)")
    p.add_argument("--exact-size", type=int, default=512,
                   help="longer side in pixels of server-rendered (exact mode) views (default: 512)")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "torch"],
                   help="rasterizer backend for exact renders (default: auto = the kernels of the --device)")
    add_device_argument(p, "exact renders and fills run (the scene stays on the CPU, with one copy on the device)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spatialvid.scene import Scene
    from viewer import ViewerApp, ViewerConfig

    if not 0 <= args.port <= 65535:
        raise SpatialvidError(f"--port must be in 0..65535 (got {args.port})")
    if not 64 <= args.exact_size <= 4096:
        raise SpatialvidError(f"--exact-size must be in 64..4096 (got {args.exact_size})")
    from spatialvid.device import check_backend, resolve_device

    device = getattr(args, "device", "auto")
    check_backend(args.backend, resolve_device(device, args.backend))  # before loading anything
    scene = Scene.load(args.scene_dir)
    config = ViewerConfig(host=args.host, port=args.port, exact_max_side=args.exact_size, backend=args.backend,
                          device=device)
    from viewer.app import is_loopback

    if not is_loopback(args.host):
        print(f"spatialvid view: warning: listening on {args.host}: anyone who can reach this machine can view "
              "and edit the scene", file=sys.stderr)
    try:
        with warnings.catch_warnings():  # the warning was printed above, once
            warnings.simplefilter("ignore", UserWarning)
            app = ViewerApp(scene, scene_dir=args.scene_dir, config=config)
    except OSError as e:
        raise SpatialvidError(f"cannot listen on {args.host}:{args.port} ({e})") from None
    g = scene.gaussians
    print(f"spatialvid view: {len(g):,} Gaussians, {len(scene.cameras)} cameras from {args.scene_dir}")
    print(f"spatialvid view: open {app.url} in a browser (Ctrl-C to stop)", flush=True)
    try:
        app.serve_forever()
    except KeyboardInterrupt:
        print("spatialvid view: stopped", file=sys.stderr)
    return 0
