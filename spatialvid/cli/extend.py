"""`spatialvid extend`: add a new clip to an existing scene (registered in its frame) and continue training."""

from __future__ import annotations

import json

from spatialvid.cli._common import add_parser
from spatialvid.errors import SpatialvidError

DESCRIPTION = """\
Add NEW_INPUT to the scene in SCENE_DIR, in the scene's own frame and scale, and continue training.

NEW_INPUT: a video or an image folder of the same place. Its keyframes are matched with the scene's
images and registered by continuing the scene's SfM model (SCENE_DIR/sfm, written by `spatialvid poses` or
`reconstruct` from a video / image folder) with the scene's frames fixed; the scene's normalisation is
applied. With --poses FILE (transforms.json or COLMAP model of the new frames), the poses are aligned to the
scene by a similarity transform on the frames they share with the scene (no SfM model needed).
Frames that do not register are listed with the reason; if fewer than half register, nothing is written.

Training then continues over the old + new cameras (half and half) for --steps: the Gaussians
the new frames see, new ones on the new sparse points and new ones seeded from the real pixels where the
scene does not cover a new frame are optimised (and densified), every other Gaussian keeps its values;
generated (filled) Gaussians the new frames see are removed. Cameras keep their poses (the registration
places the new ones; --refine-poses also refines registered new cameras during training); the scene's own
cameras stay as they are. The extended scene has SH degree 3 (--sh-degree; the added bands start at zero,
so the old views render as before). The scene is updated in place; its history
gets an 'extend' entry and the previous scene is kept under SCENE_DIR/history/ so --undo restores it exactly.
"""

EPILOG = """\
examples:
  spatialvid extend scenes/room second_walk.mp4
  spatialvid extend scenes/fox more_photos/ --steps 1500
  spatialvid extend scenes/fox more_photos/ --poses more_photos/transforms.json
  spatialvid extend scenes/room --undo
"""


def register(sub) -> None:
    p = add_parser(sub, "extend", help="Add a new clip to a scene and continue training", description=DESCRIPTION)
    p.epilog = EPILOG
    p.add_argument("scene", metavar="SCENE_DIR", help="scene folder (updated in place)")
    p.add_argument("input", metavar="NEW_INPUT", nargs="?", help="video, image folder or posed folder to add")
    p.add_argument("--poses", metavar="FILE", help="known poses of the new frames (transforms.json or COLMAP model)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps after registration (default: a third of the scene's reconstruct steps, "
                        "at least 300)")
    p.add_argument("--refine-poses", action="store_true",
                   help="also refine the registered new cameras' poses during training (not with --poses)")
    p.add_argument("--sh-degree", type=int, choices=range(4), default=None, metavar="{0,1,2,3}",
                   help="SH degree of the extended scene (default 3: the new views see the surfaces from new "
                        "directions; higher bands start at zero; never below the scene's)")
    p.add_argument("--backend", choices=["auto", "cpu", "cuda", "torch"], default=None, help="rasterizer backend")
    p.add_argument("--undo", action="store_true", help="restore the scene as it was before its last extend")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from spatialvid.train.extend import extend_scene, undo_extend

    if args.undo:
        if args.input:
            raise SpatialvidError("--undo takes only SCENE_DIR (no NEW_INPUT)")
        r = undo_extend(args.scene)
        print(json.dumps(r) if args.json else
              f"undid the extend (step {r['undid']}): removed its {r['removed_cameras']} cameras; the scene is as "
              f"before it -> {args.scene}")
        return 0
    if not args.input:
        raise SpatialvidError("give NEW_INPUT (a video, an image folder or posed frames), or --undo")
    if args.steps is not None and args.steps < 1:
        raise SpatialvidError(f"--steps must be >= 1, got {args.steps}")
    overrides = {"backend": args.backend} if args.backend else None
    res = extend_scene(args.scene, args.input, poses=args.poses, steps=args.steps, overrides=overrides,
                       refine_poses=args.refine_poses, sh_degree=args.sh_degree,
                       progress=not args.quiet, log=(lambda *a, **k: None) if args.json or args.quiet else print)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    print(f"extended {args.scene}: {len(res.registered)} new cameras"
          + (f", {len(res.dropped)} frames dropped" if res.dropped else "")
          + f"; {res.added:,} Gaussians added, {res.removed_generated:,} generated ones replaced; "
          f"{res.num_gaussians:,} in all ({res.seconds:.0f} s)")
    for name, why in list(res.dropped.items())[:12]:
        print(f"  dropped {name}: {why}")
    return 0
