"""Video / image folder -> posed, undistorted keyframes + sparse points -> :class:`~spatialvid.scene.Scene`.

Scene folder written by :func:`run_sfm` / :func:`scene_from_known_poses`::

    SCENE_DIR/images/<name>        undistorted (pinhole) keyframes at the working resolution
    SCENE_DIR/sparse/0/            COLMAP model (binary) of those images: PINHOLE cameras, normalised world
    SCENE_DIR/sfm/keyframes/       the keyframes before undistortion
    SCENE_DIR/sfm/sparse_original/ COLMAP model with the estimated (distorted) intrinsics, original SfM world
    SCENE_DIR/sfm/database.db      features and matches
    SCENE_DIR/{transforms.json, gaussians.ply, scene.json}   via Scene.save (when ``save=True``)

Cameras are in the normalised world (``metadata["normalization"]`` = 4x4 T, world_normalized = T @
world_original; z up). Gaussians: one isotropic Gaussian per sparse point (scale = mean distance to its 3
nearest neighbours), origin CAPTURED, step 0. ``metadata["sfm"]`` records what was done: keyframe names and
source frame indices/times, registered/dropped frames, timings per stage, original intrinsics.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.sfm.colmap_sfm import (
    SfmConfig,
    extract,
    frustum_points,
    make_colmap_camera,
    match,
    reconstruction_cameras,
    reconstruction_points,
    run_colmap,
    undistort,
)

MAX_LISTED = 12


def _list(names: list[str]) -> str:
    s = ", ".join(names[:MAX_LISTED])
    return s + (f" ... (+{len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else "")


def init_gaussians(xyz: np.ndarray, rgb: np.ndarray, opacity: float = 0.1):
    """Isotropic Gaussians on sparse points; std = mean distance to the 3 nearest neighbours (clipped)."""
    from scipy.spatial import cKDTree

    from spatialvid.gaussians import Gaussians

    xyz = np.asarray(xyz, np.float64)
    if len(xyz) >= 4:
        d, _ = cKDTree(xyz).query(xyz, k=4)
        scale = d[:, 1:].mean(1)
        med = float(np.median(scale)) if np.median(scale) > 0 else 1e-3
        scale = np.clip(scale, 0.1 * med, 10 * med)
        scale = np.maximum(scale, 1e-7)
    else:
        scale = np.full(len(xyz), 0.01)
    return Gaussians.from_points(torch.from_numpy(xyz).float(), torch.from_numpy(np.asarray(rgb)).float(),
                                 scale=torch.from_numpy(scale).float(), opacity=opacity, step=0)


def _check_input(input_path: str | Path) -> Path:
    p = Path(input_path)
    if not p.exists():
        raise SpatialvidError(f"{p}: no such file or folder (give a video file or a folder of images)")
    return p


def _prepare_out(out_dir: Path, src: Path) -> tuple[Path, Path]:
    """Create the scene folder; refuse an output whose replaced sub-folders would hold the input."""
    s = src.resolve()
    for sub in ("images", "sparse", "sfm"):
        d = (out_dir / sub).resolve()
        if s == d or d in s.parents:
            raise SpatialvidError(f"the output folder {out_dir} would overwrite the input {src} (its {sub}/ folder "
                                  "is replaced); choose another -o SCENE_DIR")
    if (out_dir / "transforms.json").exists() or (out_dir / "images").exists():
        if not (out_dir / "scene.json").exists() and not (out_dir / "sfm").is_dir():  # ours (maybe unfinished)
            raise SpatialvidError(f"{out_dir} already holds images/ or transforms.json but is not a spatialvid scene "
                                  "(no scene.json); refusing to overwrite them: choose another -o SCENE_DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "sfm"
    kf_dir = work / "keyframes"
    shutil.rmtree(kf_dir, ignore_errors=True)
    kf_dir.mkdir(parents=True)
    return work, kf_dir


def _single_camera(config: SfmConfig, kind: str, keyframes) -> bool:
    if config.single_camera is not None:
        return bool(config.single_camera)
    if kind == "video":
        return True
    return len({(k.width, k.height) for k in keyframes}) == 1


def _finish(rec, keyframes, ingest, out_dir: Path, work: Path, config: SfmConfig, timings: dict[str, float],
            kind: str, source: str, extra: dict[str, Any], save: bool):
    """Undistort, normalise, write images + sparse model, build the Scene."""
    import pycolmap

    from spatialvid.scene import Scene
    from spatialvid.sfm.align import transform_cameras, transform_points
    from spatialvid.sfm.normalize import normalization_transform

    order = [k.name for k in keyframes]
    reg = [n for n in order if rec.find_image_with_name(n) is not None and rec.find_image_with_name(n).has_pose]
    # original intrinsics, before undistortion
    orig_cams = {}
    for im in rec.images.values():
        cam = rec.cameras[im.camera_id]
        orig_cams[str(im.camera_id)] = {"model": cam.model_name, "width": int(cam.width), "height": int(cam.height),
                                        "params": [float(v) for v in cam.params]}
    orig_dir = work / "sparse_original"
    shutil.rmtree(orig_dir, ignore_errors=True)
    orig_dir.mkdir(parents=True)
    rec.write(str(orig_dir))

    t0 = time.perf_counter()
    und_dir = work / "undistorted"
    shutil.rmtree(und_dir, ignore_errors=True)
    und = undistort(pycolmap.Reconstruction(str(orig_dir)), work / "keyframes", und_dir, reg, config.progress)
    timings["undistort"] = time.perf_counter() - t0

    images_dir = out_dir / "images"
    cams = reconstruction_cameras(und, images_dir, order)
    xyz, rgb = reconstruction_points(und)
    T = normalization_transform(cams, points=xyz)
    cams_n = transform_cameras(cams, T)
    xyz_n = transform_points(xyz, T) if len(xyz) else xyz
    und.transform(pycolmap.Sim3d(T[:3, :]))
    sparse = out_dir / "sparse" / "0"
    shutil.rmtree(out_dir / "sparse", ignore_errors=True)
    sparse.mkdir(parents=True)
    und.write(str(sparse))
    # move undistorted images into SCENE_DIR/images (replacing old ones)
    shutil.rmtree(images_dir, ignore_errors=True)
    shutil.move(str(und_dir / "images"), str(images_dir))
    shutil.rmtree(und_dir, ignore_errors=True)

    if len(xyz_n) == 0:
        xyz_n, rgb = frustum_points(cams_n, seed=config.seed)
        extra.setdefault("notes", []).append("no sparse points: Gaussians initialised randomly inside the frusta")
    gaussians = init_gaussians(xyz_n, rgb)
    frames = {k.name: {"index": k.index, "time": k.time, "source": Path(k.source_path).name if k.source_path
                       else None} for k in keyframes}
    dropped = [n for n in order if n not in set(reg)]
    sfm_meta = {
        "kind": kind,
        "keyframes": len(order),
        "registered": len(reg),
        "dropped": dropped,
        "num_points": int(len(xyz)),
        "mean_reprojection_error": float(rec.compute_mean_reprojection_error()) if rec.num_points3D() else None,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "original_cameras": orig_cams,
        "frames": frames,
        "config": {k: getattr(config, k) for k in ("max_frames", "resolution", "matcher", "mapper", "camera_model",
                                                    "max_features", "seed")},
        **extra,
    }
    metadata = {
        "units": "normalised (cameras within a unit sphere)",
        "up": [0.0, 0.0, 1.0],
        "normalization": T.tolist(),
        "images_dir": "images",
        "source": source,
        "sfm": sfm_meta,
    }
    scene = Scene(gaussians=gaussians, cameras=cams_n, metadata=metadata, history=[])
    if save:
        scene.save(out_dir)
    return scene


def _registration_check(rec, keyframes, config: SfmConfig, notes: list[str]) -> None:
    from spatialvid.sfm.colmap_sfm import MappingError

    names = [k.name for k in keyframes]
    reg = {im.name for im in rec.images.values() if im.has_pose}
    missing = [n for n in names if n not in reg]
    if len(names) - len(missing) < max(3, config.min_registered_fraction * len(names)):
        msg = (f"structure from motion registered only {len(names) - len(missing)} of {len(names)} frames "
               f"(not registered: {_list(missing)}). Try more frames (--max-frames, so neighbouring frames overlap "
               "more) or a higher --resolution; a camera that only rotates or barely moves cannot be reconstructed")
        raise MappingError(msg, [], missing)
    if missing:
        msg = (f"{len(missing)} of {len(names)} frames could not be registered and were dropped "
               f"({_list(missing)}); continuing with {len(names) - len(missing)}")
        notes.append(msg)
        warnings.warn(msg, stacklevel=3)


def _parallax_check(rec) -> None:
    """Fail clearly when all camera centres nearly coincide relative to the scene depth (no parallax)."""
    ims = [im for im in rec.images.values() if im.has_pose]
    if len(ims) < 2 or rec.num_points3D() == 0:
        return
    centers = np.array([np.asarray(im.projection_center()) for im in ims])
    pts = np.array([np.asarray(p.xyz) for p in rec.points3D.values()])
    depth = float(np.median(np.linalg.norm(pts - centers.mean(0), axis=1)))
    baseline = float(np.linalg.norm(centers.max(0) - centers.min(0)))
    if depth > 0 and baseline / depth < 1e-3:
        raise SpatialvidError(
            "the camera barely moves compared with the scene depth (no parallax): the frames look like a static "
            "or purely rotating camera, and a pure rotation cannot be reconstructed in 3D. Film while walking "
            "sideways around or along the scene")


def _no_output_on_error(fn):
    """If ``fn`` fails (bad input found while ingesting, failed registration, ...) and its ``out_dir`` did
    not exist before, remove what it created there: bad input leaves nothing written."""
    import functools
    import inspect

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        out = Path(sig.bind(*args, **kwargs).arguments["out_dir"])
        existed = out.exists()
        try:
            return fn(*args, **kwargs)
        except BaseException:
            if not existed:
                shutil.rmtree(out, ignore_errors=True)
            raise

    return wrapper


@_no_output_on_error
def run_sfm(input_path: str | Path, out_dir: str | Path, config: SfmConfig | None = None,
            save: bool = True):
    """Ingest a video or image folder, run SfM and return a :class:`~spatialvid.scene.Scene`.

    ``input_path``: video file (mp4/mov/webm/mkv...) or folder of images. ``out_dir``: the scene folder (see
    the module docstring; also written with ``Scene.save`` when ``save``). Raises
    :class:`~spatialvid.errors.SpatialvidError` with a plain message on bad input or failed reconstruction;
    then a folder that this call created (or found empty) is left as it was: nothing is written.
    Partial registration (>= ``config.min_registered_fraction``) continues without the dropped frames
    (listed in ``scene.metadata["sfm"]["dropped"]`` and warned about). When mapping fails for a video, the
    keyframes are selected again twice as densely and mapping is retried once (``config.retries``).
    """
    config = config or SfmConfig()
    config.validate()
    src = _check_input(input_path)
    out_dir = Path(out_dir)
    existed = out_dir.exists()
    empty = not existed or (out_dir.is_dir() and not any(out_dir.iterdir()))
    try:
        return _run_sfm(src, out_dir, config, save)
    except SpatialvidError:
        if empty and out_dir.is_dir():  # leave no partial output behind
            if existed:
                for p in list(out_dir.iterdir()):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            else:
                shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _run_sfm(src: Path, out_dir: Path, config: SfmConfig, save: bool):
    from spatialvid.io.keyframes import ingest
    from spatialvid.sfm.colmap_sfm import MappingError

    work, kf_dir = _prepare_out(out_dir, src)
    timings: dict[str, float] = {}
    tried: list[str] = []
    denser = False
    while True:
        t0 = time.perf_counter()
        ing = ingest(src, kf_dir, config.keyframe_config(denser), progress=config.progress)
        timings["ingest"] = time.perf_counter() - t0
        timings.update({f"ingest_{k}": v for k, v in ing.timings.items()})
        kfs = ing.keyframes
        if len(kfs) < 3:
            raise SpatialvidError(f"{src}: only {len(kfs)} usable frames; at least 3 are needed")
        single = _single_camera(config, ing.source.kind, kfs)
        cfg = config.resolved(ing.source.kind)
        long_side = max(kfs[0].width, kfs[0].height)
        notes = list(ing.notes)
        prefix = f"{len(kfs)} keyframes, "
        try:
            run = run_colmap(kf_dir, [k.name for k in kfs], work, cfg, single_camera=single,
                             ordered=ing.source.kind == "video", working_long_side=long_side)
        except MappingError as e:
            tried += [prefix + t for t in e.tried]
            err = e
        else:
            tried += [prefix + t for t in run.tried]
            try:
                _registration_check(run.reconstruction, kfs, cfg, notes)
                break
            except MappingError as e:
                err = e
        if denser or not config.retries or ing.source.kind != "video":
            raise MappingError(err.reason, tried if len(tried) > 1 else [], err.missing) from None
        denser = True  # last retry: twice as many keyframes
        shutil.rmtree(kf_dir, ignore_errors=True)
        kf_dir.mkdir(parents=True)
    config = cfg
    timings.update(run.timings)
    notes += list(run.notes)
    if denser:
        notes.append(f"mapping failed with the first keyframe selection; retried with {len(kfs)} keyframes. "
                     "Tried: " + "; ".join(tried))
    if ing.dropped_blurry:
        notes.append(f"{ing.dropped_blurry} blurry or blank frames were not used as keyframes")
    _parallax_check(run.reconstruction)
    extra = {"notes": notes, "num_pairs": run.num_pairs, "single_camera": single, "known_poses": False,
             "camera_selection": run.camera_selection, "mapper_attempts": tried}
    return _finish(run.reconstruction, kfs, ing, out_dir, work, config, timings, ing.source.kind, str(src),
                   extra, save)


def load_poses(poses_path: str | Path) -> Cameras:
    """Known cameras from a nerfstudio ``transforms.json`` (OpenGL camera-to-world) or a COLMAP model folder."""
    p = Path(poses_path)
    if not p.exists():
        raise SpatialvidError(f"{p}: poses file or folder not found")
    if p.is_dir():
        from spatialvid.formats.colmap import read_colmap

        return read_colmap(p)[0]
    from spatialvid.formats.nerfstudio import read_transforms

    return read_transforms(p)


@_no_output_on_error
def scene_from_known_poses(input_path: str | Path, poses: str | Path | Cameras, out_dir: str | Path,
                           config: SfmConfig | None = None, save: bool = True):
    """Like :func:`run_sfm` but with known cameras (skips pose estimation).

    ``poses``: transforms.json, COLMAP model folder, or :class:`Cameras` whose ``names`` are the input's frame
    names (image file names for a folder; ``frame_00012.png`` = decoded frame 12 for a video; matched by file
    stem). Intrinsics are scaled to the working resolution. Sparse points are triangulated from SIFT matches
    with the known poses (pycolmap ``triangulate_points``); if that yields no points, random points inside
    the camera frusta are used instead.
    """
    import pycolmap

    from spatialvid.io.keyframes import ingest

    config = config or SfmConfig()
    config.validate()
    src = _check_input(input_path)
    known = poses if isinstance(poses, Cameras) else load_poses(poses)
    known.validate("known poses")
    names = list(known.names)
    if len(names) > config.max_frames:  # keep evenly spaced poses
        keep = np.unique(np.round(np.linspace(0, len(names) - 1, config.max_frames)).astype(int)).tolist()
        known = known[keep]
        names = list(known.names)
    out_dir = Path(out_dir)
    work, kf_dir = _prepare_out(out_dir, src)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ing = ingest(src, kf_dir, config.keyframe_config(), progress=config.progress, only_names=names)
    timings["ingest"] = time.perf_counter() - t0
    kfs = ing.keyframes
    # pair each keyframe with its known camera (by stem), scale intrinsics to the working size
    stem_to_cam = {Path(n).stem: i for i, n in enumerate(known.names)}
    cam_idx = []
    for k in kfs:
        i = stem_to_cam.get(Path(k.name).stem)
        if i is None:
            raise SpatialvidError(f"keyframe {k.name} has no pose in the poses file")
        cam_idx.append(i)
    sel = known[cam_idx]
    for j, k in enumerate(kfs):
        w0, h0 = int(sel.width[j]), int(sel.height[j])
        if abs(k.width / w0 - k.height / h0) > 0.02 * max(k.width / w0, k.height / h0):
            raise SpatialvidError(
                f"{k.name}: the poses file says the image is {w0}x{h0} but the input frame is "
                f"{k.width}x{k.height} scaled (a different aspect ratio): the poses do not belong to this input")
    sx = torch.tensor([k.width for k in kfs], dtype=torch.float32) / sel.width.float()
    sy = torch.tensor([k.height for k in kfs], dtype=torch.float32) / sel.height.float()
    sel = sel.clone()
    sel.fx, sel.cx, sel.fy, sel.cy = sel.fx * sx, sel.cx * sx, sel.fy * sy, sel.cy * sy
    sel.width = torch.tensor([k.width for k in kfs])
    sel.height = torch.tensor([k.height for k in kfs])
    names = [k.name for k in kfs]
    intr = [(float(sel.fx[j]), float(sel.fy[j]), float(sel.cx[j]), float(sel.cy[j]), int(sel.width[j]),
             int(sel.height[j]), tuple(float(v) for v in sel.dist[j])) for j in range(len(kfs))]
    single = len(set(intr)) == 1

    db = work / "database.db"
    for p in (db, work / "database.db-wal", work / "database.db-shm"):
        if p.exists():
            p.unlink()
    pycolmap.set_random_seed(int(config.seed))
    t0 = time.perf_counter()
    extract(db, kf_dir, names, config, single, working_long_side=max(kfs[0].width, kfs[0].height))
    timings["extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    npairs = match(db, names, work, config, ordered=True)
    timings["match"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rec = pycolmap.Reconstruction()
    known_cams: dict[int, object] = {}
    with pycolmap.Database.open(str(db)) as database:
        db_images = {im.name: im for im in database.read_all_images()}
        for j, n in enumerate(names):
            cid = db_images[n].camera_id
            if cid not in known_cams:
                fx, fy, cx, cy, w, h, dist = intr[j]
                known_cams[cid] = make_colmap_camera(fx, fy, cx, cy, w, h, dist, cid)
                database.update_camera(known_cams[cid])  # the triangulator checks db and model agree
    for cam in known_cams.values():
        rec.add_camera_with_trivial_rig(cam)
    for j, n in enumerate(names):
        dbi = db_images[n]
        w2c = np.concatenate([sel.R[j].double().numpy(), sel.t[j].double().numpy()[:, None]], 1)
        img = pycolmap.Image(name=n, camera_id=dbi.camera_id, image_id=dbi.image_id)
        rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(w2c))
    tri_dir = work / "triangulated"
    shutil.rmtree(tri_dir, ignore_errors=True)
    tri_dir.mkdir()
    notes: list[str] = []
    try:
        from spatialvid.sfm.colmap_sfm import _quiet

        with _quiet():
            rec = pycolmap.triangulate_points(rec, str(db), str(kf_dir), str(tri_dir))
        rec.extract_colors_for_all_images(str(kf_dir))
    except Exception as e:  # keep the known poses; fall back to frustum init in _finish
        notes.append(f"triangulation with the known poses failed ({type(e).__name__}: {e}); "
                     "Gaussians initialised randomly inside the camera frusta")
    timings["triangulate"] = time.perf_counter() - t0
    if rec.num_points3D() < 10:
        for pid in list(rec.point3D_ids()):
            rec.delete_point3D(pid)
        if not notes:
            notes.append(f"triangulation gave only {rec.num_points3D()} points; Gaussians initialised randomly "
                         "inside the camera frusta")
    extra = {"notes": notes, "num_pairs": npairs, "single_camera": single, "known_poses": True,
             "poses_source": str(poses) if not isinstance(poses, Cameras) else "Cameras"}
    return _finish(rec, kfs, ing, out_dir, work, config, timings, ing.source.kind, str(src), extra, save)
