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

--compare-pycolmap [IMAGES]: also run plain pycolmap defaults (SIFT, exhaustive matching, incremental
mapper, one SIMPLE_RADIAL camera; nothing tuned) on IMAGES -- by default the keyframes our SfM used,
SCENE_DIR/sfm/keyframes -- in a temporary folder, and print its figures and time beside the scene's, so a
capture can be checked against the plain tool. Nothing is written into the scene.
"""


def register(sub) -> None:
    p = add_parser(sub, "eval", help="Compare a scene's camera poses with a reference", description=DESCRIPTION)
    p.add_argument("scene", metavar="SCENE_DIR", help="scene folder (or a transforms.json / COLMAP model folder)")
    p.add_argument("--poses", metavar="REFERENCE", required=True,
                   help="reference poses: transforms.json or COLMAP model folder")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--compare-pycolmap", metavar="IMAGES", nargs="?", const="", default=None,
                   help="also run plain pycolmap defaults on IMAGES (default: SCENE_DIR/sfm/keyframes) and print "
                        "both side by side")
    p.set_defaults(func=run)


def _scene_cameras(path: str):
    from pathlib import Path

    from spatialvid.sfm import load_poses

    p = Path(path)
    if p.is_dir() and (p / "transforms.json").exists():
        return load_poses(p / "transforms.json")
    return load_poses(p)


def _compare_images(args):
    from pathlib import Path

    from spatialvid.errors import SpatialvidError

    if args.compare_pycolmap:
        images = Path(args.compare_pycolmap)
        if not images.is_dir():
            raise SpatialvidError(f"--compare-pycolmap {images}: not a folder of images")
        return images
    images = Path(args.scene) / "sfm" / "keyframes"
    if not images.is_dir():
        raise SpatialvidError(f"{args.scene} has no sfm/keyframes folder (not a scene made by `spatialvid poses`): "
                              "give the images to compare on, --compare-pycolmap IMAGES")
    return images


def _plain(images, ref):
    import tempfile

    from spatialvid.sfm import pose_errors
    from spatialvid.sfm.baseline import plain_pycolmap

    with tempfile.TemporaryDirectory(prefix="spatialvid_pycolmap_") as tmp:
        run = plain_pycolmap(images, tmp)
    err = pose_errors(run.cameras, ref) if run.cameras is not None and len(run.cameras) >= 3 else None
    return run, err


def _short(err) -> dict:
    d = err.to_dict()
    d["missing"] = d["missing"][:50]
    d["unmatched"] = d["unmatched"][:50]
    return d


def run(args) -> int:
    from spatialvid.sfm import load_poses, pose_errors

    est = _scene_cameras(args.scene)
    ref = load_poses(args.poses)
    err = pose_errors(est, ref)
    plain = None
    if args.compare_pycolmap is not None:
        images = _compare_images(args)
        plain = _plain(images, ref)
    if args.json:
        d = _short(err)
        if plain is not None:
            run_, perr = plain
            d = {"scene": d, "pycolmap": {"images": str(images), "num_images": run_.num_images,
                                          "seconds": round(run_.seconds, 2),
                                          "errors": _short(perr) if perr is not None else None}}
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
    if plain is not None:
        run_, perr = plain
        print(f"plain pycolmap defaults on {images} ({run_.num_images} images, {run_.seconds:.1f} s):")
        if perr is None:
            print("  no reconstruction (fewer than 3 images registered)")
        else:
            print(f"  registered {perr.registered}/{perr.total_reference}, rotation median {perr.rot_median_deg:.3f} deg "
                  f"(max {perr.rot_max_deg:.3f}), centres RMSE {perr.center_rmse_pct:.3f}%")
        print(f"  scene:     registered {err.registered}/{err.total_reference}, rotation median "
              f"{err.rot_median_deg:.3f} deg (max {err.rot_max_deg:.3f}), centres RMSE {err.center_rmse_pct:.3f}%")
    return 0
