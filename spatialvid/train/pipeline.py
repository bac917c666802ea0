"""``reconstruct``: input (video, image folder, scene or posed folder) -> trained scene folder.

Output folder (SCENE_DIR): the scene (``gaussians.ply``, ``transforms.json``, ``scene.json``), ``metrics.json``
(held-out PSNR/SSIM/LPIPS, Gaussian count, steps, training time, held-out image names),
``training_curve.png``, ``eval/`` (ground truth | render for each held-out view) and
``checkpoints/last.pt`` (for ``--resume``).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spatialvid.atomic import recover_dir, replace_dir
from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.faults import fault_point
from spatialvid.train.checkpoint import CHECKPOINT_DIR, checkpoint_path
from spatialvid.train.config import TrainConfig

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
OUTPUT_NAMES = ("gaussians.ply", "transforms.json", "scene.json", "metrics.json", "training_curve.png",
                "eval", CHECKPOINT_DIR)


@dataclass
class ResolvedInput:
    """What training needs from the input: cameras (with image paths), optional sparse points, provenance."""

    cameras: Cameras
    points: torch.Tensor | None = None
    colors: torch.Tensor | None = None
    known_poses: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _read_ply_points(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        from plyfile import PlyData

        v = PlyData.read(str(path))["vertex"]
        xyz = torch.tensor([[a, b, c] for a, b, c in zip(v["x"], v["y"], v["z"])], dtype=torch.float32)
        names = v.data.dtype.names
        if all(k in names for k in ("red", "green", "blue")):
            rgb = torch.stack([torch.as_tensor(v[k].astype("float32")) for k in ("red", "green", "blue")], -1) / 255
        else:
            rgb = torch.full_like(xyz, 0.5)
        return xyz, rgb
    except Exception:
        return None


def _match_images(cameras: Cameras, folder: Path) -> Cameras:
    """Point each camera at the image of the same file name in ``folder`` (or keep its path if it exists)."""
    by_name = {p.name: p for p in _list_images(folder)}
    by_stem = {p.stem: p for p in by_name.values()}
    paths, missing = [], []
    for name, old in zip(cameras.names, cameras.image_paths):
        cand = by_name.get(Path(name).name) or by_stem.get(Path(name).stem)
        if cand is None and old and Path(old).is_file():
            cand = Path(old)
        if cand is None:
            missing.append(name)
            paths.append("")
        else:
            paths.append(str(cand.resolve()))
    if missing:
        raise SpatialvidError(f"{folder}: no image for {len(missing)} of {len(cameras)} posed frames "
                              f"(first: {missing[0]}); image names must match the poses file")
    cams = cameras.clone()
    cams.image_paths = paths
    return cams


def read_poses_file(poses: Path) -> ResolvedInput:
    """transforms.json (nerfstudio) or a COLMAP model folder -> cameras (+ points where the file has them)."""
    if poses.is_dir():
        from spatialvid.formats.colmap import read_colmap

        cams, xyz, rgb = read_colmap(poses)
        return ResolvedInput(cams, torch.as_tensor(xyz).float(), torch.as_tensor(rgb).float(), True,
                             {"source": str(poses), "poses": "colmap"})
    from spatialvid.formats.nerfstudio import read_transforms_extra

    cams, extra = read_transforms_extra(poses)
    pts = rgb = None
    ply = extra.get("ply_file_path")
    if isinstance(ply, str) and (poses.parent / ply).is_file():
        got = _read_ply_points(poses.parent / ply)
        if got is not None:
            pts, rgb = got
    return ResolvedInput(cams, pts, rgb, True, {"source": str(poses), "poses": "transforms.json"})


def _random_fallback_notes(metadata: dict) -> list[str]:
    """Notes of a pose-estimation result whose points are a random frustum fill, not triangulated."""
    sfm = metadata.get("sfm")
    notes = sfm.get("notes", []) if isinstance(sfm, dict) else []
    return [n for n in notes if isinstance(n, str) and "random" in n]


def _scene_to_input(scene, known: bool, timings: dict[str, float] | None = None) -> ResolvedInput:
    g = scene.gaussians
    if _random_fallback_notes(scene.metadata):  # no real points: let the trainer make its random init
        g = g[:0]
    return ResolvedInput(scene.cameras, g.means.detach() if len(g) else None, g.colors.detach() if len(g) else None,
                         known, dict(scene.metadata), list(scene.history), dict(timings or {}))


def _sfm(input_path: Path, poses: Path | None, out_dir: Path | None, progress: bool) -> ResolvedInput:
    """Poses (and sparse points) by :mod:`spatialvid.sfm`: estimated from a video / image folder, or
    triangulated with known ``poses``. Its undistorted keyframes and sparse model go to ``out_dir``."""
    try:
        from spatialvid.sfm import SfmConfig, run_sfm, scene_from_known_poses
    except ImportError:
        raise SpatialvidError("pose estimation (spatialvid.sfm) is not available in this build; give known "
                              "poses with a transforms.json beside the images") from None
    if out_dir is None:
        raise SpatialvidError("pose estimation needs an output folder")
    t0 = time.perf_counter()
    cfg = SfmConfig(progress=progress)
    if poses is not None:
        scene = scene_from_known_poses(input_path, poses, out_dir, cfg, save=True)
    else:
        scene = run_sfm(input_path, out_dir, cfg, save=True)
    return _scene_to_input(scene, poses is not None, {"poses_seconds": round(time.perf_counter() - t0, 2)})


def _estimated(metadata: dict) -> bool:
    sfm = metadata.get("sfm")
    return isinstance(sfm, dict) and sfm.get("known_poses") is False


def resolve_input(input_path: str | Path, poses: str | Path | None = None, out_dir: str | Path | None = None,
                  progress: bool = True, init: str = "auto", resume: bool = False) -> ResolvedInput:
    """Work out what ``input_path`` is and return cameras with images (validated before any training).

    * a scene folder (scene.json): its cameras and Gaussians (as initial points);
    * a folder with transforms.json / sparse/0 (and no ``poses``): those cameras, images beside them, and the
      sparse points of the model / the point cloud the file names (``ply_file_path``); without one, points
      triangulated with the known poses (``init == "auto"``; random points if that fails or ``init`` is
      ``"random"``);
    * ``poses`` given: cameras from it, sparse points triangulated with them by spatialvid.sfm (images
      undistorted into ``out_dir``) unless ``init == "random"``, which skips triangulation;
    * a video or an image folder: spatialvid.sfm estimates the poses (into ``out_dir``).
    On ``resume`` a pose-estimation result already in ``out_dir`` is reused.
    """
    inp = Path(input_path)
    if not inp.exists():
        raise SpatialvidError(f"{inp}: input not found")
    pose_path = None
    if poses is not None:
        pose_path = Path(poses)
        if not pose_path.exists() and inp.is_dir() and (inp / pose_path).exists():
            pose_path = inp / pose_path
        if not pose_path.exists():
            raise SpatialvidError(f"{poses}: poses file not found")
    if inp.is_dir() and (inp / "scene.json").exists() and pose_path is None:
        from spatialvid.scene import Scene

        scene = Scene.load(inp)
        return _scene_to_input(scene, not _estimated(scene.metadata))
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is not None and (out / "scene.json").exists():
        from spatialvid.scene import Scene

        scene = Scene.load(out)  # the SfM result written before training started
        if "sfm" in scene.metadata:
            return _scene_to_input(scene, not _estimated(scene.metadata))
    explicit = pose_path is not None
    if pose_path is None and inp.is_dir():
        for name in ("transforms.json", "sparse/0", "colmap/sparse/0"):
            if (inp / name).exists():
                pose_path = inp / name
                break
    img_dir = inp
    if inp.is_dir() and not _list_images(inp) and (inp / "images").is_dir():
        img_dir = inp / "images"
    is_video = inp.is_file() and inp.suffix.lower() in VIDEO_EXTS
    if pose_path is not None:
        if is_video or (explicit and init != "random"):
            return _sfm(inp if is_video else img_dir, pose_path, out, progress)
        res = read_poses_file(pose_path)
        if inp.is_dir() and not all(p and Path(p).is_file() for p in res.cameras.image_paths):
            res.cameras = _match_images(res.cameras, img_dir)
        res.metadata.setdefault("source", str(inp))
        if res.points is None and init == "auto" and out is not None and pose_path.is_file():
            # no point cloud beside the poses: triangulate one with them (the 3DGS recipe starts from SfM
            # points; on the bundled sample that is worth ~5 dB over random points); random if that fails
            try:
                return _sfm(img_dir, pose_path, out, progress)
            except (SpatialvidError, RuntimeError, ValueError) as e:
                res.metadata["init_fallback"] = f"triangulation with the known poses failed ({e}); random init"
        return res
    if inp.is_file() and not is_video:
        raise SpatialvidError(f"{inp}: not a video ({', '.join(sorted(VIDEO_EXTS))}), an image folder or a "
                              "scene folder")
    if inp.is_dir() and not _list_images(img_dir):
        raise SpatialvidError(f"{inp}: folder has no images, no transforms.json and no scene.json")
    return _sfm(inp if is_video else img_dir, None, out, progress)


def check_output(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an existing output folder unless ``overwrite``; ``resume`` needs a checkpoint.
    Deletes nothing (see :func:`clean_output`), so bad input found later leaves the old folder intact."""
    if resume:
        if not checkpoint_path(out_dir).is_file():
            raise SpatialvidError(f"{out_dir}: nothing to resume (no {CHECKPOINT_DIR}/last.pt); drop --resume")
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise SpatialvidError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SpatialvidError(f"{out_dir}: output folder exists and is not empty; pass --overwrite to replace "
                              "it or --resume to continue its training")


def clean_output(out_dir: Path, keep_sfm: bool = False) -> None:
    """Remove what a previous reconstruct wrote into ``out_dir`` (only spatialvid's own output names);
    ``keep_sfm`` keeps the scene files that pose estimation just wrote there."""
    for name in OUTPUT_NAMES:
        if keep_sfm and name in ("gaussians.ply", "transforms.json", "scene.json"):
            continue
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def reconstruct(input_path: str | Path, out_dir: str | Path, cfg: TrainConfig, poses: str | Path | None = None,
                resume: bool = False, overwrite: bool = False, progress: bool = True, preset: str | None = None,
                log=print, on_step=None, on_step_every: int = 1, on_train_start=None, dist=None) -> dict[str, Any]:
    """Train a scene from ``input_path`` into ``out_dir``; returns the metrics dict (also in metrics.json).

    ``on_step`` / ``on_step_every``: step callback(s) given to :class:`~spatialvid.train.trainer.Trainer`
    (called with a :class:`~spatialvid.train.trainer.StepEvent`). ``on_train_start(scene)`` is called once
    before the first step with the starting :class:`~spatialvid.scene.Scene` (initial or resumed Gaussians,
    cameras at the training resolution), e.g. to open a live view.
    ``dist`` (a :class:`~spatialvid.train.distributed.Distributed`): one of several ranks training together;
    rank 0 resolves the input and writes every file (callbacks, progress and log run there only), every rank
    loads the images, trains its share of each batch and returns the same metrics.
    """
    cfg.validate()
    final = Path(out_dir)
    t_all = time.perf_counter()
    if dist is not None:  # several ranks: rank 0 checks the output in _reconstruct (no staged --overwrite)
        return _reconstruct(input_path, final, cfg, poses, resume, progress, preset, log, on_step, on_step_every,
                            on_train_start, t_all, dist=dist, overwrite=overwrite)
    if recover_dir(final):
        log(f"{final}: put back the previous output that an interrupted --overwrite had moved aside")
    check_output(final, resume, overwrite)
    # --overwrite of a non-empty folder builds in a hidden sibling and swaps it in at the end, so a killed
    # or failed run leaves the old outputs as they were
    staging = None
    if overwrite and not resume and final.is_dir() and any(final.iterdir()):
        src = Path(input_path).resolve()
        for sub in ("images", "sparse", "sfm"):
            d = (final / sub).resolve()
            if src == d or d in src.parents:
                raise SpatialvidError(f"the output folder {final} would overwrite the input {input_path} (its {sub}/ "
                                      "folder is replaced); choose another -o SCENE_DIR")
        staging = final.with_name(f".{final.name}.overwrite.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    try:
        metrics = _reconstruct(input_path, final if staging is None else staging, cfg, poses, resume, progress,
                               preset, log, on_step, on_step_every, on_train_start, t_all)
        if staging is not None:
            _carry_over(final, staging)
            fault_point("reconstruct:before-swap")
            replace_dir(staging, final)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return metrics


def _declare_images_dir(scene, out: Path) -> None:
    """Record the folder the training images live in (``images_dir``: relative when inside the scene
    folder, else absolute), the one folder besides the scene that readers such as the viewer open images from."""
    if scene.metadata.get("images_dir"):
        return
    parents = {str(Path(p).resolve().parent) for p in scene.cameras.image_paths if p}
    if len(parents) != 1:
        return
    d = Path(parents.pop())
    scene.metadata["images_dir"] = str(d.relative_to(out.resolve())) if d.is_relative_to(out.resolve()) else str(d)


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link (or copy) what ``old`` holds besides reconstruct's own outputs into ``new`` (images, sparse
    models, the user's files), as an in-place run would have kept them."""
    for p in old.iterdir():
        if p.name in OUTPUT_NAMES or (new / p.name).exists():
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.copytree(p, new / p.name, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(p, new / p.name)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _reconstruct(input_path, out: Path, cfg: TrainConfig, poses, resume: bool, progress: bool, preset, log,
                 on_step, on_step_every: int, on_train_start, t_all: float, dist=None,
                 overwrite: bool = False) -> dict[str, Any]:
    from spatialvid.gaussians import Gaussians
    from spatialvid.scene import Scene
    from spatialvid.train.data import make_train_data
    from spatialvid.train.eval import CURVE_PNG, plot_curve, write_metrics
    from spatialvid.train.trainer import Trainer

    main = dist is None or dist.is_main
    if dist is not None:
        dist.check_batch(cfg.batch_size)
    if not main:
        progress, on_step, on_train_start = False, None, None
        log = _quiet

    def prepare() -> ResolvedInput:
        if dist is not None:  # single-process runs checked the output in reconstruct()
            check_output(out, resume, overwrite)
        return resolve_input(input_path, poses, out, progress, init=cfg.init, resume=resume)

    res = prepare() if dist is None else dist.on_main(prepare)  # pose estimation runs once, on rank 0
    t0 = time.perf_counter()

    def load():
        return make_train_data(res.cameras, cfg, res.points, res.colors, res.known_poses, progress=progress,
                               metadata=res.metadata)

    data = load() if dist is None else dist.agree(load)  # every rank reads the images (same paths)
    if cfg.depth_sparse_weight > 0:
        from spatialvid.train.data import sparse_observations

        data.sparse_depth = sparse_observations(out / "sparse" / "0", data.cameras)
        if data.sparse_depth is None:
            log("depth_sparse_weight: no SfM model with the images' points (sparse/0); the depth term is off")
    load_s = time.perf_counter() - t0
    if "init_fallback" in res.metadata:
        log(res.metadata.pop("init_fallback"))
    for note in _random_fallback_notes(res.metadata):
        log(note)
    trainer = Trainer(data, cfg, out, progress=progress, on_step=on_step, on_step_every=on_step_every, dist=dist)
    fault_point("reconstruct:after-poses")
    if not resume and main:  # after the ranks' input check: a refused run leaves the folder as it was
        clean_output(out, keep_sfm="sfm" in res.metadata and res.metadata.get("images_dir") == "images")
    w, h = int(data.cameras.width[0]), int(data.cameras.height[0])
    ranks = "" if dist is None else f" on {dist.world_size} ranks ({dist.backend})"
    if resume:
        trainer.resume()
        log(f"resuming from step {trainer.step} of {cfg.steps}{ranks}")
    else:
        log(f"training {len(data.train_idx)} images ({len(data.test_idx)} held out) at {w}x{h}, "
            f"init: {trainer.init_note}, pose refinement {'on' if trainer.pose is not None else 'off'}"
            + (f", {cfg.batch_size} images per step" if cfg.batch_size > 1 else "") + ranks)
    if on_train_start is not None:
        on_train_start(Scene(trainer.gaussians(), trainer.refined_cameras(), dict(res.metadata), list(res.history)))
    trainer.train()
    trainer.save_checkpoint()

    if not main:  # rank 0 evaluates and writes the scene; the others wait for its metrics
        return dist.broadcast(None, "waiting for rank 0 to write the scene")
    t_eval = time.perf_counter()
    m = trainer.evaluate() if data.test_idx else {"psnr": None, "ssim": None, "lpips": None,
                                                  "heldout_images": [], "per_image": []}
    eval_s = time.perf_counter() - t_eval

    # ---- the scene: original cameras (with the refined poses), history entry, Gaussians tagged with it ----
    scene = Scene(Gaussians.empty(), res.cameras.clone(), dict(res.metadata), list(res.history))
    refined = trainer.refined_cameras()
    scene.cameras.R, scene.cameras.t = refined.R.clone(), refined.t.clone()
    step_id = scene.next_step_id()
    scene.gaussians = trainer.gaussians(step_id)
    scene.metadata.update({"train_resolution": [w, h], "heldout_images": m["heldout_images"],
                           # how it was trained (and evaluated) to look: render, view and fill use the same
                           "background": [1.0, 1.0, 1.0] if cfg.background == "white" else [0.0, 0.0, 0.0],
                           "antialiased": bool(cfg.antialiased)})
    scene.metadata.setdefault("source", str(input_path))
    _declare_images_dir(scene, out)
    scene.add_history("reconstruct", step_id=step_id, preset=preset, steps=trainer.step, num_gaussians=trainer.num_gaussians,
                      psnr=m["psnr"], ssim=m["ssim"], backend=cfg.backend, strategy=cfg.strategy,
                      pose_refine=trainer.pose is not None, ranks=trainer.world_size, config=cfg.to_dict())
    scene.save(out)
    fault_point("reconstruct:after-scene")
    metrics = {"psnr": m["psnr"], "ssim": m["ssim"], "lpips": m["lpips"], "num_gaussians": trainer.num_gaussians,
               "steps": trainer.step, "train_seconds": round(trainer.train_seconds, 2),
               "heldout_images": m["heldout_images"], "per_image": m["per_image"],
               "resolution": [w, h], "preset": preset, "backend": cfg.backend, "strategy": cfg.strategy,
               "pose_refine": trainer.pose is not None, "batch_size": cfg.batch_size,
               "ranks": trainer.world_size,
               # all-reduce payload of rank 0 per step and the seconds it spent in collectives (0 for one rank)
               "comm_bytes_per_step": 0 if dist is None else int(dist.comm_bytes / max(trainer.step, 1)),
               "comm_seconds": 0.0 if dist is None else round(dist.comm_seconds, 2),
               "timings": {**res.timings, "load_images_seconds": round(load_s, 2),
                           "train_seconds": round(trainer.train_seconds, 2), "eval_seconds": round(eval_s, 2),
                           "total_seconds": round(time.perf_counter() - t_all, 2)}}
    if "lpips_note" in m:
        metrics["lpips_note"] = m["lpips_note"]
    write_metrics(out, metrics)
    plot_curve(out / CURVE_PNG, trainer.history, trainer.eval_history, title=f"reconstruct {Path(input_path).name}")

    if dist is not None:
        dist.broadcast(metrics, "sending the metrics")
    return metrics


def _quiet(*args, **kwargs) -> None:
    pass
