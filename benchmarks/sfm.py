"""Ingest + structure-from-motion speed and accuracy on fox (real photos) and on the bundled sample video.

Usage: python benchmarks/sfm.py [--json] [--fox DIR] [--sample DIR] [--fox-resolution 960] [--skip-fox]
       [--skip-sample] [--threads N] [--compare-pycolmap [--forward DIR] [--skip-forward]]

Per data set: seconds per stage -- decode (one pure decoding pass over the input at the working resolution,
measured separately), select (keyframe analysis: decode + blur + motion, then selection), write (keyframes
written at the working resolution), extract (SIFT), match (pairing + geometric verification), map
(incremental mapping), undistort -- plus total (the whole ``run_sfm`` call), cpu_s (process CPU time, all
threads: independent of other load on the machine), load average at the start, keyframes, registered,
sparse points, and the pose errors after a Sim3 alignment to the reference (fox: its own COLMAP poses; the
sample: analytic ground truth): median/max rotation error (degrees), camera-centre RMSE in % of the
trajectory extent. The sample is generated into a temporary folder unless ``--sample`` names an existing one.
The last line of output is one JSON list.

``--compare-pycolmap``: instead, per data set (fox photos, the bundled sample's 60 frames as an image folder,
the forward-facing sample's 24 photos made by ``spatialvid sample --forward-facing``), run our ``poses``
pipeline (``run_sfm`` with default settings: fox at a 960 px long side) and plain pycolmap defaults
(:func:`spatialvid.sfm.baseline.plain_pycolmap`: SIFT, exhaustive matching, incremental mapper, one
SIMPLE_RADIAL camera, on the same image files at their own size) one after the other, and print both side by
side: registered images, median rotation error (degrees) and camera-centre RMSE (% of the trajectory extent)
after Sim3 alignment to the ground truth, wall-clock seconds, plus the camera model we kept and whether ours
meets the bar (registers at least as many images; median rotation error <= 1.1 x pycolmap's or < 0.3 deg).
Usage: python benchmarks/sfm.py --compare-pycolmap [--json] [--skip-fox] [--forward DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOX = REPO.parent / "shared" / "data" / "fox"


def _decode_pass(path: Path, resolution) -> float:
    from spatialvid.io import iter_frames

    t0 = time.perf_counter()
    for _ in iter_frames(path, resolution=resolution):
        pass
    return time.perf_counter() - t0


def bench(name: str, input_path: Path, reference: Path, resolution, threads: int, workdir: Path) -> dict:
    from spatialvid.sfm import SfmConfig, load_poses, pose_errors, run_sfm

    rec: dict = {"dataset": name, "input": str(input_path), "resolution": resolution,
                 "load_avg_1min": os.getloadavg()[0], "threads": threads}
    rec["decode_s"] = round(_decode_pass(input_path, resolution), 3)
    cfg = SfmConfig(resolution=resolution, progress=False, num_threads=threads)
    c0, t0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = run_sfm(input_path, workdir / f"scene_{name}", cfg, save=True)
    rec["total_s"] = round(time.perf_counter() - t0, 3)
    rec["cpu_s"] = round(time.process_time() - c0, 3)
    t = scene.metadata["sfm"]["timings"]
    rec["select_s"] = round(t.get("ingest_analyse", 0.0) + t.get("ingest_select", 0.0), 3)
    rec["write_s"] = round(t.get("ingest_write", 0.0), 3)
    for k in ("extract", "match", "map", "undistort"):
        rec[f"{k}_s"] = round(t.get(k, 0.0), 3)
    sfm = scene.metadata["sfm"]
    rec.update(keyframes=sfm["keyframes"], registered=sfm["registered"], points=sfm["num_points"],
               camera=list(sfm["original_cameras"].values())[0]["model"],
               width=int(scene.cameras.width[0]), height=int(scene.cameras.height[0]))
    err = pose_errors(scene.cameras, load_poses(reference))
    rec.update(reference_frames=err.total_reference, matched=err.registered,
               rot_median_deg=round(err.rot_median_deg, 4), rot_max_deg=round(err.rot_max_deg, 4),
               center_rmse_pct=round(err.center_rmse_pct, 4))
    return rec


def _errors(cameras, reference: Path) -> dict:
    from spatialvid.sfm import load_poses, pose_errors

    if cameras is None:
        return {"registered": 0, "rot_median_deg": None, "center_rmse_pct": None}
    e = pose_errors(cameras, load_poses(reference))
    return {"registered": e.registered, "rot_median_deg": round(e.rot_median_deg, 4),
            "center_rmse_pct": round(e.center_rmse_pct, 4)}


def compare(name: str, images: Path, reference: Path, resolution, threads: int, workdir: Path) -> dict:
    """Ours (``run_sfm``) and plain pycolmap defaults on the same image folder, side by side."""
    from spatialvid.errors import SpatialvidError
    from spatialvid.io.decode import list_images
    from spatialvid.sfm import SfmConfig, run_sfm
    from spatialvid.sfm.baseline import plain_pycolmap

    rec: dict = {"dataset": name, "input": str(images), "images": len(list_images(images)),
                 "resolution": resolution, "threads": threads, "load_avg_1min": round(os.getloadavg()[0], 2)}
    cfg = SfmConfig(resolution=resolution, progress=False, num_threads=threads)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scene = run_sfm(images, workdir / f"ours_{name}", cfg, save=True)
        ours, sfm = scene.cameras, scene.metadata["sfm"]
        rec["ours_camera"] = (sfm.get("camera_selection") or {}).get("chosen") or \
            list(sfm["original_cameras"].values())[0]["model"]
        rec["ours_width"], rec["ours_height"] = int(scene.cameras.width[0]), int(scene.cameras.height[0])
    except SpatialvidError as e:
        ours = None
        rec["ours_error"] = str(e)
    rec["ours_s"] = round(time.perf_counter() - t0, 2)
    rec.update({f"ours_{k}": v for k, v in _errors(ours, reference).items()})
    plain = plain_pycolmap(images, workdir / f"pycolmap_{name}", num_threads=threads)
    rec["pycolmap_s"] = round(plain.seconds, 2)
    rec.update({f"pycolmap_{k}": v for k, v in _errors(plain.cameras, reference).items()})
    ro, rp = rec["ours_rot_median_deg"], rec["pycolmap_rot_median_deg"]
    rec["registers_at_least_pycolmap"] = rec["ours_registered"] >= rec["pycolmap_registered"]
    rec["rotation_ok"] = ro is not None and (ro < 0.3 or (rp is not None and ro <= 1.1 * rp))
    return rec


def _table(records: list[dict]) -> str:
    def f(v, d=3):
        return "-" if v is None else f"{v:.{d}f}"

    lines = ["| data | images | ours: registered, rot. median (deg), centre RMSE (%), time (s) "
             "| plain pycolmap: registered, rot., centre, time |", "|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['dataset']} | {r['images']} | {r['ours_registered']}, {f(r['ours_rot_median_deg'])}, "
                     f"{f(r['ours_center_rmse_pct'])}, {r['ours_s']:.1f} | {r['pycolmap_registered']}, "
                     f"{f(r['pycolmap_rot_median_deg'])}, {f(r['pycolmap_center_rmse_pct'])}, {r['pycolmap_s']:.1f} |")
    return "\n".join(lines)


def main_compare(args) -> int:
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_sfm_cmp_") as tmp:
        work = Path(tmp)
        sets = []
        if not args.skip_fox:
            if (args.fox / "transforms.json").exists():
                res = int(args.fox_resolution) if args.fox_resolution > 1 else args.fox_resolution
                sets.append(("fox", args.fox / "images", args.fox / "transforms.json", res))
            elif not args.json:
                print(f"fox not found at {args.fox}; skipped", file=sys.stderr)
        if not args.skip_sample:
            sample = args.sample
            if sample is None or not (sample / "images").is_dir():
                from spatialvid.sample import make_sample

                sample = make_sample(work / "sample", progress=False).out_dir
            sets.append(("sample", sample / "images", sample / "transforms.json", 960))
        if not args.skip_forward:
            fwd = args.forward
            if fwd is None or not (fwd / "images").is_dir():
                from spatialvid._sample_forward import make_forward_sample

                fwd = make_forward_sample(work / "forward", progress=False).out_dir
            sets.append(("forward", fwd / "images", fwd / "transforms.json", 960))
        for name, images, ref, res in sets:
            r = compare(name, images, ref, res, args.threads, work)
            records.append(r)
            if not args.json:
                print(json.dumps(r), file=sys.stderr)
    if not args.json:
        print(_table(records), file=sys.stderr)
    print(json.dumps(records))
    return 0


def main_handheld(args) -> int:
    """``--handheld``: the hand-held test clips (``spatialvid sample --mode ...``) through ``poses`` from their
    video: keyframes registered, rotation / centre error against the clip's ground truth, time, or the
    refusal message (the rotation clip must be refused)."""
    from spatialvid._sample_handheld import make_handheld_sample
    from spatialvid.errors import SpatialvidError
    from spatialvid.sfm import SfmConfig, run_sfm

    records = []
    with tempfile.TemporaryDirectory(prefix="bench_sfm_hh_") as tmp:
        work = Path(tmp)
        for mode in args.handheld.split(","):
            clip = make_handheld_sample(work / mode, mode, progress=False).out_dir
            rec = {"dataset": f"handheld-{mode}", "frames": 60}
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scene = run_sfm(clip / "video.mp4", work / f"scene_{mode}",
                                    SfmConfig(progress=False, num_threads=args.threads), save=True)
                rec["keyframes"] = scene.metadata["sfm"].get("keyframes")
                rec.update(_errors(scene.cameras, clip / "transforms.json"))
                rec["mapper_attempts"] = len(scene.metadata["sfm"].get("mapper_attempts") or [])
            except SpatialvidError as e:
                rec["refused"] = str(e).splitlines()[0][:200]
                rec["output_left"] = (work / f"scene_{mode}").exists()
            rec["seconds"] = round(time.perf_counter() - t0, 1)
            records.append(rec)
            if not args.json:
                print(json.dumps(rec), file=sys.stderr)
    print(json.dumps(records))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="only print the JSON list")
    ap.add_argument("--fox", type=Path, default=DEFAULT_FOX, help="fox data set folder (images/ + transforms.json)")
    ap.add_argument("--fox-resolution", type=float, default=960, help="working long side for fox (default 960)")
    ap.add_argument("--sample", type=Path, default=None, help="existing sample folder (default: generate one)")
    ap.add_argument("--skip-fox", action="store_true")
    ap.add_argument("--skip-sample", action="store_true")
    ap.add_argument("--threads", type=int, default=-1, help="threads for COLMAP (-1 = all cores)")
    ap.add_argument("--compare-pycolmap", action="store_true",
                    help="ours vs plain pycolmap defaults side by side on fox, the sample and the forward-facing sample")
    ap.add_argument("--forward", type=Path, default=None,
                    help="existing forward-facing sample folder (default: generate one)")
    ap.add_argument("--skip-forward", action="store_true")
    ap.add_argument("--handheld", default=None, metavar="MODES",
                    help="the hand-held test clips instead, e.g. table,low-texture,blur,rotation")
    args = ap.parse_args(argv)
    if args.handheld:
        return main_handheld(args)
    if args.compare_pycolmap:
        return main_compare(args)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_sfm_") as tmp:
        work = Path(tmp)
        if not args.skip_sample:
            sample = args.sample
            if sample is None or not (sample / "video.mp4").exists():
                from spatialvid.sample import make_sample

                t0 = time.perf_counter()
                sample = make_sample(work / "sample").out_dir
                if not args.json:
                    print(f"sample generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            r = bench("sample", sample / "video.mp4", sample / "transforms.json", 960, args.threads, work)
            records.append(r)
            if not args.json:
                print(json.dumps(r), file=sys.stderr)
        if not args.skip_fox:
            if not (args.fox / "transforms.json").exists():
                print(f"fox not found at {args.fox}; skipped", file=sys.stderr)
            else:
                res = int(args.fox_resolution) if args.fox_resolution > 1 else args.fox_resolution
                r = bench("fox", args.fox / "images", args.fox / "transforms.json", res, args.threads, work)
                records.append(r)
                if not args.json:
                    print(json.dumps(r), file=sys.stderr)
    print(json.dumps(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
