"""`spatialvid poses`: estimate camera poses (ingest + structure from motion) without training."""

from __future__ import annotations

import sys
import time

from spatialvid.cli._common import add_parser

DESCRIPTION = """\
Estimate camera poses for a video or a folder of images (keyframe selection + SIFT + COLMAP
structure from motion via pycolmap), or import known poses, and write a scene folder without training.

INPUT      a video file (mp4, mov, webm, mkv...) or a folder of images (jpg/png, natural sort order)

Writes SCENE_DIR/:
  images/            undistorted (pinhole) keyframes at the working resolution
  transforms.json    nerfstudio cameras (OpenGL camera-to-world) of the registered keyframes;
                     file_path = images/<name>: the input image's own file name for a folder,
                     frame_NNNNN.png (NNNNN = decoded frame index from 0) for a video
  sparse/0/          COLMAP model (PINHOLE cameras, normalised world) of images/
  sfm/               keyframes before undistortion, database, model with the original intrinsics
  gaussians.ply, scene.json   initial Gaussians (one per sparse point) and metadata
The scene is normalised (cameras centred, within a unit sphere, z up); scene.json stores the 4x4
transform (metadata.normalization: world_normalized = T @ world_original).
"""


def register(sub) -> None:
    p = add_parser(sub, "poses", help="Estimate camera poses (ingest + structure from motion) without training",
                   description=DESCRIPTION)
    p.add_argument("input", metavar="INPUT", help="video file or folder of images")
    p.add_argument("-o", "--output", metavar="SCENE_DIR", required=True, help="scene folder to write")
    p.add_argument("--max-frames", type=int, default=150,
                   help="target number of keyframes chosen from a video (default: 150)")
    p.add_argument("--resolution", type=float, default=960,
                   help="working resolution: long side in pixels (> 1) or a scale factor (<= 1); never "
                        "upscales (default: 960)")
    p.add_argument("--poses", metavar="PATH", default=None,
                   help="known poses (transforms.json or a COLMAP model folder): skip pose estimation and only "
                        "triangulate sparse points; image names must match the input's frames")
    p.add_argument("--matcher", choices=["auto", "sequential", "exhaustive"], default="auto",
                   help="image pairing: auto = exhaustive up to 30 images, else sequential + loop closure "
                        "(default: auto)")
    p.add_argument("--mapper", choices=["incremental", "global"], default="incremental",
                   help="COLMAP incremental mapper, or the global mapper (GLOMAP) (default: incremental)")
    p.add_argument("--camera-model", default="auto",
                   choices=["auto", "OPENCV", "SIMPLE_RADIAL", "RADIAL", "PINHOLE"],
                   help="camera model to estimate: auto = map with SIMPLE_RADIAL (f k1, principal point at the "
                        "centre), then keep SIMPLE_RADIAL or refine the principal point / RADIAL / OPENCV (fx fy cx cy "
                        "k1 k2 p1 p2), whichever the data supports (BIC) (default: auto)")
    p.add_argument("--max-features", type=int, default=4096, help="SIFT features per image (default: 4096)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def config_from_args(args):
    from spatialvid.sfm import SfmConfig

    res = args.resolution
    res = int(res) if res and res > 1 else res
    return SfmConfig(max_frames=args.max_frames, resolution=res, matcher=args.matcher, mapper=args.mapper,
                     camera_model=args.camera_model, max_features=args.max_features, seed=args.seed,
                     progress=not args.no_progress)


def run(args) -> int:
    import warnings

    from spatialvid.sfm import run_sfm, scene_from_known_poses

    cfg = config_from_args(args)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes are printed below
        if args.poses:
            scene = scene_from_known_poses(args.input, args.poses, args.output, cfg)
        else:
            scene = run_sfm(args.input, args.output, cfg)
    sfm = scene.metadata["sfm"]
    for note in sfm.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    what = "known poses" if sfm.get("known_poses") else "registered"
    print(f"{what}: {sfm['registered']}/{sfm['keyframes']} keyframes, {sfm['num_points']} sparse points, "
          f"{time.perf_counter() - t0:.1f} s -> {args.output}")
    print("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in sfm["timings"].items()))
    return 0
