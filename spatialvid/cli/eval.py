"""`spatialvid eval`: compare a scene's camera poses with a reference."""

from __future__ import annotations

import json

from spatialvid.cli._common import add_parser

DESCRIPTION = """\
Compare the cameras of a scene folder with reference poses and print:
  registered   how many reference frames the scene has a camera for (matched by image file stem,
               so images/frame_00012.png matches the keyframe frame_00012.png)
  rotation     median / max camera orientation error in degrees
  centres      camera-centre RMSE as a percentage of the reference trajectory extent
               (diagonal of the bounding box of the reference camera centres)
after a similarity (Sim3: rotation, translation, scale) alignment of the scene's camera centres onto the
reference's (Umeyama least squares), since SfM has no absolute frame or scale.

REFERENCE: a nerfstudio transforms.json (OpenGL camera-to-world matrices) or a COLMAP model folder
(world-to-camera). The scene's own transforms.json is read the same way.
"""


def register(sub) -> None:
    p = add_parser(sub, "eval", help="Compare a scene's camera poses with a reference", description=DESCRIPTION)
    p.add_argument("scene", metavar="SCENE_DIR", help="scene folder (or a transforms.json / COLMAP model folder)")
    p.add_argument("--poses", metavar="REFERENCE", required=True,
                   help="reference poses: transforms.json or COLMAP model folder")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(func=run)


def _scene_cameras(path: str):
    from pathlib import Path

    from spatialvid.sfm import load_poses

    p = Path(path)
    if p.is_dir() and (p / "transforms.json").exists():
        return load_poses(p / "transforms.json")
    return load_poses(p)


def run(args) -> int:
    from spatialvid.sfm import load_poses, pose_errors

    est = _scene_cameras(args.scene)
    ref = load_poses(args.poses)
    err = pose_errors(est, ref)
    if args.json:
        d = err.to_dict()
        d["missing"] = d["missing"][:50]
        d["unmatched"] = d["unmatched"][:50]
        print(json.dumps(d))
        return 0
    print(f"registered:  {err.registered}/{err.total_reference} reference frames"
          + (f" (missing e.g. {', '.join(err.missing[:5])})" if err.missing else ""))
    print(f"rotation:    median {err.rot_median_deg:.3f} deg, mean {err.rot_mean_deg:.3f}, max {err.rot_max_deg:.3f}")
    print(f"centres:     RMSE {err.center_rmse_pct:.3f}% of the trajectory extent "
          f"({err.center_rmse:.4g} / {err.extent:.4g} reference units)")
    print(f"sim3 scale:  {err.scale:.6g} reference units per scene unit")
    if err.unmatched:
        print(f"note: {len(err.unmatched)} scene cameras have no reference (e.g. {', '.join(err.unmatched[:5])})")
    return 0
