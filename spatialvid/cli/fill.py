"""`spatialvid fill`: generate the parts of the scene the video never saw, progressively along a path."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from spatialvid.cli._common import add_parser
from spatialvid.errors import SpatialvidError

DESCRIPTION = """\
Generate what the video never saw: move a camera along a path and, at each of --steps cameras, fill the
pixels the scene does not cover (coverage -> colour inpainting -> depth completion -> new Gaussians ->
short fit). Each step sees what earlier steps added, so coming back to a place shows the same content.
Captured Gaussians are never changed; new ones are tagged 'generated' with their history step.

Inputs:
  SCENE_DIR        a scene folder (gaussians.ply, transforms.json, scene.json)
  --path           a nerfstudio camera_path.json (--steps cameras evenly spaced along its frames), or a
                   generator: orbit (circle around the scene centre at the cameras' height and radius),
                   spiral (forward-facing spiral), train (spline through the training cameras)
Output:
  the scene folder, updated in place (or written to -o OUT): gaussians.ply gains the new Gaussians,
  scene.json a 'fill' history entry per step that added something (camera, counts, backends, timings).
  --undo removes the Gaussians of the most recent fill step instead (and records an 'undo' entry).
Backends (no downloads, ever):
  --inpainter classical        structure (push-pull pyramid fill) + texture (exemplar/PatchMatch synthesis),
                               the texture weighted by how well it predicts a hidden band of known pixels
                               around the hole (default)
  --inpainter exemplar         exemplar/PatchMatch texture synthesis only (full-contrast texture)
  --inpainter diffusers:PATH   a diffusers inpainting pipeline saved in the local folder PATH
  --depth classical            plane fit + edge-aware propagation of the rendered depth (default)
  --depth transformers:PATH    a transformers depth model in the local folder PATH, scale/shift-aligned
  (the model backends need: pip install 'spatialvid[models]')
"""

EPILOG = """\
Examples:
  spatialvid fill scenes/sample --path orbit --steps 8
  spatialvid fill scenes/sample --path camera_path.json --steps 4 -o scenes/sample_filled
  spatialvid fill scenes/sample --path orbit --inpainter diffusers:/models/sd-inpaint --depth transformers:/models/dpt
  spatialvid fill scenes/sample --undo
"""


def register(sub) -> None:
    from spatialvid.device import add_device_argument

    p = add_parser(sub, "fill", help="Generate the parts of the scene the video never saw", description=DESCRIPTION)
    p.epilog = EPILOG
    p.add_argument("scene", metavar="SCENE_DIR", help="scene folder (updated in place unless -o)")
    p.add_argument("--path", default=None, metavar="FILE|orbit|spiral|train",
                   help="camera path to fill along (required unless --undo)")
    p.add_argument("--steps", type=int, default=8, help="number of fill cameras along the path (default: 8)")
    p.add_argument("--resolution", default=None, metavar="WxH",
                   help="fill image size (default: the path file's size, else the first training camera's)")
    p.add_argument("--inpainter", default="classical", metavar="classical|exemplar|diffusers:PATH",
                   help="colour fill backend (default: classical)")
    p.add_argument("--depth", default="classical", metavar="classical|transformers:PATH",
                   help="depth completion backend (default: classical)")
    p.add_argument("--fit-iters", type=int, default=10,
                   help="optimisation steps of the new Gaussians per fill (default: 10; 0 = off)")
    p.add_argument("--block", type=int, default=2, choices=(1, 2, 3, 4),
                   help="one new Gaussian per BLOCKxBLOCK unseen pixels (default: 2)")
    p.add_argument("--alpha-threshold", type=float, default=0.5,
                   help="a pixel is unseen below this rendered opacity (default: 0.5)")
    p.add_argument("--max-gaussians", type=int, default=None, help="Gaussian cap (default: 3,000,000)")
    p.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda", "torch"),
                   help="rasterizer backend (default: auto = the kernels of the --device)")
    add_device_argument(p, "the scene's Gaussians and the fit")
    p.add_argument("--undo", action="store_true", help="remove the most recent fill step's Gaussians and exit")
    p.add_argument("-o", "--output", default=None, metavar="OUT_DIR", help="write the scene here instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _parse_wh(spec: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise SpatialvidError(f"--resolution {spec!r}: expected WxH, e.g. 640x480") from None
    if w <= 0 or h <= 0 or w > 8192 or h > 8192:
        raise SpatialvidError(f"--resolution {spec!r}: sizes must be in 1..8192")
    return w, h


def path_cameras(scene, spec: str, steps: int, resolution: str | None = None):
    """The fill cameras: ``steps`` cameras of a generated path or evenly spaced frames of a path file."""
    from spatialvid.paths import GENERATORS, generate, read_camera_path

    if steps < 1:
        raise SpatialvidError(f"--steps must be at least 1, got {steps}")
    cams = scene.cameras
    if spec in GENERATORS:
        if len(cams) == 0:
            raise SpatialvidError("the scene has no cameras to place a generated path around; give a path file")
        w, h = _parse_wh(resolution) if resolution else (int(cams.width[0]), int(cams.height[0]))
        g = scene.gaussians
        pts = g.means.detach()[g.opacities.detach() > 0.2].cpu().numpy() if len(g) else None
        if pts is not None and len(pts) > 200_000:
            pts = pts[np.random.default_rng(0).choice(len(pts), 200_000, replace=False)]
        up = scene.metadata.get("up") if spec == "orbit" else None
        path = generate(spec, cams, steps, up=up, points=pts, width=w, height=h)
        return path.cameras()
    p = Path(spec)
    if not p.is_file():
        raise SpatialvidError(f"--path {spec!r}: not a file and not one of {', '.join(GENERATORS)}")
    path = read_camera_path(p)
    path.validate(str(p))
    if resolution:
        path = path.with_resolution(*_parse_wh(resolution))
    allc = path.cameras()
    idx = np.unique(np.round(np.linspace(0, len(allc) - 1, min(steps, len(allc)))).astype(int))
    return allc[idx.tolist()]


def run(args: argparse.Namespace) -> int:
    from spatialvid.device import check_backend, move_scene, resolve_device
    from spatialvid.faults import fault_point
    from spatialvid.generate import fill_view, undo_last_fill
    from spatialvid.generate.fill import FillConfig
    from spatialvid.scene import Scene

    device = resolve_device(getattr(args, "device", "auto"), args.backend)
    check_backend(args.backend, device)
    scene = move_scene(Scene.load(args.scene), device)
    out = Path(args.output) if args.output else Path(args.scene)
    if args.undo:
        n = undo_last_fill(scene)
        fault_point("undo:before-save")
        scene.save(out)
        print(f"undid the last fill: removed {n:,} generated Gaussians; {len(scene.gaussians):,} left -> {out}")
        return 0
    if args.path is None:
        raise SpatialvidError("give --path FILE|orbit|spiral|train (or --undo)")
    if not 0 < args.alpha_threshold < 1:
        raise SpatialvidError(f"--alpha-threshold must be in (0, 1), got {args.alpha_threshold}")
    if args.fit_iters < 0:
        raise SpatialvidError(f"--fit-iters must be >= 0, got {args.fit_iters}")
    cams = path_cameras(scene, args.path, args.steps, args.resolution)
    cfg = FillConfig(fit_iters=args.fit_iters, block=args.block, alpha_threshold=args.alpha_threshold,
                     backend=args.backend)
    if args.max_gaussians is not None:
        cfg.max_gaussians = int(args.max_gaussians)
    # build the backends once (model loading can be slow) and validate them before any work
    from spatialvid.generate.depth import make_depth_estimator
    from spatialvid.generate.inpaint import make_inpainter

    inp = make_inpainter(args.inpainter)
    dep = make_depth_estimator(args.depth)
    from tqdm import tqdm

    t0 = time.perf_counter()
    total, steps_done = 0, 0
    bar = tqdm(range(len(cams)), desc="fill", unit="view", disable=args.quiet)
    for i in bar:
        res = fill_view(scene, cams[i], inpainter=inp, depth=dep, config=cfg)
        total += res.added
        steps_done += res.step is not None
        fault_point("fill:after-step")
        bar.set_postfix(added=total, unseen=f"{100 * res.unseen_fraction:.1f}%")
    bar.close()
    scene.save(out)
    print(f"filled {len(cams)} views in {time.perf_counter() - t0:.1f} s: {total:,} new Gaussians in "
          f"{steps_done} steps ({len(scene.gaussians):,} total) -> {out}")
    return 0
