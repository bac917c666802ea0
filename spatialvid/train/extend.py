"""``extend``: add a new clip (video, image folder or posed frames) to an existing scene and continue training.

:func:`extend_scene` (``spatialvid extend SCENE NEW_INPUT``):

1. **Registration in the scene's frame and scale.** The new keyframes (same working resolution and SIFT
   settings as the scene's SfM) are added to a copy of the scene's feature database (``sfm/database.db``),
   matched with each other (sequential pairs) and with the scene's images (all pairs for small sets, else
   the most similar ones by bag-of-words retrieval), then COLMAP's incremental mapper *continues* the
   scene's own model (``sfm/sparse_original``) with the existing frames fixed (``fix_existing_frames``):
   the new frames are registered from 2D-3D matches to the scene's points, new points are triangulated and
   bundle adjusted. The result is put back exactly onto the scene's original frames (a Sim3 fitted on the
   old camera centres; the identity up to round-off because they are fixed) and mapped through the scene's
   stored normalisation (``metadata["normalization"]``). New frames are undistorted to pinhole like the
   scene's. With known poses (``poses=``), the poses are aligned to the scene by a Sim3 on the frames the
   poses file shares with the scene (matched by file stem); without shared frames, a scene built from known
   poses is assumed to share their world and its normalisation is applied. Points are then triangulated
   with the aligned poses.
   Frames that do not register are listed with the reason; fewer than half registered is an error and
   nothing is written.
2. **Training.** Generated (``origin = GENERATED``) Gaussians that a new frame sees (in its view and not
   behind captured content) are removed: real data wins over generation. New captured Gaussians go on the
   new sparse points (where no Gaussian is near) and, densely, where the scene does not cover a new training
   view (rendered alpha < 0.5: the view's real pixel colours lifted at a depth completed from the scene's
   rendered depth and the new sparse points, :func:`seed_uncovered`). New Gaussians that an old training
   view sees in front of its surface are dropped (:func:`in_observed_free_space`: that view saw empty space
   there), and none starts larger than its distance to the nearest old one. Those and the captured Gaussians
   inside a new frame's view are optimised over old + new training cameras (drawn half and half), with
   densification (3DGS adaptive density control) of those Gaussians only; every other Gaussian is rendered
   but kept bit-identical. No opacity reset; SH degree 3 (:data:`EXTEND_SH_DEGREE`) from the start. All
   cameras keep their poses (the registration's bundle adjustment placed the new ones; ``refine_poses``
   refines the new ones during training, the old cameras stay fixed; known poses are always kept as given).
3. **History and undo.** The pre-extend ``gaussians.ply``, ``transforms.json`` and ``scene.json`` are copied
   to ``SCENE/history/extend_<step>/`` before the scene is written; an ``extend`` history entry records
   the input, registered / dropped frames, Gaussians added / removed and the time. :func:`undo_extend`
   copies those files back (byte-identical Gaussians and cameras, the same metadata) and appends an
   ``undo`` entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import CAPTURED, GENERATED, Gaussians, num_sh_bases, rgb_to_sh0
from spatialvid.train.config import TrainConfig, load_config
from spatialvid.train.trainer import Trainer, knn_scales

HISTORY_DIR = "history"
MAX_LISTED = 12
EXTEND_LR_POSE = 5e-4  # the new cameras get few steps each: a higher pose learning rate than a reconstruct's
EXTEND_SH_DEGREE = 3  # a new clip sees the scene's surfaces from new directions: view-dependent colour lets
# the Gaussians both clips see fit both (measured on fox: A's views 0.25 dB, B's 0.8 dB better than at degree 1)


def _list(items: list[str]) -> str:
    s = ", ".join(items[:MAX_LISTED])
    return s + (f" ... (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


@dataclass
class ExtendResult:
    """What :func:`extend_scene` did. ``registered``: new frame names added to the scene (in order);
    ``dropped``: new frame name -> reason it was not added; ``added``: Gaussians in the scene after minus
    before, plus ``removed_generated`` (so it counts Gaussians created by the extend); ``removed_generated``:
    generated Gaussians removed because a new frame sees them; ``trained``: Gaussians optimised;
    ``frozen``: Gaussians kept bit-identical; ``step``: the history step id; ``seconds``: wall time."""

    step: int
    registered: list[str]
    dropped: dict[str, str]
    added: int
    removed_generated: int
    trained: int
    frozen: int
    num_gaussians: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source_names: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Registration:
    """New cameras in the scene frame (pinhole, images in a work folder), new sparse points (scene frame)."""

    cameras: Cameras
    points: np.ndarray
    colors: np.ndarray
    dropped: dict[str, str]
    total: int
    notes: list[str] = field(default_factory=list)
    source_names: dict[str, str] = field(default_factory=dict)  # scene name -> name in the input


# ---------------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------------
def _no_model_message(scene_dir: Path) -> str:
    return (f"{scene_dir} has no SfM model to register new frames against (needs sparse/0, sfm/sparse_original "
            f"and sfm/database.db, written by `spatialvid poses` / `spatialvid reconstruct` from a video or an "
            f"image folder). Make one with `spatialvid poses INPUT -o SCENE` (or reconstruct the scene from its "
            f"video), or give the new frames' poses with --poses")


def _scene_sfm_config(scene, progress: bool):
    from spatialvid.sfm import SfmConfig

    sfm = scene.metadata.get("sfm") if isinstance(scene.metadata.get("sfm"), dict) else {}
    c = sfm.get("config", {}) if isinstance(sfm.get("config"), dict) else {}
    keep = {k: c[k] for k in ("resolution", "max_features", "seed", "max_frames") if k in c}
    return SfmConfig(progress=progress, **keep)


def _rename_collisions(kfs, kf_dir: Path, taken: set[str], tag: str) -> dict[str, str]:
    """Rename new keyframes whose name (stem) is already a scene image: ``<tag>_<name>``. Returns
    new name -> original name for every keyframe."""
    taken_stems = {Path(n).stem for n in taken}
    names = {}
    for k in kfs:
        orig = k.name
        if Path(k.name).stem in taken_stems:
            new = f"{tag}_{k.name}"
            os.replace(kf_dir / k.name, kf_dir / new)
            k.name, k.path = new, str(kf_dir / new)
        names[k.name] = orig
    return names


def _pairs(old: list[str], new: list[str], sim: np.ndarray | None, overlap: int, k_old: int,
           exhaustive_max: int) -> list[tuple[str, str]]:
    from spatialvid.sfm.colmap_sfm import sequential_pairs

    pairs = {(new[i], new[j]) for i, j in sequential_pairs(len(new), overlap)}
    if len(old) * len(new) <= exhaustive_max or sim is None:
        pairs |= {(a, b) for a in new for b in old}
    else:
        no = len(old)
        for i, a in enumerate(new):
            s = sim[no + i, :no]
            for j in np.argsort(-s)[:k_old]:
                pairs.add((a, old[int(j)]))
    return sorted(pairs)


def register_sfm(scene, scene_dir: Path, src: Path, work: Path, tag: str, progress: bool = True,
                 min_fraction: float = 0.5) -> Registration:
    """Register the frames of ``src`` against the scene's SfM model (see the module docstring)."""
    import pycolmap

    from spatialvid.io.keyframes import ingest
    from spatialvid.sfm.align import sim3_matrix, transform_cameras, transform_points, umeyama
    from spatialvid.sfm.colmap_sfm import (
        _num_threads,
        _quiet,
        bow_similarity,
        reconstruction_cameras,
        undistort,
    )

    sfm_dir = scene_dir / "sfm"
    db0, model0, kf0 = sfm_dir / "database.db", sfm_dir / "sparse_original", sfm_dir / "keyframes"
    if not ((scene_dir / "sparse" / "0").is_dir() and db0.is_file() and model0.is_dir() and kf0.is_dir()):
        raise SpatialvidError(_no_model_message(scene_dir))
    T = np.asarray(scene.metadata.get("normalization", np.eye(4).tolist()), np.float64)
    cfg = _scene_sfm_config(scene, progress)
    rec0 = pycolmap.Reconstruction(str(model0))
    old_imgs = {im.name: im for im in rec0.images.values() if im.has_pose}
    if len(old_imgs) < 2:
        raise SpatialvidError(_no_model_message(scene_dir))

    kf_dir = work / "keyframes"
    ing = ingest(src, kf_dir, cfg.keyframe_config(), progress=progress)
    kfs = ing.keyframes
    if not kfs:
        raise SpatialvidError(f"{src}: no usable frames")
    db = work / "database.db"
    shutil.copyfile(db0, db)  # the scene's database is only read (opening it in place would modify it)
    with pycolmap.Database.open(str(db)) as database:
        db_names = {im.name for im in database.read_all_images()}
        # the model's cameras win: the SfM's camera-model choice ("auto") may have changed the model after
        # mapping (e.g. SIMPLE_RADIAL -> OPENCV), which the mapper refuses to continue from a database with the
        # old one
        for cid, cam in rec0.cameras.items():
            if database.exists_camera(int(cid)):
                database.update_camera(cam)
    source_names = _rename_collisions(kfs, kf_dir, db_names | set(scene.cameras.names), tag)
    new = [k.name for k in kfs]

    # one image folder with the scene's keyframes (as links) and the new ones, for the mapper's colours
    img_dir = work / "all_images"
    img_dir.mkdir()
    for n in old_imgs:
        if (kf0 / n).exists():
            (img_dir / n).parent.mkdir(parents=True, exist_ok=True)
            os.symlink((kf0 / n).resolve(), img_dir / n)
    for k in kfs:
        os.symlink(Path(k.path).resolve(), img_dir / k.name)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    pycolmap.set_random_seed(int(cfg.seed))
    kind = ing.source.kind
    sizes = {(k.width, k.height) for k in kfs}
    shared_cam = None
    if len(sizes) == 1:
        w, h = next(iter(sizes))
        same = [cid for cid, c in rec0.cameras.items() if (int(c.width), int(c.height)) == (w, h)]
        if len(same) == 1 or (same and len(rec0.cameras) >= 1):
            shared_cam = int(same[0])
    ro = pycolmap.ImageReaderOptions()
    if shared_cam is not None:  # the same camera as the scene: its calibrated intrinsics, kept fixed
        ro.existing_camera_id = shared_cam
    else:
        ro.camera_model = cfg.resolved(kind).camera_model
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = _num_threads(cfg.num_threads)
    eo.sift.max_num_features = int(cfg.max_features)
    long_side = max(kfs[0].width, kfs[0].height)
    eo.sift.first_octave = -1 if long_side < 800 else 0
    mode = pycolmap.CameraMode.SINGLE if len(sizes) == 1 else pycolmap.CameraMode.PER_IMAGE
    with _quiet():
        pycolmap.extract_features(db, img_dir, image_names=new, camera_mode=mode, reader_options=ro,
                                  extraction_options=eo, device=pycolmap.Device.cpu)
    timings["extract"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    old = sorted(old_imgs)
    with pycolmap.Database.open(str(db)) as database:
        ids = {im.name: im.image_id for im in database.read_all_images()}
        sim = None
        if len(old) * len(new) > 600:
            desc = [np.asarray(database.read_descriptors(ids[n]).data) for n in old + new]
            sim = bow_similarity(desc, seed=cfg.seed)
    pairs = _pairs(old, new, sim, cfg.overlap, 12, 600)
    pairs_file = work / "pairs.txt"
    pairs_file.write_text("".join(f"{a} {b}\n" for a, b in pairs), encoding="utf-8")
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = _num_threads(cfg.num_threads)
    vo = pycolmap.TwoViewGeometryOptions()
    vo.ransac.random_seed = int(cfg.seed)
    po = pycolmap.ImportedPairingOptions()
    po.match_list_path = str(pairs_file)
    with _quiet():
        pycolmap.match_image_pairs(db, matching_options=mo, pairing_options=po, verification_options=vo,
                                   device=pycolmap.Device.cpu)
    timings["match"] = time.perf_counter() - t0

    # verified matches of each new frame with the scene's images (for the reasons of dropped frames)
    id_to_name = {v: k for k, v in ids.items()}
    old_set, new_set = set(old), set(new)
    to_scene = dict.fromkeys(new, 0)
    to_new = dict.fromkeys(new, 0)
    with pycolmap.Database.open(str(db)) as database:
        pair_ids, counts = database.read_two_view_geometry_num_inliers()
    for pid, cnt in zip(pair_ids, counts):
        a, b = (id_to_name.get(i) for i in pycolmap.pair_id_to_image_pair(int(pid)))
        if cnt < 15 or a is None or b is None:
            continue
        for x, y in ((a, b), (b, a)):
            if x in new_set:
                if y in old_set:
                    to_scene[x] += 1
                elif y in new_set:
                    to_new[x] += 1
    if not any(to_scene.values()):
        raise SpatialvidError(
            f"none of the {len(new)} new frames of {src} matches any image of the scene, so nothing can be "
            "registered: the new input does not seem to show the same place (or shares no view with it)")

    t0 = time.perf_counter()
    out_models = work / "models"
    out_models.mkdir()
    opt = pycolmap.IncrementalPipelineOptions()
    opt.num_threads = _num_threads(cfg.num_threads)
    opt.random_seed = int(cfg.seed)
    opt.fix_existing_frames = True
    opt.multiple_models = False
    opt.min_model_size = 3
    opt.ba_refine_principal_point = False
    if shared_cam is not None:
        opt.ba_refine_focal_length = False
        opt.ba_refine_extra_params = False
    with _quiet():
        recs = pycolmap.incremental_mapping(db, img_dir, out_models, options=opt, input_path=model0)
    timings["map"] = time.perf_counter() - t0
    recs = dict(recs or {})
    rec = max(recs.values(), key=lambda r: r.num_reg_images()) if recs else None
    reg_new = []
    if rec is not None:
        reg_new = [n for n in new if rec.find_image_with_name(n) is not None and rec.find_image_with_name(n).has_pose]
    dropped = {}
    for n in new:
        if n in reg_new:
            continue
        if to_scene[n] == 0 and to_new[n] == 0:
            dropped[n] = "no verified feature matches with the scene's images or the other new frames"
        elif to_scene[n] == 0:
            dropped[n] = (f"matches {to_new[n]} other new frame(s) but none of the scene's images, and could not "
                          "be registered from them")
        else:
            dropped[n] = (f"matches {to_scene[n]} scene image(s) but too few 2D-3D correspondences to register it "
                          "reliably")
    if len(reg_new) < max(1, min_fraction * len(new)):
        first = next(iter(dropped.items())) if dropped else ("", "")
        raise SpatialvidError(
            f"only {len(reg_new)} of {len(new)} new frames could be registered in the scene (at least "
            f"{int(np.ceil(min_fraction * len(new)))} needed; not registered: {_list(list(dropped))}; e.g. "
            f"{first[0]}: {first[1]}). Is the new input of the same place, with views overlapping the scene's?")

    # the mapper kept the old frames fixed; fit the (near-identity) Sim3 on their centres anyway
    both = [n for n in old if rec.find_image_with_name(n) is not None and rec.find_image_with_name(n).has_pose]
    c_new = np.array([np.asarray(rec.find_image_with_name(n).projection_center()) for n in both])
    c_old = np.array([np.asarray(old_imgs[n].projection_center()) for n in both])
    M = np.eye(4)
    if len(both) >= 3:
        s, R, t = umeyama(c_new, c_old)
        M = sim3_matrix(s, R, t)
    full = T @ M  # mapper world -> scene (normalised) world

    t0 = time.perf_counter()
    und_dir = work / "undistorted"
    rec_copy = pycolmap.Reconstruction(rec)
    und = undistort(rec_copy, img_dir, und_dir, reg_new, progress)
    cams = reconstruction_cameras(und, und_dir / "images", reg_new)
    cams = transform_cameras(cams, full)
    timings["undistort"] = time.perf_counter() - t0

    # sparse points observed by a new frame (new structure, and old points the new frames see)
    new_ids = {rec.find_image_with_name(n).image_id for n in reg_new}
    xyz, rgb = [], []
    for p in rec.points3D.values():
        if p.track.length() < 2 or (p.has_error() and p.error > 2.0):
            continue
        if any(el.image_id in new_ids for el in p.track.elements):
            xyz.append(np.asarray(p.xyz, np.float64))
            rgb.append(np.asarray(p.color, np.float32) / 255.0)
    xyz = transform_points(np.array(xyz), full) if xyz else np.zeros((0, 3))
    rgb = np.array(rgb, np.float32) if rgb else np.zeros((0, 3), np.float32)
    notes = [f"registration: {len(pairs)} image pairs matched, old-frame drift after mapping "
             f"{float(np.abs(M - np.eye(4)).max()):.2e}"]
    reg = Registration(cams, xyz, rgb, dropped, len(new), notes, {n: source_names[n] for n in reg_new})
    reg.notes.append(f"timings: {', '.join(f'{k} {v:.1f} s' for k, v in timings.items())}")
    return reg


def register_known(scene, src: Path, poses: Path, work: Path, tag: str, progress: bool = True) -> Registration:
    """New frames with known poses, aligned to the scene (see the module docstring)."""
    from spatialvid.sfm import scene_from_known_poses
    from spatialvid.sfm.align import match_by_name, pose_sim3, transform_cameras, transform_points
    from spatialvid.sfm.pipeline import load_poses

    known = load_poses(poses)
    known.validate("known poses")
    ki, si = match_by_name(known, scene.cameras)
    notes = []
    if len(ki) >= 3:  # on the poses, not only the centres (a short arc leaves a rotation free)
        M = pose_sim3(known[ki], scene.cameras[si])
        notes.append(f"poses aligned to the scene by a Sim3 on the poses of {len(ki)} shared frames")
    else:
        sfm = scene.metadata.get("sfm") if isinstance(scene.metadata.get("sfm"), dict) else {}
        if not sfm.get("known_poses") or "normalization" not in scene.metadata:
            raise SpatialvidError(
                f"{poses}: the poses share {len(ki)} frame(s) with the scene (need >= 3, matched by file name) "
                "and the scene's own poses were estimated, so the two worlds cannot be aligned: include some of "
                "the scene's frames in the poses file")
        M = np.asarray(scene.metadata["normalization"], np.float64)
        notes.append("poses taken in the world of the scene's known poses (its normalisation applied)")
    shared = set(ki)
    rest = [i for i in range(len(known)) if i not in shared]
    if not rest:
        raise SpatialvidError(f"{poses}: every posed frame is already in the scene; nothing to add")
    aligned = transform_cameras(known[rest], M)
    cfg = _scene_sfm_config(scene, progress)
    cfg.max_frames = max(cfg.max_frames, len(rest))
    sub = scene_from_known_poses(src, aligned, work / "posed", cfg, save=False)
    T2 = np.asarray(sub.metadata["normalization"], np.float64)
    back = np.linalg.inv(T2)
    cams = transform_cameras(sub.cameras, back)
    pts_note = [n for n in sub.metadata.get("sfm", {}).get("notes", []) if "random" in str(n)]
    if pts_note:
        xyz, rgb = np.zeros((0, 3)), np.zeros((0, 3), np.float32)
        notes += pts_note
    else:
        g = sub.gaussians
        xyz = transform_points(g.means.double().numpy(), back)
        rgb = g.colors.numpy().astype(np.float32)
    # scene-unique names
    taken = {Path(n).stem for n in scene.cameras.names}
    names, source = [], {}
    img_dir = work / "posed" / "images"
    for n, p in zip(list(cams.names), list(cams.image_paths)):
        m = f"{tag}_{n}" if Path(n).stem in taken else n
        if m != n:
            os.replace(p, img_dir / m)
        names.append(m)
        source[m] = n
    cams.names = names
    cams.image_paths = [str(img_dir / n) for n in names]
    return Registration(cams, xyz, rgb, {}, len(rest), notes, source)


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------
class _Head:
    """The first ``n`` rows of the rasterizer's ``means2d`` as the densification strategy sees them."""

    def __init__(self, full: torch.Tensor, n: int):
        self._full, self._n = full, n

    @property
    def requires_grad(self) -> bool:
        return self._full.requires_grad

    def retain_grad(self) -> None:
        self._full.retain_grad()

    @property
    def grad(self):
        g = self._full.grad
        return None if g is None else g[: self._n]


class ExtendTrainer(Trainer):
    """A :class:`Trainer` whose parameters are the Gaussians being optimised; ``frozen`` Gaussians are
    rendered with them (after them, detached) and never change. Each step draws a new training camera
    ``new_per_old`` times for each old one on average (``new_pos`` / ``old_pos``: positions in ``data.train_idx``).
    With pose refinement on (``cfg.pose_refine``), only the new cameras' poses get a learned correction
    (applied to all Gaussians, frozen ones included, as the trainer's pose refinement does)."""

    def __init__(self, data, cfg, init: Gaussians, frozen: Gaussians, new_pos: list[int], old_pos: list[int],
                 progress: bool = True, new_per_old: float = 1.0):
        super().__init__(data, cfg, None, init=init, progress=progress)
        f = frozen.with_sh_degree(cfg.sh_degree)
        self.frozen = {"means": f.means, "quats": f.quats, "scales": f.scales, "opac": f.opacities,
                       "sh": f.sh}
        self.new_pos, self.old_pos = list(new_pos), list(old_pos) or list(new_pos)
        self.new_per_old = max(0.0, float(new_per_old))
        self._refined = set(self.new_pos)  # only the new cameras' poses are refined (the old ones are fixed)

    def _draw(self, k: int) -> int:
        g = torch.Generator().manual_seed(int(self.cfg.seed) * 7919 + k)
        new = float(torch.rand((), generator=g)) * (self.new_per_old + 1) < self.new_per_old
        pool = self.new_pos if new else self.old_pos
        return pool[int(torch.randint(len(pool), (1,), generator=g))]

    def camera_batch(self, step: int) -> list[int]:
        """The step's cameras, each drawn at random: from the new training cameras with probability
        ``new_per_old / (new_per_old + 1)``, else from the old ones (default 1: half and half; more new views
        fit them faster but let the shared Gaussians drift from what the old views need)."""
        b = int(self.cfg.batch_size)
        return [self._draw(step * b + k) for k in range(b)]

    def camera_at(self, step: int) -> int:
        return self.camera_batch(step)[0]

    def render(self, cam_idx: int, sh_degree: int | None = None, train_pos: int | None = None):
        from spatialvid.render import rasterize

        p, f = self.params, self.frozen
        n = p["means"].shape[0]
        deg = self.cfg.sh_degree if sh_degree is None else sh_degree
        k = (deg + 1) ** 2
        sh = torch.cat([p["sh0"][:, None, :], p["shN"]], 1)[:, :k]
        img = self.data.images[cam_idx]
        means, quats = torch.cat([p["means"], f["means"]]), torch.cat([p["quats"], f["quats"]])
        vm = self.viewmats[cam_idx]
        if self.pose is not None and train_pos is not None and train_pos in self._refined:
            means, quats = self.pose.apply(train_pos, means, quats, vm)
        out = rasterize(means, quats,
                        torch.cat([torch.exp(p["log_scales"]), f["scales"]]),
                        torch.cat([torch.sigmoid(p["opacity_logits"]), f["opac"]]),
                        torch.cat([sh, f["sh"][:, :k]]), vm, self.Ks[cam_idx],
                        img.shape[1], img.shape[0], sh_degree=deg, background=self.bg,
                        antialiased=self.cfg.antialiased, backend=self.cfg.backend)
        out.width, out.height = img.shape[1], img.shape[0]
        out.means2d = _Head(out.means2d, n)
        out.radii = out.radii[:n]
        return out


def _in_view(means: torch.Tensor, cams: Cameras, margin: float = 0.0) -> torch.Tensor:
    """[N] bool: the point projects inside at least one camera's image (in front of it)."""
    if len(means) == 0 or len(cams) == 0:
        return torch.zeros(len(means), dtype=torch.bool)
    uv, z = cams.project(means)
    w = cams.width[:, None].float()
    h = cams.height[:, None].float()
    mw, mh = margin * w, margin * h
    inside = (z > 1e-3) & (uv[..., 0] >= -mw) & (uv[..., 0] < w + mw) & (uv[..., 1] >= -mh) & (uv[..., 1] < h + mh)
    return inside.any(0)


@torch.no_grad()
def generated_seen(gaussians: Gaussians, cams: Cameras, side: int = 160, margin: float = 0.05,
                   backend: str = "auto") -> torch.Tensor:
    """[N] bool: generated Gaussians that one of ``cams`` sees: inside its image and not behind the captured
    surface it renders there (captured alpha >= 0.5 and captured depth < (1 - margin) x the Gaussian's depth)."""
    from spatialvid.render import render_gaussians

    gen = gaussians.origin == GENERATED
    seen = torch.zeros(len(gaussians), dtype=torch.bool)
    if not gen.any():
        return seen
    cap = gaussians[~gen]
    gm = gaussians.means[gen]
    hit = torch.zeros(len(gm), dtype=torch.bool)
    for i in range(len(cams)):
        c = cams[i]
        s = min(1.0, side / max(int(c.width[0]), int(c.height[0])))
        c = c.scaled(s) if s < 1 else c
        uv, z = c.project(gm)
        uv, z = uv[0], z[0]
        W, H = int(c.width[0]), int(c.height[0])
        inside = (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        if not inside.any():
            continue
        if len(cap):
            out = render_gaussians(cap, c, backend=backend)
            depth, alpha = out.depth.reshape(H, W), out.alpha.reshape(H, W)
            px = uv[inside].long()
            d, a = depth[px[:, 1], px[:, 0]], alpha[px[:, 1], px[:, 0]]
            behind = (a >= 0.5) & (d < (1 - margin) * z[inside])
            idx = inside.nonzero().reshape(-1)
            hit[idx[~behind]] = True
        else:
            hit |= inside
    seen[gen.nonzero().reshape(-1)] = hit
    return seen


def new_point_gaussians(xyz: np.ndarray, rgb: np.ndarray, existing: torch.Tensor, sh_degree: int,
                        opacity: float = 0.1, min_gap: float | None = None) -> Gaussians:
    """Gaussians on the new sparse points farther than ``min_gap`` from every existing Gaussian centre
    (default: 2 x the median nearest-neighbour spacing of the existing ones): the new structure only."""
    from scipy.spatial import cKDTree

    if len(xyz) == 0:
        return Gaussians.empty(sh_degree)
    pts = torch.from_numpy(np.asarray(xyz)).float()
    if len(existing) >= 2:
        tree = cKDTree(existing.double().numpy())
        if min_gap is None:
            sub = existing[torch.randperm(len(existing), generator=torch.Generator().manual_seed(0))[:5000]]
            dd, _ = tree.query(sub.double().numpy(), k=2)
            min_gap = 2.0 * float(np.median(dd[:, 1]))
        d, _ = tree.query(pts.double().numpy(), k=1)
        keep = torch.from_numpy(d > min_gap)
        pts, rgb = pts[keep], np.asarray(rgb)[keep.numpy()]
        gap = torch.from_numpy(d[keep.numpy()]).float()
    else:
        gap = torch.full((len(pts),), float("inf"))
    n = len(pts)
    if n == 0:
        return Gaussians.empty(sh_degree)
    # 3DGS's initial size (mean distance to the 3 nearest new points), but no larger than the distance to
    # the nearest existing Gaussian: sparse new points are far apart, and a blob that large would cover
    # what the old views already fit
    scales = torch.minimum(knn_scales(pts) if n >= 2 else torch.full((n,), 0.01), gap)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return Gaussians.from_arrays(pts, torch.log(scales)[:, None].expand(n, 3).clone(), quats,
                                 torch.logit(torch.full((n,), float(opacity))),
                                 rgb_to_sh0(torch.from_numpy(np.asarray(rgb, np.float32))),
                                 torch.zeros(n, num_sh_bases(sh_degree) - 1, 3))


@torch.no_grad()
def in_observed_free_space(points: torch.Tensor, scene_g: Gaussians, cams: Cameras, margin: float = 0.1,
                           alpha_threshold: float = 0.5, backend: str = "auto") -> torch.Tensor:
    """[N] bool: the point (world units) lies in space that an old view saw to be empty: it projects into
    one of ``cams`` where the scene ``scene_g`` renders solid (alpha >= ``alpha_threshold``) and is nearer
    than ``(1 - margin)`` x the rendered (expected) depth there. A new Gaussian there would float in front of
    what that view saw; new structure behind the old surfaces, outside the old views or where they saw
    nothing solid is not flagged."""
    from spatialvid.render import render_gaussians

    hit = torch.zeros(len(points), dtype=torch.bool)
    if len(points) == 0 or len(scene_g) == 0:
        return hit
    pts = points.float()
    for i in range(len(cams)):
        c = cams[i]
        W, H = int(c.width[0]), int(c.height[0])
        out = render_gaussians(scene_g, c, backend=backend, sh_degree=0)
        alpha = out.alpha.reshape(H, W).cpu()
        depth = out.depth.reshape(H, W).cpu()
        uv, z = c.project(pts)
        uv, z = uv[0], z[0]
        ok = (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        idx = ok.nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        u, v = uv[idx, 0].long().clamp(0, W - 1), uv[idx, 1].long().clamp(0, H - 1)
        solid = alpha[v, u] >= alpha_threshold
        hit[idx[solid & (z[idx] < (1.0 - margin) * depth[v, u])]] = True
    return hit


@torch.no_grad()
def seed_uncovered(scene_g: Gaussians, cams: Cameras, images: list[torch.Tensor], points: np.ndarray,
                   sh_degree: int, step: int, alpha_threshold: float = 0.5, min_fraction: float = 0.002,
                   block: int = 2, opacity: float = 0.5, backend: str = "auto") -> Gaussians:
    """Captured Gaussians for what the scene does not cover in the new views (``cams``, at the training
    resolution, with their ``images``): each view's pixels where the scene (``scene_g`` plus the Gaussians
    seeded from the views before it) renders an alpha below ``alpha_threshold`` are lifted into Gaussians of
    their real colours (one per ``block x block`` pixels, :func:`spatialvid.generate.lift.lift_pixels`) at a
    depth completed (:class:`spatialvid.generate.depth.ClassicalDepth`) from the scene's rendered depth where
    it covers the view and from the new sparse ``points`` that project into the uncovered pixels."""
    from spatialvid.generate.depth import ClassicalDepth
    from spatialvid.generate.lift import lift_pixels
    from spatialvid.render import render_gaussians

    dep = ClassicalDepth()
    pts = torch.from_numpy(np.asarray(points, np.float64)).float() if len(points) else torch.zeros(0, 3)
    added: list[Gaussians] = []
    cur = scene_g.with_sh_degree(sh_degree)
    for i in range(len(cams)):
        c = cams[i]
        W, H = int(c.width[0]), int(c.height[0])
        if len(cur):
            out = render_gaussians(cur, c, backend=backend, sh_degree=sh_degree)
            alpha = out.alpha.reshape(H, W).cpu().numpy()
            depth = out.depth.reshape(H, W).cpu().numpy().astype(np.float32)
        else:
            alpha, depth = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
        hole = alpha < alpha_threshold
        if hole.mean() < min_fraction:
            continue
        valid = ~hole & (depth > 0)
        if len(pts):  # the new sparse points seen in the uncovered pixels give their depth there
            uv, z = c.project(pts)
            uv, z = uv[0], z[0]
            ok = (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
            u, v, zz = uv[ok, 0].long().numpy(), uv[ok, 1].long().numpy(), z[ok].numpy()
            inh = hole[v, u]
            order = np.argsort(-zz[inh])  # the nearest point wins a pixel (written last)
            u, v, zz = u[inh][order], v[inh][order], zz[inh][order]
            depth[v, u] = zz
            valid[v, u] = True
        if not valid.any():
            continue
        rgb = images[i].cpu().numpy().astype(np.float32)
        full = dep.complete(depth, valid, rgb)
        g = lift_pixels(hole, rgb, full, c, step, block=block, opacity=opacity, sh_degree=sh_degree)
        g.origin = torch.full((len(g),), CAPTURED, dtype=torch.uint8)
        added.append(g)
        cur = Gaussians.cat([cur, g])
    return Gaussians.cat(added) if added else Gaussians.empty(sh_degree)


def extend_config(scene, steps: int | None = None, overrides: dict[str, Any] | None = None,
                  refine_poses: bool = False, sh_degree: int | None = None) -> TrainConfig:
    """The training config of an extend: the scene's last reconstruct config (else the ``fast`` preset),
    ``steps`` (default: a third of the reconstruct's, at least 300), SH degree ``sh_degree`` (default
    :data:`EXTEND_SH_DEGREE`, never below the scene's; the higher bands start at zero) from the start, no opacity
    reset, no geometry terms (normal, sparse depth, multi-view), densification during the first 70% of the
    steps; ``refine_poses``: pose refinement (of the new cameras only, see :class:`ExtendTrainer`) from a tenth
    of the steps on, else none."""
    base = None
    for h in reversed(scene.history):
        c = h.get("info", {}).get("config") if h.get("kind") == "reconstruct" else None
        if isinstance(c, dict):
            base = c
            break
    cfg = load_config("fast")
    if base:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in base.items() if k in known})
    n = int(steps) if steps else max(300, cfg.steps // 3)
    have = scene.gaussians.sh_degree if len(scene.gaussians) else 0
    deg = EXTEND_SH_DEGREE if sh_degree is None else sh_degree
    if not isinstance(deg, int) or isinstance(deg, bool) or not 0 <= deg <= 3:
        raise SpatialvidError(f"sh_degree must be an integer 0..3, got {deg!r}")
    if sh_degree is not None and deg < have:
        raise SpatialvidError(f"sh_degree {deg} is below the scene's SH degree {have}: an extend does not drop "
                              "the scene's view-dependent colour")
    cfg = dataclasses.replace(cfg, steps=n, sh_degree=max(deg, have), sh_degree_interval=0, opacity_reset_every=0,
                              pose_refine="on" if refine_poses else "off", pose_refine_start=n // 10,
                              lr_pose=EXTEND_LR_POSE,
                              densify_start=min(100, n // 5), densify_stop=int(0.7 * n),
                              densify_every=min(cfg.densify_every, max(n // 10, 10)), checkpoint_every=0,
                              eval_every=0, save_eval_images=False, normal_weight=0.0, depth_sparse_weight=0.0,
                              multiview_weight=0.0)
    if overrides:
        from spatialvid.train.config import apply_overrides

        cfg = apply_overrides(cfg, overrides)
    cfg.validate()
    return cfg


def new_camera_errors(scene_cams, ref, old_names: set[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """Pose errors of the scene's cameras not in ``old_names`` against ``ref`` in the scene's frame: a Sim3
    fitted on the *old* cameras only maps the reference into the scene. Returns (rotation error of each new
    camera relative to its nearest old camera [deg], centre errors [% of the reference trajectory extent],
    extent)."""
    from spatialvid.sfm.align import match_by_name, rotation_angle_deg, umeyama

    ei, ri = match_by_name(scene_cams, ref)
    old = [(e, r) for e, r in zip(ei, ri) if scene_cams.names[e] in old_names]
    new = [(e, r) for e, r in zip(ei, ri) if scene_cams.names[e] not in old_names]
    ce = scene_cams.centers().double().numpy()
    cr = ref.centers().double().numpy()
    s, R, t = umeyama(cr[[r for _, r in old]], ce[[e for e, _ in old]])  # reference -> scene
    extent = float(np.linalg.norm(cr.max(0) - cr.min(0)))
    cen = np.array([np.linalg.norm(s * R @ cr[r] + t - ce[e]) / s / extent * 100 for e, r in new])
    w2c_e = scene_cams.R.double().numpy()
    w2c_r = ref.R.double().numpy()
    rot = []
    for e, r in new:  # relative rotation to the nearest old frame: estimated vs true
        j = min(old, key=lambda o: np.linalg.norm(cr[o[1]] - cr[r]))
        rel_e = w2c_e[e] @ w2c_e[j[0]].T
        rel_r = w2c_r[r] @ w2c_r[j[1]].T
        rot.append(float(rotation_angle_deg(rel_e[None], rel_r[None])[0]))
    return np.array(rot), cen, extent


# ---------------------------------------------------------------------------------------------------
# the operation
# ---------------------------------------------------------------------------------------------------
def _undone(history: list[dict]) -> set[int]:
    return {int(h["info"]["undid"]) for h in history if h.get("kind") == "undo" and "undid" in h.get("info", {})}


def extend_scene(scene_dir: str | Path, new_input: str | Path, poses: str | Path | None = None,
                 steps: int | None = None, overrides: dict[str, Any] | None = None, progress: bool = True,
                 log=print, min_registered_fraction: float = 0.5, seed: bool = True,
                 new_per_old: float = 1.0, refine_poses: bool = False, free_space: bool = True,
                 sh_degree: int | None = None) -> ExtendResult:
    """Add ``new_input`` (video, image folder, or frames with ``poses``) to the scene in ``scene_dir``,
    continue training for ``steps`` and save the scene in place (see the module docstring). ``seed``: seed
    Gaussians where the scene does not cover a new view (:func:`seed_uncovered`); ``new_per_old``: new
    training cameras drawn for each old one (on average); ``refine_poses``: also refine the registered new
    cameras' poses during training (off by default: measured, it cost the fox photos' new views 1 dB and gained
    the sample's 0.4 dB; never with ``poses``); ``free_space``: drop new Gaussians in space an old view saw
    empty (:func:`in_observed_free_space`; measured on fox: A's views 0.15 dB better); ``sh_degree``: the
    extended scene's SH degree (default 3, see :data:`EXTEND_SH_DEGREE`; not below the scene's).

    Raises :class:`SpatialvidError` (scene folder untouched) on bad input, a scene without an SfM model
    (estimated registration), or fewer than ``min_registered_fraction`` of the new frames registered."""
    from spatialvid.atomic import atomic_dir, atomic_write_bytes
    from spatialvid.scene import GAUSSIANS_PLY, SCENE_JSON, TRANSFORMS_JSON, Scene
    from spatialvid.train.data import load_images, split_indices, training_scale

    if refine_poses and poses is not None:
        raise SpatialvidError("--refine-poses refines registered cameras; --poses poses are kept as given")
    t_all = time.perf_counter()
    scene_dir = Path(scene_dir)
    scene = Scene.load(scene_dir)
    src = Path(new_input)
    if not src.exists():
        raise SpatialvidError(f"{src}: no such file or folder (give a video, an image folder or posed frames)")
    if poses is not None and not Path(poses).exists():
        raise SpatialvidError(f"{poses}: poses file not found")
    if len(scene.cameras) == 0:
        raise SpatialvidError(f"{scene_dir}: the scene has no cameras to extend")
    cfg = extend_config(scene, steps, overrides, refine_poses=refine_poses, sh_degree=sh_degree)
    step_id = scene.next_step_id()
    tag = f"ext{step_id}"
    timings: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix=f".{scene_dir.name}.extend.", dir=scene_dir.resolve().parent))
    try:
        t0 = time.perf_counter()
        if poses is not None:
            reg = register_known(scene, src, Path(poses), work, tag, progress)
        else:
            reg = register_sfm(scene, scene_dir, src, work, tag, progress, min_registered_fraction)
        timings["register_seconds"] = round(time.perf_counter() - t0, 2)
        new_cams = reg.cameras
        log(f"registered {len(new_cams)} of {reg.total} new frames"
            + (f" (dropped: {_list(list(reg.dropped))})" if reg.dropped else ""))

        # ---- cameras and images at the training resolution -----------------------------------------
        t0 = time.perf_counter()
        old_cams = scene.cameras
        new_cams.dist = torch.zeros(len(new_cams), old_cams.dist.shape[1])  # undistorted: pinhole
        all_cams = Cameras.cat([old_cams, new_cams])
        scale = training_scale(all_cams, cfg.downscale, cfg.resolution)
        cams_t, images = load_images(all_cams, scale, progress=progress)
        from spatialvid.train.data import TrainData

        n_old = len(old_cams)
        held = set(scene.metadata.get("heldout_images") or [])
        if not held and "heldout_images" not in scene.metadata:
            held = {old_cams.names[i] for i in split_indices(list(old_cams.names), cfg.holdout_every)[1]}
        new_train, new_test = split_indices(list(new_cams.names), cfg.holdout_every)
        old_train = [i for i in range(n_old) if old_cams.names[i] not in held]
        old_test = [i for i in range(n_old) if old_cams.names[i] in held]
        train_idx = old_train + [n_old + i for i in new_train]
        test_idx = old_test + [n_old + i for i in new_test]
        data = TrainData(cams_t, images, train_idx, test_idx, None, None, True, dict(scene.metadata))
        timings["load_images_seconds"] = round(time.perf_counter() - t0, 2)

        # ---- which Gaussians change ---------------------------------------------------------------------
        t0 = time.perf_counter()
        g0 = scene.gaussians
        new_all = cams_t[list(range(n_old, len(cams_t)))]
        seen_gen = generated_seen(g0, new_all, backend=cfg.backend)
        removed = int(seen_gen.sum())
        g = g0[~seen_gen]
        new_train_cams = cams_t[[n_old + i for i in new_train]] if new_train else new_all
        active = _in_view(g.means, new_train_cams) & (g.origin == CAPTURED)
        fresh = new_point_gaussians(reg.points, reg.colors, g.means, cfg.sh_degree, cfg.init_opacity)
        seeded = Gaussians.empty(cfg.sh_degree)
        if seed and new_train:
            pos_new = [n_old + i for i in new_train]
            seeded = seed_uncovered(Gaussians.cat([g.with_sh_degree(cfg.sh_degree), fresh.with_sh_degree(cfg.sh_degree)]),
                                    cams_t[pos_new], [images[i] for i in pos_new], reg.points, cfg.sh_degree,
                                    step_id, backend=cfg.backend)
        carved = 0
        if free_space and old_train and (len(fresh) or len(seeded)):
            # one pass over the old views for both sets
            keep = ~in_observed_free_space(torch.cat([fresh.means, seeded.means]), g, cams_t[old_train],
                                           backend=cfg.backend)
            carved = int((~keep).sum())
            fresh, seeded = fresh[keep[: len(fresh)]], seeded[keep[len(fresh):]]
        init = Gaussians.cat([g[active].with_sh_degree(cfg.sh_degree), fresh.with_sh_degree(cfg.sh_degree),
                              seeded.with_sh_degree(cfg.sh_degree)])
        frozen = g[~active]
        if len(init) == 0:
            raise SpatialvidError("the new frames see no Gaussians and gave no new points: nothing to train")
        new_pos = [len(old_train) + j for j in range(len(new_train))] or list(range(len(train_idx)))
        # old training cameras that see part of what is optimised
        old_pos = []
        if old_train:
            uv, z = cams_t[old_train].project(init.means)
            w = cams_t[old_train].width[:, None].float()
            h = cams_t[old_train].height[:, None].float()
            vis = (z > 1e-3) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
            frac = vis.float().mean(1)
            old_pos = [j for j in range(len(old_train)) if float(frac[j]) >= 0.05]
        timings["select_seconds"] = round(time.perf_counter() - t0, 2)
        log(f"training {len(init):,} Gaussians ({len(fresh):,} new on the new points, {len(seeded):,} seeded where "
            f"the scene did not cover a new view; {carved:,} dropped in space the old views saw empty; "
            f"{len(frozen):,} kept as "
            f"they are; {removed:,} generated ones seen by the new frames removed) for {cfg.steps} steps over "
            f"{len(new_train)} new + {len(old_pos)} old training cameras")
        tcfg = dataclasses.replace(cfg, max_gaussians=max(len(init), cfg.max_gaussians - len(frozen)))
        trainer = ExtendTrainer(data, tcfg, init, frozen, new_pos, old_pos, progress=progress,
                                new_per_old=new_per_old)
        trainer.train()
        timings["train_seconds"] = round(trainer.train_seconds, 2)
        m = trainer.evaluate(save_images=False) if test_idx else {"psnr": None, "ssim": None}

        trained = trainer.gaussians(step_id)
        result_g = Gaussians.cat([frozen.with_sh_degree(cfg.sh_degree), trained])

        # ---- write: backup first, then the new images, then the scene --------------------------------
        added = len(result_g) - len(g0) + removed
        backup_rel = f"{HISTORY_DIR}/extend_{step_id}"
        with atomic_dir(scene_dir / backup_rel) as tmp:
            for name in (GAUSSIANS_PLY, TRANSFORMS_JSON, SCENE_JSON):
                shutil.copyfile(scene_dir / name, tmp / name)
        images_dir = scene_dir / str(scene.metadata.get("images_dir") or "images")
        final_new = new_cams.clone()
        if trainer.pose is not None and new_train:  # the refined poses of the new training cameras
            from spatialvid.train.pose_refine import corrected_viewmat

            with torch.no_grad():
                vms = torch.stack([corrected_viewmat(trainer.viewmats[train_idx[j]], trainer.pose.deltas[j])
                                   for j in new_pos]).cpu()
            sel = torch.tensor(new_train)
            final_new.R[sel] = vms[:, :3, :3].to(final_new.R.dtype)
            final_new.t[sel] = vms[:, :3, 3].to(final_new.t.dtype)
        paths = []
        for n, p in zip(final_new.names, final_new.image_paths):
            dst = images_dir / n
            atomic_write_bytes(dst, Path(p).read_bytes())
            paths.append(str(dst.resolve()))
        final_new.image_paths = paths
        scene.cameras = Cameras.cat([old_cams, final_new])
        scene.gaussians = result_g
        meta = scene.metadata
        meta.setdefault("extends", []).append({"step": step_id, "input": str(src), "frames": list(final_new.names)})
        held_new = [new_cams.names[i] for i in new_test]
        if "heldout_images" in meta or held_new:
            meta["heldout_images"] = sorted(set(meta.get("heldout_images") or []) | set(held_new))
        seconds = round(time.perf_counter() - t_all, 2)
        scene.add_history(
            "extend", step_id=step_id, input=str(src), poses=str(poses) if poses is not None else None,
            registered=len(final_new), total_frames=reg.total, dropped=reg.dropped,
            frames=list(final_new.names), source_names=reg.source_names, added=int(added),
            removed_generated=removed, free_space_dropped=carved, trained=len(init), frozen=len(frozen),
            num_gaussians=len(result_g),
            steps=cfg.steps, heldout_psnr=m.get("psnr"), seconds=seconds, timings=timings, notes=reg.notes,
            backup=backup_rel)
        got = scene.history[-1]["step"]
        if got != step_id:  # pragma: no cover - history ids are sequential
            raise SpatialvidError(f"extend: history step id {got} differs from {step_id}")
        scene.save(scene_dir)
        return ExtendResult(step_id, list(final_new.names), dict(reg.dropped), int(added), removed, len(init),
                            len(frozen), len(result_g), seconds, timings, list(reg.notes), dict(reg.source_names))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def undo_extend(scene_dir: str | Path) -> dict[str, Any]:
    """Restore the scene as it was before its most recent extend (not yet undone): the saved
    ``gaussians.ply`` and ``transforms.json`` byte for byte, the same metadata, the history plus an ``undo``
    entry; the extend's images are removed. Refused when a later step (e.g. a fill) is still in effect."""
    from spatialvid.atomic import atomic_write_bytes, atomic_write_json
    from spatialvid.scene import GAUSSIANS_PLY, SCENE_JSON, TRANSFORMS_JSON, Scene, _now

    scene_dir = Path(scene_dir)
    scene = Scene.load(scene_dir)
    undone = _undone(scene.history)
    live = [h for h in scene.history if h.get("kind") != "undo" and int(h["step"]) not in undone]
    ext = [h for h in live if h.get("kind") == "extend"]
    if not ext:
        raise SpatialvidError(f"{scene_dir}: nothing to undo: the scene has no extend step (or all were undone)")
    last = ext[-1]
    later = [h for h in live if int(h["step"]) > int(last["step"])]
    if later:
        kinds = ", ".join(f"{h['kind']} (step {h['step']})" for h in later)
        raise SpatialvidError(f"the extend (step {last['step']}) was followed by {kinds}; undo those first "
                              "(e.g. `spatialvid fill SCENE --undo`)")
    backup = scene_dir / str(last["info"].get("backup", ""))
    files = {n: backup / n for n in (GAUSSIANS_PLY, TRANSFORMS_JSON, SCENE_JSON)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SpatialvidError(f"cannot undo the extend (step {last['step']}): its saved scene is missing "
                              f"({missing[0]})")
    try:
        before = json.loads(files[SCENE_JSON].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SpatialvidError(f"{files[SCENE_JSON]}: cannot read the saved scene ({e})") from None
    step = scene.next_step_id()
    history = list(scene.history) + [{"step": step, "kind": "undo", "time": _now(),
                                      "info": {"undid": int(last["step"]), "kind": "extend",
                                               "removed_cameras": int(last["info"].get("registered", 0))}}]
    atomic_write_bytes(scene_dir / GAUSSIANS_PLY, files[GAUSSIANS_PLY].read_bytes())
    atomic_write_bytes(scene_dir / TRANSFORMS_JSON, files[TRANSFORMS_JSON].read_bytes())
    before["history"] = history
    atomic_write_json(scene_dir / SCENE_JSON, before)
    images_dir = scene_dir / str(before.get("metadata", {}).get("images_dir") or "images")
    for n in last["info"].get("frames", []):
        with contextlib.suppress(FileNotFoundError):
            (images_dir / n).unlink()
    return {"undid": int(last["step"]), "removed_cameras": len(last["info"].get("frames", [])), "step": step}
