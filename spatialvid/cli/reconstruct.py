"""`spatialvid reconstruct`: video, image folder or posed folder to a trained Gaussian-splat scene."""

from __future__ import annotations

import json

from spatialvid.cli._common import add_parser

DESCRIPTION = """\
Train a 3D Gaussian-splat scene from INPUT and write it to SCENE_DIR.

INPUT is one of:
  * a video (.mp4/.mov/...) or a folder of images: poses are estimated first (spatialvid.sfm),
    unless --poses gives them;
  * a folder with a transforms.json (nerfstudio) or a COLMAP model (sparse/0), images beside it;
  * a scene folder written by `spatialvid poses` or an earlier reconstruct (its cameras and points).

SCENE_DIR gets: gaussians.ply, transforms.json, scene.json (the scene), metrics.json (held-out PSNR, SSIM,
LPIPS or null, Gaussian count, steps, training seconds, held-out image names), training_curve.png,
eval/ (ground truth | render per held-out view) and checkpoints/last.pt (for --resume).

Every 8th image (by name) is held out for evaluation (--holdout-every). Presets live in configs/*.yaml;
every config field can be overridden, e.g. --sh-degree 1 --max-gaussians 200000 --strategy mcmc.
"""

EPILOG = """\
examples:
  spatialvid reconstruct data/sample/video.mp4 -o scenes/sample --preset fast
  spatialvid reconstruct ../shared/data/fox --poses transforms.json --downscale 4 -o scenes/fox
  spatialvid reconstruct scenes/fox --resume -o scenes/fox        # continue a killed run
"""


def register(sub) -> None:
    from spatialvid.train.config import PRESETS, add_config_arguments

    p = add_parser(sub, "reconstruct", help="Video or images to a trained Gaussian-splat scene",
                   description=DESCRIPTION)
    p.epilog = EPILOG
    p.add_argument("input", metavar="INPUT", help="video file, image folder, posed folder or scene folder")
    p.add_argument("-o", "--out", "--output", dest="out", required=True, metavar="SCENE_DIR",
                   help="output scene folder (refused if it exists and is not empty, unless --overwrite/--resume)")
    p.add_argument("--preset", default="default",
                   help=f"training preset: {' | '.join(PRESETS)} or a YAML file (default: default)")
    p.add_argument("--poses", metavar="FILE",
                   help="known poses: a nerfstudio transforms.json or a COLMAP model folder (relative paths are "
                        "also looked up inside INPUT); turns pose estimation and pose refinement off")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from the preset)")
    p.add_argument("--backend", choices=["auto", "cpu", "cuda", "torch"], default=None,
                   help="rasterizer backend (default auto: CUDA if available, else the C++ CPU kernels)")
    p.add_argument("--resume", action="store_true",
                   help="continue from SCENE_DIR/checkpoints/last.pt (same input and settings)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing SCENE_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from spatialvid.train.config import load_config, overrides_from_args
    from spatialvid.train.pipeline import reconstruct

    cfg = load_config(args.preset, overrides_from_args(args))
    m = reconstruct(args.input, args.out, cfg, poses=args.poses, resume=args.resume, overwrite=args.overwrite,
                    progress=not args.quiet, preset=args.preset)
    if args.json:
        print(json.dumps({k: v for k, v in m.items() if k != "per_image"}))
        return 0
    psnr = "n/a" if m["psnr"] is None else f"{m['psnr']:.2f} dB"
    ssim = "n/a" if m["ssim"] is None else f"{m['ssim']:.4f}"
    print(f"scene written to {args.out}: {m['num_gaussians']:,} Gaussians, {m['steps']} steps in "
          f"{m['train_seconds']:.0f} s; held-out PSNR {psnr}, SSIM {ssim} on {len(m['heldout_images'])} views")
    if m.get("lpips_note"):
        print(m["lpips_note"])
    return 0
