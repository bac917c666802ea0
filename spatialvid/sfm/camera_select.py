"""Choose the camera model the data supports (Bayesian information criterion) after mapping.

Why: with a small baseline (a forward-facing capture: every view looks at the same wall) a shift of the
principal point, tangential distortion or fx != fy explain the images almost as well as a small common
rotation of all cameras. Estimating those parameters anyway (an OPENCV model with its principal point
refined) fits noise and tilts every camera by up to a degree or two for no gain in reprojection error. On
photos with a truly off-centre principal point or real distortion (fox), the richer model lowers the error a
lot and makes the poses better. So the images are mapped with the simplest model (SIMPLE_RADIAL, principal
point at the image centre: pycolmap's defaults) and then each candidate model is bundle adjusted from that
result and scored by

    BIC = w * SSE / sigma^2 + k * ln(2 P)

(SSE: sum of squared reprojection residuals in px^2; k: number of intrinsic parameters; sigma^2: the noise
variance, the richest candidate's SSE over its degrees of freedom (residuals less the 3 P point, 6 C pose and
k intrinsic parameters bundle adjustment fitted); P points, C cameras). The residuals of one track are not
independent evidence about the intrinsics (they share one 3D point and, along a video, nearly one view), so
the evidence is counted per track: w = 2 P / n (n residuals, 2 per observation), as if every track were one
observation. The candidate with the lowest BIC is kept: a richer model has to lower the squared error by
about ``ln(2 P)`` noise variances per extra parameter and track length. Counting every observation instead
(w = 1, ln(n)) let a 0.8% lower SSE move the principal point 2.4% off centre on the low-texture hand-held
sample (785 points seen ~9 times each) and tilted its cameras by 1.25 deg; per track it keeps the centred
model, 0.44 deg. The fox photos still get RADIAL + principal point (0.11 deg).

A candidate whose refined intrinsics are not those of a real camera is not chosen whatever its score: a
principal point more than :data:`PP_MAX_OFFSET` of the image size from the centre, or fx and fy more than
:data:`ASPECT_MAX` apart (square pixels). Such a fit absorbs what the pinhole model cannot explain (a rolling
shutter, motion blur) into the intrinsics and tilts every camera (measured: 6.8 deg on the hand-held blur
sample with the principal point refined to 10% off centre, 1.2 deg with it fixed at the centre). Real lenses
sit well inside these bounds (the fox photos: 1.4% and 0.3% off centre, fx/fy 1.0007).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PP_MAX_OFFSET = 0.05  # fraction of the image width / height
ASPECT_MAX = 0.02  # |fx / fy - 1|

# (name, COLMAP model, refine the principal point, number of refined intrinsic parameters)
CANDIDATES = (
    ("SIMPLE_RADIAL", "SIMPLE_RADIAL", False, 2),  # f, k1 (cx, cy at the image centre)
    ("SIMPLE_RADIAL+pp", "SIMPLE_RADIAL", True, 4),  # f, cx, cy, k1
    ("RADIAL+pp", "RADIAL", True, 5),  # f, cx, cy, k1, k2
    ("OPENCV+pp", "OPENCV", True, 8),  # fx, fy, cx, cy, k1, k2, p1, p2
)


@dataclass
class ModelChoice:
    """Outcome of :func:`select_camera_model`: chosen candidate name, and per candidate its SSE (px^2),
    BIC and number of intrinsic parameters; ``n`` residuals, ``sigma2`` noise variance (px^2)."""

    chosen: str
    scores: dict
    n: int
    sigma2: float

    @property
    def best_fit(self) -> str:
        """The lowest-BIC candidate, rejected or not (differs from ``chosen`` when it was implausible)."""
        return min(self.scores, key=lambda s: self.scores[s]["bic"])

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "n_residuals": self.n, "sigma2_px2": round(self.sigma2, 6),
                "candidates": self.scores}


def reprojection_sse(rec) -> tuple[float, int]:
    """Sum of squared reprojection residuals (px^2) over all observations of 3D points, and the number of
    scalar residuals (2 per observation)."""
    sse, n = 0.0, 0
    pts = rec.points3D
    for im in rec.images.values():
        if not im.has_pose:
            continue
        obs = [(p.xy, p.point3D_id) for p in im.points2D if p.has_point3D()]
        if not obs:
            continue
        xy = np.array([o[0] for o in obs], np.float64)
        xyz = np.array([pts[o[1]].xyz for o in obs], np.float64)
        m = np.asarray(im.cam_from_world().matrix(), np.float64)
        pc = xyz @ m[:3, :3].T + m[:3, 3]
        front = pc[:, 2] > 1e-12
        proj = np.asarray(rec.cameras[im.camera_id].img_from_cam(pc[front]), np.float64)
        d = proj - xy[front]
        sse += float((d * d).sum())
        n += 2 * int(front.sum())
    return sse, n


def _with_model(rec, model: str):
    """A copy of ``rec`` whose SIMPLE_RADIAL cameras are converted to ``model`` (same f, cx, cy, k1)."""
    import pycolmap

    out = pycolmap.Reconstruction(rec)
    for cam in out.cameras.values():
        f, cx, cy, k = (float(v) for v in cam.params)
        if model == "RADIAL":
            cam.model, cam.params = pycolmap.CameraModelId.RADIAL, [f, cx, cy, k, 0.0]
        elif model == "OPENCV":
            cam.model, cam.params = pycolmap.CameraModelId.OPENCV, [f, f, cx, cy, k, 0.0, 0.0, 0.0]
    return out


def implausible(rec) -> str | None:
    """Why the intrinsics of ``rec``'s cameras are not a real camera's (see the module docstring), or None."""
    for cam in rec.cameras.values():
        w, h = float(cam.width), float(cam.height)
        fx, fy = float(cam.focal_length_x), float(cam.focal_length_y)
        ox = abs(float(cam.principal_point_x) - w / 2) / w
        oy = abs(float(cam.principal_point_y) - h / 2) / h
        if max(ox, oy) > PP_MAX_OFFSET:
            return f"principal point {100 * ox:.0f}% / {100 * oy:.0f}% of the image off centre"
        if abs(fx / fy - 1) > ASPECT_MAX:
            return f"fx / fy = {fx / fy:.3f}"
    return None


def select_camera_model(rec, num_threads: int = -1):
    """Bundle adjust each of :data:`CANDIDATES` starting from ``rec`` (SIMPLE_RADIAL cameras, already bundle
    adjusted with the principal point fixed) and return (the reconstruction of the lowest-BIC candidate,
    :class:`ModelChoice`). ``rec`` itself is returned, unchanged, when SIMPLE_RADIAL wins. Candidates with
    :func:`implausible` intrinsics are scored but not chosen (their entry says why)."""
    import pycolmap

    from spatialvid.sfm.colmap_sfm import _num_threads, _quiet

    results = {}
    for name, model, pp, k in CANDIDATES:
        if name == "SIMPLE_RADIAL":
            cand = rec
        else:
            cand = _with_model(rec, model)
            opt = pycolmap.BundleAdjustmentOptions()
            opt.refine_principal_point = pp
            opt.print_summary = False
            opt.ceres.solver_options.num_threads = _num_threads(num_threads)
            with _quiet():
                pycolmap.bundle_adjustment(cand, opt)
        sse, n = reprojection_sse(cand)
        results[name] = (cand, sse, n, k)
    richest = max(results.values(), key=lambda r: r[3])
    n = results["SIMPLE_RADIAL"][2]
    npts, ncams = rec.num_points3D(), rec.num_reg_images()
    dof = max(richest[2] - 3 * npts - 6 * ncams - richest[3], 1)  # residuals less the parameters BA fitted
    sigma2 = max(richest[1] / dof, 1e-12)
    w = min(1.0, 2.0 * npts / max(n, 1))  # evidence per track, not per observation (see the module docstring)
    n_eff = max(2 * npts, 2)
    scores = {name: {"sse_px2": round(sse, 3), "k": k, "bic": round(w * sse / sigma2 + k * np.log(n_eff), 3)}
              for name, (_, sse, _, k) in results.items()}
    for name, (cand, _, _, _) in results.items():
        why = None if name == "SIMPLE_RADIAL" else implausible(cand)
        if why:
            scores[name]["rejected"] = why
    chosen = min((s for s in scores if "rejected" not in scores[s]), key=lambda s: scores[s]["bic"])
    return results[chosen][0], ModelChoice(chosen, scores, n, sigma2)
