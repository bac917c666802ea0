"""Structure from motion with pycolmap (written against pycolmap 4.2; see ``_compat`` notes inline).

Stages (each timed in ``SfmRun.timings``): ``extract`` (SIFT), ``match`` (pairs + geometric verification),
``map`` (incremental, or global/GLOMAP when asked and available), ``undistort`` (to pinhole for training).

Pairing: exhaustive for small sets (``exhaustive_max``); otherwise sequential (each image with the next
``overlap`` ones plus quadratic steps ``i + 2^k``) and, for loop closure, a small bag-of-visual-words
retrieval over the SIFT descriptors already in the database (k-means vocabulary, tf-idf cosine similarity):
each image is also matched with its ``loop_candidates`` most similar images that are not sequential
neighbours. Wrong candidates are rejected by geometric verification. (COLMAP's own loop detection needs a
downloaded vocabulary tree, which we never fetch at run time.)
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError


@dataclass
class SfmConfig:
    """Settings for ingest + SfM (defaults suit a phone video on a laptop CPU).

    max_frames: target number of keyframes. resolution: working long side in px (> 1) or scale (<= 1).
    matcher: "auto" (exhaustive up to ``exhaustive_max`` images, else sequential + loop closure),
        "sequential" or "exhaustive". mapper: "incremental" (default) or "global" (GLOMAP in pycolmap).
    camera_model: COLMAP model of the estimated camera: "OPENCV" (fx fy cx cy k1 k2 p1 p2), "SIMPLE_RADIAL"
        (f cx cy k), "RADIAL", "PINHOLE", or "auto": map with SIMPLE_RADIAL (principal point at the image
        centre), then, for a shared camera, keep the model the data supports (SIMPLE_RADIAL, or with the
        principal point refined, RADIAL or OPENCV; Bayesian information criterion, see
        :mod:`spatialvid.sfm.camera_select`). single_camera: share one camera between all images; None = yes
        for a video and for a folder whose images all have the same size.
    max_features: SIFT features per image; first_octave: -1 doubles the image first (more features, slower;
        None = -1 when the working long side is < 800 px, else 0).
    overlap: sequential neighbours matched per image; loop_closure / loop_candidates: retrieval pairs.
    refine_principal_point: refine cx, cy during mapping (shared camera and >= 10 images only); None = only
        with an explicit OPENCV model ("auto" decides after mapping instead: on small-baseline captures
        refining it trades rotation error for nothing).
    min_registered_fraction: fail when fewer than this fraction of keyframes is registered.
    blur_threshold: see :class:`spatialvid.io.KeyframeConfig`. num_threads: -1 = all cores. seed: RANSAC seed.
    max_panoramic_fraction: when more than this fraction of the verified image pairs is explained by one
        homography (COLMAP's PANORAMIC / PLANAR / PLANAR_OR_PANORAMIC), test for a pure rotation before mapping
        (:func:`rotation_test`) and fail with a plain message only when it is one; a flat scene is mapped.
    rotation_threshold: largest rotation residual (dimensionless, ~ baseline / plane distance) that counts as
        a pure rotation.
    min_model_points: a model with fewer sparse points counts as a failed reconstruction.
    retries: when the mapper fails, splits or registers fewer than ``retry_below`` of the images, retry
        (:func:`map_with_retries`; exhaustive matching is added only up to ``retry_exhaustive_max`` images);
        for a video, a last retry selects twice as many keyframes.
    """

    max_frames: int = 150
    resolution: float | int | None = 960
    matcher: str = "auto"
    mapper: str = "incremental"
    camera_model: str = "auto"
    single_camera: bool | None = None
    max_features: int = 4096
    first_octave: int | None = None
    overlap: int = 10
    loop_closure: bool = True
    loop_candidates: int = 5
    exhaustive_max: int = 30
    refine_principal_point: bool | None = None
    min_registered_fraction: float = 0.5
    blur_threshold: float = 0.6
    num_threads: int = -1
    seed: int = 0
    progress: bool = True
    max_panoramic_fraction: float = 0.98
    rotation_threshold: float = 0.1
    min_model_points: int = 20
    retries: bool = True
    retry_below: float = 0.9
    retry_exhaustive_max: int = 300

    def validate(self) -> None:
        if self.matcher not in ("auto", "sequential", "exhaustive"):
            raise SpatialvidError(f"matcher must be auto, sequential or exhaustive (got {self.matcher!r})")
        if self.mapper not in ("incremental", "global"):
            raise SpatialvidError(f"mapper must be incremental or global (got {self.mapper!r})")
        if self.camera_model not in ("auto", "OPENCV", "SIMPLE_RADIAL", "RADIAL", "PINHOLE", "SIMPLE_PINHOLE"):
            raise SpatialvidError(f"camera model {self.camera_model!r} is not supported (auto, OPENCV, SIMPLE_RADIAL, "
                                  "RADIAL, PINHOLE, SIMPLE_PINHOLE)")
        if self.max_frames < 3:
            raise SpatialvidError(f"max_frames must be at least 3 (got {self.max_frames})")

    def resolved(self, kind: str) -> SfmConfig:
        """A copy with the principal-point refinement during mapping decided (the same for every source
        kind: a video and a folder of photos are mapped alike; "auto" stays "auto")."""
        from dataclasses import replace

        pp = self.refine_principal_point
        if pp is None:
            pp = self.camera_model == "OPENCV"
        return replace(self, refine_principal_point=pp)

    def keyframe_config(self, denser: bool = False):
        """Ingest settings; ``denser``: twice the keyframes, at half the minimum motion between them."""
        from spatialvid.io.keyframes import KeyframeConfig

        kc = KeyframeConfig(max_frames=self.max_frames, resolution=self.resolution,
                            blur_threshold=self.blur_threshold)
        if denser:
            kc.max_frames, kc.min_motion = 2 * kc.max_frames, 0.5 * kc.min_motion
        return kc


@dataclass
class SfmRun:
    """Result of :func:`run_colmap`: the (largest) reconstruction and bookkeeping."""

    reconstruction: object  # pycolmap.Reconstruction
    database: Path
    timings: dict[str, float] = field(default_factory=dict)
    num_pairs: int = 0
    notes: list[str] = field(default_factory=list)
    camera_selection: dict | None = None  # ModelChoice.to_dict() when camera_model == "auto" chose the model
    tried: list[str] = field(default_factory=list)


def _num_threads(n: int) -> int:
    return n if n and n > 0 else (os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------
# camera conversion
# ---------------------------------------------------------------------------------------------------
def colmap_intrinsics(cam) -> tuple[float, float, float, float, list[float]]:
    """(fx, fy, cx, cy, dist[k1,k2,p1,p2,k3]) of a pycolmap.Camera (pixel centres at +0.5, like ours)."""
    p = [float(v) for v in cam.params]
    model = cam.model_name if hasattr(cam, "model_name") else str(cam.model)
    if model == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2], [0.0] * 5
    if model == "PINHOLE":
        return p[0], p[1], p[2], p[3], [0.0] * 5
    if model == "SIMPLE_RADIAL":
        return p[0], p[0], p[1], p[2], [p[3], 0.0, 0.0, 0.0, 0.0]
    if model == "RADIAL":
        return p[0], p[0], p[1], p[2], [p[3], p[4], 0.0, 0.0, 0.0]
    if model == "OPENCV":
        return p[0], p[1], p[2], p[3], [p[4], p[5], p[6], p[7], 0.0]
    if model == "FULL_OPENCV" and all(abs(v) < 1e-12 for v in p[9:12]):
        return p[0], p[1], p[2], p[3], [p[4], p[5], p[6], p[7], p[8]]
    raise SpatialvidError(f"COLMAP camera model {model} is not supported (use a pinhole/radial/OPENCV model)")


def make_colmap_camera(fx, fy, cx, cy, width, height, dist=None, camera_id: int = 1):
    """A pycolmap.Camera: PINHOLE without distortion, else OPENCV (k3 must be 0) or FULL_OPENCV."""
    import pycolmap

    d = [0.0] * 5 if dist is None else [float(v) for v in dist]
    if all(abs(v) < 1e-12 for v in d):
        model, params = "PINHOLE", [fx, fy, cx, cy]
    elif abs(d[4]) < 1e-12:
        model, params = "OPENCV", [fx, fy, cx, cy, d[0], d[1], d[2], d[3]]
    else:
        model, params = "FULL_OPENCV", [fx, fy, cx, cy, d[0], d[1], d[2], d[3], d[4], 0.0, 0.0, 0.0]
    return pycolmap.Camera(model=model, width=int(width), height=int(height),
                           params=[float(v) for v in params], camera_id=int(camera_id))


def reconstruction_cameras(rec, image_dir: str | Path | None = None, order: list[str] | None = None) -> Cameras:
    """Registered images of a reconstruction as :class:`Cameras` (OpenCV world-to-camera, COLMAP's world).

    ``order``: image names in the wanted order (unregistered ones skipped); default natural name order."""
    from spatialvid.io.decode import natural_key

    imgs = {im.name: im for im in rec.images.values() if im.has_pose}
    names = [n for n in order if n in imgs] if order is not None else sorted(imgs, key=natural_key)
    if not names:
        raise SpatialvidError("the reconstruction has no registered images")
    fx, fy, cx, cy, W, H, D, R, t, paths = [], [], [], [], [], [], [], [], [], []
    for n in names:
        im = imgs[n]
        cam = rec.cameras[im.camera_id]
        a, b, c, d, dist = colmap_intrinsics(cam)
        fx.append(a)
        fy.append(b)
        cx.append(c)
        cy.append(d)
        W.append(cam.width)
        H.append(cam.height)
        D.append(dist)
        m = np.asarray(im.cam_from_world().matrix(), np.float64)
        R.append(m[:3, :3])
        t.append(m[:3, 3])
        paths.append(str(Path(image_dir) / n) if image_dir else "")
    return Cameras(fx=fx, fy=fy, cx=cx, cy=cy, width=W, height=H, R=torch.tensor(np.array(R)),
                   t=torch.tensor(np.array(t)), dist=torch.tensor(D), names=list(names), image_paths=paths)


def reconstruction_points(rec, max_error: float = 4.0, min_track: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Sparse points (xyz [P,3] float64, rgb [P,3] float32 in 0..1), filtered by reprojection error/track."""
    xyz, rgb = [], []
    for p in rec.points3D.values():
        if p.track.length() < min_track:
            continue
        if p.has_error() and p.error > max_error:
            continue
        xyz.append(np.asarray(p.xyz, np.float64))
        rgb.append(np.asarray(p.color, np.float32) / 255.0)
    if not xyz:
        return np.zeros((0, 3)), np.zeros((0, 3), np.float32)
    return np.array(xyz), np.array(rgb, np.float32)


# ---------------------------------------------------------------------------------------------------
# pairing
# ---------------------------------------------------------------------------------------------------
def sequential_pairs(n: int, overlap: int, quadratic: bool = True) -> set[tuple[int, int]]:
    pairs = set()
    for i in range(n):
        for j in range(i + 1, min(n, i + overlap + 1)):
            pairs.add((i, j))
        if quadratic:
            k = 0
            while True:
                j = i + 2 ** k
                if j >= n:
                    break
                if j - i > overlap:
                    pairs.add((i, j))
                k += 1
    return pairs


def _nearest(x: np.ndarray, c: np.ndarray, chunk: int = 20000) -> np.ndarray:
    """Index of the nearest centre for each row of x (squared Euclidean, BLAS matrix products)."""
    cn = (c * c).sum(1)
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk]
        out[s : s + chunk] = np.argmin(cn[None, :] - 2.0 * xs @ c.T, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, iters: int = 10, seed: int = 0) -> np.ndarray:
    """Plain Lloyd k-means (random init from the data); returns centres [k, D]."""
    rng = np.random.default_rng(seed)
    c = x[rng.choice(len(x), size=k, replace=False)].copy()
    for _ in range(iters):
        a = _nearest(x, c)
        sums = np.zeros_like(c)
        np.add.at(sums, a, x)
        cnt = np.bincount(a, minlength=k)
        empty = cnt == 0
        c[~empty] = sums[~empty] / cnt[~empty, None]
        if empty.any():  # re-seed empty clusters
            c[empty] = x[rng.choice(len(x), size=int(empty.sum()), replace=False)]
    return c


def bow_similarity(descriptors: list[np.ndarray], vocab_size: int = 256, seed: int = 0,
                   sample: int = 20000) -> np.ndarray:
    """Image-to-image cosine similarity [N,N] of tf-idf bag-of-visual-words vectors (k-means vocabulary)."""
    rng = np.random.default_rng(seed)
    desc = [np.asarray(d, np.float32) for d in descriptors]
    n = len(desc)
    nonempty = [d for d in desc if len(d)]
    if not nonempty or sum(len(d) for d in nonempty) < vocab_size * 4:
        return np.zeros((n, n))
    allx = np.concatenate(nonempty)
    pick = allx[rng.choice(len(allx), size=min(sample, len(allx)), replace=False)]
    centres = kmeans(pick, vocab_size, seed=seed)
    hist = np.zeros((n, vocab_size))
    for i, d in enumerate(desc):
        if len(d):
            hist[i] = np.bincount(_nearest(d, centres), minlength=vocab_size)
    df = (hist > 0).sum(0)
    idf = np.log((n + 1) / (df + 1))
    v = hist * idf
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
    return v @ v.T


def loop_pairs(sim: np.ndarray, overlap: int, candidates: int) -> set[tuple[int, int]]:
    """Each image with its ``candidates`` most similar non-neighbour images (|i - j| > overlap)."""
    n = len(sim)
    pairs = set()
    for i in range(n):
        s = sim[i].copy()
        lo, hi = max(0, i - overlap), min(n, i + overlap + 1)
        s[lo:hi] = -np.inf
        for j in np.argsort(-s)[:candidates]:
            if np.isfinite(s[j]) and s[j] > 0:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return pairs


# ---------------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------------
def _quiet():
    """Silence COLMAP's glog chatter (it goes to stderr) unless SPATIALVID_VERBOSE is set."""
    if os.environ.get("SPATIALVID_VERBOSE"):
        return contextlib.nullcontext()
    import pycolmap

    with contextlib.suppress(Exception):  # glog buffers INFO lines and may flush them later: drop them at source
        pycolmap.logging.minloglevel = 1
    return _redirect_stderr()


@contextlib.contextmanager
def _redirect_stderr():
    import sys

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def extract(db: Path, image_dir: Path, names: list[str], config: SfmConfig, single_camera: bool,
            known_camera=None, working_long_side: int | None = None) -> None:
    """SIFT features for ``names`` into a new database. ``known_camera`` (pycolmap.Camera): fixed intrinsics."""
    import pycolmap

    ro = pycolmap.ImageReaderOptions()
    if known_camera is not None:
        ro.camera_model = known_camera.model_name
        ro.camera_params = ",".join(repr(float(v)) for v in known_camera.params)
    else:
        ro.camera_model = config.camera_model if config.camera_model != "auto" else "SIMPLE_RADIAL"
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = _num_threads(config.num_threads)
    eo.sift.max_num_features = int(config.max_features)
    octave = config.first_octave
    if octave is None:
        octave = -1 if (working_long_side or 1000) < 800 else 0
    eo.sift.first_octave = int(octave)
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    with _quiet():
        pycolmap.extract_features(db, image_dir, image_names=list(names), camera_mode=mode, reader_options=ro,
                                  extraction_options=eo, device=pycolmap.Device.cpu)


def match(db: Path, names: list[str], work: Path, config: SfmConfig, ordered: bool = True) -> int:
    """Match image pairs (see the module docstring). Returns the number of pairs matched.

    ``ordered``: the images are a sequence (video); otherwise more retrieval candidates are matched."""
    import pycolmap

    n = len(names)
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = _num_threads(config.num_threads)
    vo = pycolmap.TwoViewGeometryOptions()
    vo.ransac.random_seed = int(config.seed)
    exhaustive = config.matcher == "exhaustive" or (config.matcher == "auto" and n <= config.exhaustive_max)
    if exhaustive:
        with _quiet():
            pycolmap.match_exhaustive(db, matching_options=mo, verification_options=vo, device=pycolmap.Device.cpu)
        return n * (n - 1) // 2
    pairs = sequential_pairs(n, config.overlap)
    if config.loop_closure and n > config.overlap + 2:
        with pycolmap.Database.open(str(db)) as database:
            ids = {im.name: im.image_id for im in database.read_all_images()}
            desc = [np.asarray(database.read_descriptors(ids[nm]).data) for nm in names]
        sim = bow_similarity(desc, seed=config.seed)
        # photos may be unordered: rely more on retrieval
        pairs |= loop_pairs(sim, config.overlap, config.loop_candidates * (1 if ordered else 2))
    pairs_file = work / "pairs.txt"
    pairs_file.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in sorted(pairs)), encoding="utf-8")
    po = pycolmap.ImportedPairingOptions()
    po.match_list_path = str(pairs_file)
    with _quiet():
        pycolmap.match_image_pairs(db, matching_options=mo, pairing_options=po, verification_options=vo,
                                   device=pycolmap.Device.cpu)
    return len(pairs)


def panoramic_fraction(db: Path, min_pairs: int = 6) -> float | None:
    """Fraction of verified image pairs that COLMAP's two-view geometry explains by one homography
    (PANORAMIC, PLANAR or PLANAR_OR_PANORAMIC). Close to 1 for a camera that only rotates *and* for a
    moving camera that films mostly one flat surface (see :func:`rotation_test`, which tells them apart);
    None with fewer than ``min_pairs`` verified pairs."""
    flat, other = _homography_pairs(db)
    n = len(flat) + other
    return None if n < min_pairs else len(flat) / n


def _homography_pairs(db: Path):
    """([(image_id1, image_id2, H 3x3)] of the pairs one homography explains, number of other verified pairs)."""
    import pycolmap

    C = pycolmap.TwoViewGeometryConfiguration
    flat_cfg = {int(C.PANORAMIC), int(C.PLANAR_OR_PANORAMIC), int(C.PLANAR)}
    skip = {int(C.UNDEFINED), int(C.DEGENERATE), int(C.WATERMARK)}
    with pycolmap.Database.open(str(db)) as database:
        pair_ids, geoms = database.read_two_view_geometries()
    flat, other = [], 0
    for pid, g in zip(pair_ids, geoms):
        c = int(g.config)
        if c in skip or len(g.inlier_matches) == 0:
            continue
        H = np.asarray(g.H, np.float64)
        if c in flat_cfg and np.isfinite(H).all() and abs(np.linalg.det(H)) > 1e-12:
            i1, i2 = pycolmap.pair_id_to_image_pair(int(pid))
            flat.append((int(i1), int(i2), H))
        else:
            other += 1
    return flat, other


def rotation_deviation(H: np.ndarray, K1: np.ndarray, K2: np.ndarray | None = None) -> float:
    """How far the homography H (pixels, image 1 -> image 2) is from a pure rotation seen by intrinsics K1,
    K2: ``Hn = K2^-1 H K1`` of a rotation has equal singular values; a plane seen from two camera centres
    (``Hn ~ R + t n^T / d``) does not. Returns ``s_max / s_min - 1`` (0 for a rotation; of the order of the
    baseline over the plane distance otherwise)."""
    K2 = K1 if K2 is None else K2
    s = np.linalg.svd(np.linalg.inv(K2) @ H @ K1, compute_uv=False)
    return float(s[0] / max(s[2], 1e-12) - 1.0)


@dataclass
class RotationTest:
    """Result of :func:`rotation_test`. residual: the ``percentile``-th percentile over the pairs of
    :func:`rotation_deviation` at the focal length ``focal`` (pixels) that minimises it; rotation: below
    ``threshold`` (every pair looks like a pure rotation of one camera). frames: image names whose pairs all
    look like pure rotations."""

    residual: float
    focal: float
    rotation: bool
    pairs: int
    frames: list[str]


def rotation_test(db: Path, threshold: float = 0.1, percentile: float = 80.0,
                  focal_range: tuple[float, float] = (0.3, 3.0)) -> RotationTest | None:
    """Tell a camera that only rotates (PANORAMIC) from one that moves over a flat surface (PLANAR) when
    one homography explains the matches of most image pairs: a rotation's homographies are all
    ``K R K^-1`` for one intrinsics K, a plane's are not. The focal length is unknown, so it is searched
    (``focal_range`` x the image's long side; principal point at the image centre) for the value that makes
    the homographies most rotation-like. None when no pair has a homography."""
    import pycolmap

    flat, _ = _homography_pairs(db)
    if not flat:
        return None
    with pycolmap.Database.open(str(db)) as database:
        images = {im.image_id: im for im in database.read_all_images()}
        cams = {c.camera_id: c for c in database.read_all_cameras()}

    def K_of(iid: int, scale: float) -> np.ndarray:
        cam = cams[images[iid].camera_id]
        f = scale * max(cam.width, cam.height)
        return np.array([[f, 0, cam.width / 2.0], [0, f, cam.height / 2.0], [0, 0, 1.0]])

    def devs(scale: float) -> np.ndarray:
        return np.array([rotation_deviation(H, K_of(i1, scale), K_of(i2, scale)) for i1, i2, H in flat])

    grid = np.geomspace(focal_range[0], focal_range[1], 61)
    scores = [float(np.percentile(devs(g), percentile)) for g in grid]
    k = int(np.argmin(scores))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    for _ in range(20):  # golden-section refinement of the focal scale around the grid minimum
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        if np.percentile(devs(a), percentile) < np.percentile(devs(b), percentile):
            hi = b
        else:
            lo = a
    best = 0.5 * (lo + hi)
    d = devs(best)
    resid = float(np.percentile(d, percentile))
    per_image: dict[int, list[float]] = {}
    for (i1, i2, _), v in zip(flat, d):
        per_image.setdefault(i1, []).append(v)
        per_image.setdefault(i2, []).append(v)
    from spatialvid.io.decode import natural_key

    frames = sorted((images[i].name for i, v in per_image.items() if np.median(v) < threshold), key=natural_key)
    f = best * max(next(iter(cams.values())).width, next(iter(cams.values())).height)
    return RotationTest(resid, float(f), resid < threshold, len(flat), frames)


def map_incremental(db: Path, image_dir: Path, out: Path, config: SfmConfig, refine_pp: bool,
                    relaxed: bool = False, init_pair: tuple[int, int] | None = None):
    """COLMAP's incremental mapper. ``relaxed``: accept weaker initial pairs and registrations
    (init_min_num_inliers 100 -> 40, init_min_tri_angle 16 -> 6 deg, abs_pose_min_num_inliers 30 -> 15, more
    initialisation trials); ``init_pair``: start from these two image ids."""
    import pycolmap

    opt = pycolmap.IncrementalPipelineOptions()
    opt.num_threads = _num_threads(config.num_threads)
    opt.random_seed = int(config.seed)
    opt.ba_refine_principal_point = bool(refine_pp)
    opt.min_model_size = 3
    if relaxed:
        opt.mapper.init_min_num_inliers = 40
        opt.mapper.init_min_tri_angle = 6.0
        opt.mapper.abs_pose_min_num_inliers = 15
        opt.mapper.abs_pose_min_inlier_ratio = 0.15
        opt.init_num_trials = 400
    if init_pair is not None:
        opt.init_image_id1, opt.init_image_id2 = int(init_pair[0]), int(init_pair[1])
    with _quiet():
        return pycolmap.incremental_mapping(db, image_dir, out, options=opt)


def has_global_mapper() -> bool:
    import pycolmap

    return hasattr(pycolmap, "global_mapping") and hasattr(pycolmap, "GlobalPipelineOptions")


def map_global(db: Path, image_dir: Path, out: Path, config: SfmConfig):
    import pycolmap

    if not has_global_mapper():
        raise SpatialvidError("the installed pycolmap has no global mapper; use --mapper incremental")
    opt = pycolmap.GlobalPipelineOptions()
    opt.num_threads = _num_threads(config.num_threads)
    opt.random_seed = int(config.seed)
    with _quiet():
        return pycolmap.global_mapping(db, image_dir, out, options=opt)


class MappingError(SpatialvidError):
    """The mapper could not register enough frames after every retry; ``tried`` lists the attempts."""

    def __init__(self, reason: str, tried: list[str], missing: list[str]):
        super().__init__(reason + (". Tried: " + "; ".join(tried) if tried else ""))
        self.reason = reason
        self.tried = list(tried)
        self.missing = list(missing)


def _registered_names(rec) -> set[str]:
    return {im.name for im in rec.images.values() if im.has_pose}


def _good_models(recs, config: SfmConfig) -> list:
    return sorted((r for r in dict(recs or {}).values()
                   if r.num_reg_images() >= 3 and r.num_points3D() >= config.min_model_points),
                  key=lambda r: -r.num_reg_images())


def merge_models(recs: list, db: Path, image_dir: Path, work: Path, min_common: int = 3):
    """Merge split models into the largest where they share >= ``min_common`` registered images.

    Each other model is mapped into the largest one's world by the similarity (Umeyama) between the camera
    centres of the shared images; the images it adds keep their (transformed) poses and their model's
    intrinsics. The merged poses are then re-triangulated from the database matches (pycolmap
    ``triangulate_points``) and bundle adjusted. Returns (reconstruction, number of models merged in), or
    (largest, 0) when no model overlaps enough (or the merge fails)."""
    import pycolmap

    from spatialvid.sfm.align import umeyama

    base = recs[0]

    def poses(rec):
        out = {}
        for im in rec.images.values():
            if im.has_pose:
                m = np.asarray(im.cam_from_world().matrix(), np.float64)
                out[im.name] = (m[:3, :3], m[:3, 3], rec.cameras[im.camera_id])
        return out

    merged = poses(base)
    used = 0
    remaining = list(recs[1:])
    progress = True
    while remaining and progress:  # a model may overlap the base only after another one is merged in
        progress = False
        for rec in list(remaining):
            p = poses(rec)
            common = [n for n in p if n in merged]
            if len(common) < min_common:
                continue
            src = np.array([-p[n][0].T @ p[n][1] for n in common])  # centres in rec's world
            dst = np.array([-merged[n][0].T @ merged[n][1] for n in common])
            try:
                sc, R, t = umeyama(src, dst)
            except SpatialvidError:
                continue
            for n, (Ri, ti, cam) in p.items():
                if n in merged:
                    continue
                c = sc * R @ (-Ri.T @ ti) + t  # centre in the base world
                Rn = Ri @ R.T
                merged[n] = (Rn, -Rn @ c, cam)
            remaining.remove(rec)
            used += 1
            progress = True
    if not used:
        return base, 0
    try:
        rec = pycolmap.Reconstruction()
        with pycolmap.Database.open(str(db)) as database:
            db_images = {im.name: im for im in database.read_all_images()}
            added = set()
            for n, (_, _, cam) in merged.items():
                cid = db_images[n].camera_id
                if cid in added:
                    continue
                new = pycolmap.Camera(model=cam.model_name, width=cam.width, height=cam.height,
                                      params=list(cam.params), camera_id=cid)
                database.update_camera(new)
                rec.add_camera_with_trivial_rig(new)
                added.add(cid)
        for n, (Ri, ti, _) in merged.items():
            dbi = db_images[n]
            img = pycolmap.Image(name=n, camera_id=dbi.camera_id, image_id=dbi.image_id)
            rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(np.concatenate([Ri, ti[:, None]], 1)))
        tri = work / "merged"
        shutil.rmtree(tri, ignore_errors=True)
        tri.mkdir(parents=True)
        with _quiet():
            rec = pycolmap.triangulate_points(rec, str(db), str(image_dir), str(tri))
            pycolmap.bundle_adjustment(rec, pycolmap.BundleAdjustmentOptions())
        rec.extract_colors_for_all_images(str(image_dir))
    except Exception:  # keep the largest model rather than fail on a merge
        return base, 0
    return rec, used


def _init_pairs(db: Path, k: int = 2) -> list[tuple[int, int]]:
    """Candidate initial pairs: the pairs with the most inlier matches among those a homography does not
    explain (parallax), else among all; at most ``k``, spread over the sequence."""
    import pycolmap

    C = pycolmap.TwoViewGeometryConfiguration
    flat_cfg = {int(C.PANORAMIC), int(C.PLANAR_OR_PANORAMIC), int(C.PLANAR)}
    bad = {int(C.UNDEFINED), int(C.DEGENERATE), int(C.WATERMARK)}
    with pycolmap.Database.open(str(db)) as database:
        pair_ids, geoms = database.read_two_view_geometries()
    rows = []
    for pid, g in zip(pair_ids, geoms):
        c = int(g.config)
        if c in bad:
            continue
        i1, i2 = pycolmap.pair_id_to_image_pair(int(pid))
        rows.append((c not in flat_cfg, len(g.inlier_matches), int(i1), int(i2)))
    rows.sort(reverse=True)
    out: list[tuple[int, int]] = []
    for _, _, i1, i2 in rows:
        if all(min(abs(i1 - a), abs(i1 - b)) > 2 for a, b in out):  # not next to a pair already chosen
            out.append((i1, i2))
        if len(out) >= k:
            break
    return out


def map_with_retries(db: Path, image_dir: Path, work: Path, names: list[str], config: SfmConfig,
                     refine_pp: bool, exhaustive_done: bool, timings: dict[str, float] | None = None):
    """Map, and when the mapper fails, registers too few images or splits them into several models, retry:
    relaxed initialisation, other initial pairs, exhaustive matching added to the sequential pairs, the
    global mapper (when pycolmap has it). Split models are merged where they overlap. Stops at the first
    attempt that registers >= ``config.retry_below`` of the images in one model.

    Returns (reconstruction, tried: one line per attempt, number of models in the best attempt)."""
    import pycolmap

    n = len(names)
    model_dir = work / "models"
    tried: list[str] = []
    best = (None, -1, 0)  # (rec, registered, models)

    def attempt(label: str, fn) -> bool:
        nonlocal best
        shutil.rmtree(model_dir, ignore_errors=True)
        model_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            models = _good_models(fn(), config)
        except SpatialvidError:
            raise
        except Exception as e:  # a COLMAP failure is one failed attempt, not a crash
            tried.append(f"{label}: failed ({type(e).__name__})")
            return False
        rec, k, merged = None, 0, 0
        if models:
            rec, merged = merge_models(models, db, image_dir, work) if len(models) > 1 else (models[0], 0)
            k = len(_registered_names(rec) & set(names))
        desc = f"{k}/{n} images registered"
        if len(models) > 1:
            desc += f" in {len(models)} models" + (f" ({merged + 1} merged)" if merged else "")
        tried.append(f"{label}: {desc} ({time.perf_counter() - t0:.0f} s)")
        left = len(models) - merged
        if rec is not None and (k > best[1] or (k == best[1] and left < best[2])):
            best = (rec, k, left)
        return rec is not None and k >= config.retry_below * n and left <= 1

    primary = "global" if config.mapper == "global" else "incremental"
    if primary == "global":
        ok = attempt("global mapper", lambda: map_global(db, image_dir, model_dir, config))
    else:
        ok = attempt("incremental mapper", lambda: map_incremental(db, image_dir, model_dir, config, refine_pp))
    if not ok and config.retries:
        ok = attempt("incremental, relaxed initialisation",
                     lambda: map_incremental(db, image_dir, model_dir, config, refine_pp, relaxed=True))
        if not ok:
            with pycolmap.Database.open(str(db)) as database:
                id_name = {im.image_id: im.name for im in database.read_all_images()}
            for pair in _init_pairs(db):
                ok = attempt(f"incremental from the pair {id_name[pair[0]]}, {id_name[pair[1]]}",
                             lambda pair=pair: map_incremental(db, image_dir, model_dir, config, refine_pp,
                                                              relaxed=True, init_pair=pair))
                if ok:
                    break
        if not ok and not exhaustive_done and n <= config.retry_exhaustive_max:
            t0 = time.perf_counter()
            mo = pycolmap.FeatureMatchingOptions()
            mo.num_threads = _num_threads(config.num_threads)
            vo = pycolmap.TwoViewGeometryOptions()
            vo.ransac.random_seed = int(config.seed)
            with _quiet():  # pairs already matched are skipped
                pycolmap.match_exhaustive(db, matching_options=mo, verification_options=vo,
                                          device=pycolmap.Device.cpu)
            if timings is not None:
                timings["match_exhaustive"] = time.perf_counter() - t0
            ok = attempt("exhaustive matching + incremental, relaxed",
                         lambda: map_incremental(db, image_dir, model_dir, config, refine_pp, relaxed=True))
        if not ok and primary != "global" and has_global_mapper():
            ok = attempt("global mapper", lambda: map_global(db, image_dir, model_dir, config))
    return best[0], tried, best[2]


def run_colmap(image_dir: str | Path, names: list[str], work_dir: str | Path, config: SfmConfig,
               single_camera: bool = True, ordered: bool = True, working_long_side: int | None = None) -> SfmRun:
    """Extract, match and map ``names`` (files in ``image_dir``); return the largest reconstruction.

    Before mapping, a clip whose image pairs are (nearly) all one homography is tested for a pure rotation
    (:func:`rotation_test`): a camera that only rotates is refused with the frames named; a camera moving
    over a flat surface goes on to the mapper. Mapping retries as in :func:`map_with_retries`. Raises
    :class:`SpatialvidError` when nothing can be reconstructed (:class:`MappingError` lists the attempts)."""
    import pycolmap

    config.validate()
    image_dir, work = Path(image_dir), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    for p in (db, work / "database.db-wal", work / "database.db-shm"):
        if p.exists():
            p.unlink()
    pycolmap.set_random_seed(int(config.seed))
    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    extract(db, image_dir, names, config, single_camera, working_long_side=working_long_side)
    timings["extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    npairs = match(db, names, work, config, ordered=ordered)
    timings["match"] = time.perf_counter() - t0
    pano = panoramic_fraction(db)
    if pano is not None and pano > config.max_panoramic_fraction:
        rt = rotation_test(db, config.rotation_threshold)
        if rt is not None and rt.rotation:
            frames = rt.frames or list(names)
            where = (f"all {len(names)} frames ({names[0]} ... {names[-1]})" if len(frames) == len(names)
                     else f"frames {_list_names(frames)}")
            raise SpatialvidError(
                f"no parallax between the frames: the camera only rotates (or stands still). {100 * pano:.0f}% of "
                f"the matched image pairs are explained by one homography, and all of them by a pure rotation of "
                f"one camera (residual {rt.residual:.3f} < {config.rotation_threshold}, focal ~{rt.focal:.0f} px) "
                f"in {where}. A pure rotation cannot be reconstructed in 3D: film while "
                "moving sideways around or along the scene")
        if rt is not None:
            notes.append(f"{100 * pano:.0f}% of the matched image pairs are explained by one homography, but the "
                         f"camera moves (a flat surface dominates: rotation residual {rt.residual:.2f} >= "
                         f"{config.rotation_threshold}); mapping as a planar scene")
    t0 = time.perf_counter()
    refine_pp = bool(config.refine_principal_point) and single_camera and len(names) >= 10
    exhaustive = config.matcher == "exhaustive" or (config.matcher == "auto" and len(names) <= config.exhaustive_max)
    rec, tried, models = map_with_retries(db, image_dir, work, names, config, refine_pp, exhaustive, timings)
    timings["map"] = time.perf_counter() - t0 - timings.get("match_exhaustive", 0.0)
    if rec is None:
        raise MappingError(_no_model_message(db, len(names)), tried, list(names))
    selection = None
    if config.camera_model == "auto" and len(rec.cameras) == 1:
        from spatialvid.sfm.camera_select import select_camera_model

        t1 = time.perf_counter()
        rec, choice = select_camera_model(rec, config.num_threads)
        selection = choice.to_dict()
        timings["camera_model"] = time.perf_counter() - t1
        best = choice.best_fit
        if best != choice.chosen:
            notes.append(f"the camera model that fits best ({best}) has intrinsics no real camera has "
                         f"({choice.scores[best]['rejected']}): the frames carry distortions a pinhole camera "
                         f"cannot explain (a rolling shutter, motion blur); kept {choice.chosen}, and the poses "
                         "may be off by a degree or more")
    run = SfmRun(rec, db, timings, npairs, notes, camera_selection=selection, tried=tried)
    if len(tried) > 1:
        run.notes.append("mapper retries: " + "; ".join(tried))
    if models > 1:
        run.notes.append(f"SfM split the images into {models} separate models that do not overlap; kept the "
                         f"largest ({rec.num_reg_images()} images)")
    return run


def _list_names(names: list[str], k: int = 12) -> str:
    s = ", ".join(names[:k])
    return s + (f" ... (+{len(names) - k} more)" if len(names) > k else "")


def _no_model_message(db: Path, n: int) -> str:
    import pycolmap

    verified = 0
    with contextlib.suppress(Exception), pycolmap.Database.open(str(db)) as database:
        verified = database.num_verified_image_pairs()
    return (f"structure from motion could not reconstruct any of the {n} frames ({verified} image pairs matched). "
            "Usually the camera did not move sideways enough: 3D needs parallax, and a static or purely rotating "
            "camera cannot be reconstructed. Otherwise the images may be too blurry, too small or too "
            "texture-poor: try more frames (--max-frames) or a higher --resolution")


def undistort(rec, image_dir: Path, out_dir: Path, names: list[str] | None = None, progress: bool = False):
    """Undistort the registered images of ``rec`` *in place* to PINHOLE cameras and write them to
    ``out_dir/images`` (same file names). The new pinhole camera and its crop come from COLMAP's
    ``undistort_camera`` (only valid pixels kept); the pixels are resampled with OpenCV's remap (bilinear),
    which is much faster than COLMAP's image undistorter. 2D observations are moved to the undistorted
    image too, so the model stays consistent. Images of pinhole cameras are copied unchanged."""
    import cv2
    import pycolmap
    from tqdm.auto import tqdm

    from spatialvid.atomic import atomic_write_bytes
    from spatialvid.io.decode import encode_image, read_image

    out_images = Path(out_dir) / "images"
    out_images.mkdir(parents=True, exist_ok=True)
    opts = pycolmap.UndistortCameraOptions()
    maps: dict[int, tuple] = {}
    old_cams: dict[int, object] = {}
    for cid, cam in rec.cameras.items():
        old = pycolmap.Camera(model=cam.model_name, width=cam.width, height=cam.height,
                              params=list(cam.params), camera_id=cid)
        old_cams[cid] = old
        fx, fy, cx, cy, dist = colmap_intrinsics(old)
        if all(abs(v) < 1e-12 for v in dist):
            new = pycolmap.Camera(model="PINHOLE", width=cam.width, height=cam.height,
                                  params=[fx, fy, cx, cy], camera_id=cid)
            maps[cid] = (None, None, new)
            continue
        new = pycolmap.undistort_camera(opts, old)
        nfx, nfy, ncx, ncy, _ = colmap_intrinsics(new)
        K = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1.0]])  # OpenCV: pixel centres at integers
        nK = np.array([[nfx, 0, ncx - 0.5], [0, nfy, ncy - 0.5], [0, 0, 1.0]])
        m1, m2 = cv2.initUndistortRectifyMap(K, np.array(dist, np.float64), None, nK,
                                             (int(new.width), int(new.height)), cv2.CV_32FC1)
        maps[cid] = (m1, m2, new)
    wanted = set(names) if names else None
    ims = [im for im in rec.images.values() if im.has_pose and (wanted is None or im.name in wanted)]
    for im in tqdm(ims, desc="undistort", unit="image", disable=not progress, leave=False):
        m1, m2, new = maps[im.camera_id]
        src, dst = Path(image_dir) / im.name, out_images / im.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if m1 is None:
            shutil.copyfile(src, dst)
            continue
        img = read_image(src)  # RGB
        und = cv2.remap(img, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        atomic_write_bytes(dst, encode_image(und, dst.suffix))
        if im.num_points2D():
            old = old_cams[im.camera_id]
            xy = np.array([p.xy for p in im.points2D], np.float64)
            ray = old.cam_from_img(xy)  # normalised image coordinates [m,2]
            nxy = new.img_from_cam(np.concatenate([ray, np.ones((len(ray), 1))], 1))
            for p, v in zip(im.points2D, nxy):
                p.xy = v
    for cid, (_, _, new) in maps.items():
        cam = rec.cameras[cid]
        cam.model = new.model
        cam.width = new.width
        cam.height = new.height
        cam.params = new.params
    return rec


def frustum_points(cameras: Cameras, num: int = 20000, near: float | None = None, far: float | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random points inside the camera frusta (fallback init when triangulation fails), grey colour.

    Depth range defaults to [0.5, 2.5] x the median distance between camera centres and their mean."""
    rng = np.random.default_rng(seed)
    c = cameras.centers().double().numpy()
    spread = float(np.median(np.linalg.norm(c - c.mean(0), axis=1))) if len(c) > 1 else 1.0
    spread = spread if spread > 1e-9 else 1.0
    near = near or 0.5 * spread
    far = far or 2.5 * spread
    per = max(1, math.ceil(num / len(cameras)))
    pts = []
    for i in range(len(cameras)):
        u = rng.uniform(0, float(cameras.width[i]), per)
        v = rng.uniform(0, float(cameras.height[i]), per)
        z = rng.uniform(near, far, per)
        x = (u - float(cameras.cx[i])) / float(cameras.fx[i]) * z
        y = (v - float(cameras.cy[i])) / float(cameras.fy[i]) * z
        pc = np.stack([x, y, z], 1)
        R = cameras.R[i].double().numpy()
        t = cameras.t[i].double().numpy()
        pts.append((pc - t) @ R)  # R^T (pc - t)
    xyz = np.concatenate(pts)[:num]
    return xyz, np.full((len(xyz), 3), 0.5, np.float32)
