"""`spatialvid sample`: Make the bundled synthetic sample (video + ground truth)."""

from __future__ import annotations

from spatialvid.cli._common import add_parser

DESCRIPTION = """\
Render the bundled synthetic sample: a small textured room (floor, walls, boxes, spheres; z-up world,
metres) filmed along a smooth hand-held-like arc, with exact ground truth. Deterministic for a seed;
about 10-20 s on one core at the default size.

Writes into OUT_DIR (a new or empty folder; an existing sample there is replaced):
  video.mp4               H.264 yuv420p, 30 fps, FRAMES frames of WIDTHxHEIGHT
  images/frame_00000.png  the same frames, lossless
  transforms.json         ground-truth cameras (nerfstudio: OpenGL camera-to-world, OPENCV, no distortion)
  depth.npz               key 'depth': float32 [F,H,W] camera z-depth in metres
  heldout/                8 held-out views: images/, transforms.json, depth.npz, unseen_masks.npz
                          (pixels no video frame sees); with --hidden-region also hidden_masks.npz
  gt_gaussians.ply        3DGS PLY sampled from the true surfaces (renders close to the images)
  sample.json             scene centre and extent, up axis, objects, held-out views, hidden region

--forward-facing: instead a hand-held small-baseline capture facing one wall with objects in front (like a
phone capture of one object; default 24 frames of 480x360, ~0.4 m sideways): images/, video.mp4,
transforms.json, depth.npz and sample.json (no held-out views, no ground-truth Gaussians). It scores camera
poses: `spatialvid poses OUT_DIR/images -o SCENE && spatialvid eval SCENE --poses OUT_DIR/transforms.json`.
--mode picks a hand-held test clip instead of the room (same layout, 4 held-out views, no
gt_gaussians.ply): a small apple and mug on a large flat speckled floor that fills ~90% of the frames,
  table        filmed in a 200-degree arc moving around and over them
  low-texture  the same arc over a nearly plain floor
  blur         the table arc with hand tremor, motion blur and a rolling shutter (wobble)
  rotation     the camera stands still and only pans/tilts (pose estimation must refuse it)
"""

EPILOG = """\
examples:
  spatialvid sample data/sample
  spatialvid sample data/sample_hidden --hidden-region
  spatialvid sample /tmp/tiny --frames 12 --width 160 --height 120
  spatialvid sample data/forward --forward-facing
  spatialvid sample data/table --mode table
"""


def register(sub) -> None:
    p = add_parser(sub, "sample", help="Make the bundled synthetic sample (video + ground truth)",
                   description=DESCRIPTION)
    p.epilog = EPILOG
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created; must be new, empty or a sample)")
    p.add_argument("--hidden-region", action="store_true",
                   help="add objects that no video frame sees but held-out views do (for scoring fill)")
    p.add_argument("--forward-facing", action="store_true",
                   help="a small-baseline capture facing one wall with objects in front (scores poses)")
    p.add_argument("--frames", type=int, default=None,
                   help="number of video frames (default: 60; 24 with --forward-facing)")
    p.add_argument("--width", type=int, default=None,
                   help="image width in pixels, even (default: 320; 480 with --forward-facing)")
    p.add_argument("--height", type=int, default=None,
                   help="image height in pixels, even (default: 240; 360 with --forward-facing)")
    p.add_argument("--seed", type=int, default=0, help="texture and camera-jitter seed (default: 0)")
    p.add_argument("--mode", choices=["room", "table", "low-texture", "blur", "rotation"], default="room",
                   help="room (default) or a hand-held test clip: table, low-texture, blur, rotation (see above)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _run_forward(args) -> int:
    from spatialvid._sample_forward import make_forward_sample
    from spatialvid.errors import SpatialvidError

    if args.hidden_region:
        raise SpatialvidError("--hidden-region and --forward-facing cannot be combined")
    info = make_forward_sample(args.out_dir, num_frames=24 if args.frames is None else args.frames,
                               width=480 if args.width is None else args.width,
                               height=360 if args.height is None else args.height, seed=args.seed,
                               progress=not args.quiet)
    print(f"wrote {info.out_dir}: forward-facing, {info.num_frames} frames {info.width}x{info.height}, camera "
          f"path extent {info.baseline:.2f} m, in {info.seconds:.1f} s")
    return 0


def run(args) -> int:
    from spatialvid.sample import make_sample

    if args.forward_facing:
        return _run_forward(args)
    if getattr(args, "mode", "room") != "room":
        from spatialvid._sample_handheld import make_handheld_sample
        from spatialvid.errors import SpatialvidError

        if args.hidden_region:
            raise SpatialvidError("--hidden-region only applies to the room sample (--mode room)")
        info = make_handheld_sample(args.out_dir, args.mode, num_frames=60 if args.frames is None else args.frames,
                                    width=320 if args.width is None else args.width,
                                    height=240 if args.height is None else args.height, seed=args.seed, progress=not args.quiet)
        print(f"wrote {info.out_dir}: {args.mode} clip, {info.num_frames} frames {info.width}x{info.height}, "
              f"{info.num_heldout} held-out views, ground-truth cameras and depth in {info.seconds:.1f} s")
        return 0
    info = make_sample(args.out_dir, hidden_region=args.hidden_region,
                       num_frames=60 if args.frames is None else args.frames,
                       width=320 if args.width is None else args.width,
                       height=240 if args.height is None else args.height, seed=args.seed,
                       progress=not args.quiet)
    hidden = " (hidden region: see heldout/hidden_masks.npz)" if info.hidden_region else ""
    print(f"wrote {info.out_dir}: {info.num_frames} frames {info.width}x{info.height}, "
          f"{info.num_heldout} held-out views, {info.num_gaussians:,} ground-truth Gaussians{hidden} "
          f"in {info.seconds:.1f} s")
    return 0
