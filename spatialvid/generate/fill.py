"""One fill step (:func:`fill_view`) and its undo (:func:`undo_last_fill`).

``fill_view(scene, camera)``:
1. renders the scene from ``camera`` (rgb, alpha, depth, contributor count) and derives the cleaned
   unseen mask (:mod:`~spatialvid.generate.coverage`);
2. fills the mask's colours with an :class:`~spatialvid.generate.inpaint.Inpainter`;
3. completes its depth with a :class:`~spatialvid.generate.depth.DepthEstimator`;
4. lifts the mask pixels to new Gaussians (``origin = GENERATED``, ``step`` = this step's id);
5. optimises only those new Gaussians briefly so the view renders as the fill image;
6. appends them to ``scene.gaussians`` and records a ``"fill"`` history entry.

Existing Gaussians (captured and earlier fills) are never modified: their rows stay bit-identical, and the
new ones are appended after them, so :func:`undo_last_fill` restores the previous tensors exactly.
A view whose unseen mask is empty adds nothing and records nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import DEFAULT_MAX_GAUSSIANS, GENERATED, Gaussians
from spatialvid.generate.coverage import render_coverage, unseen_mask
from spatialvid.generate.depth import ClassicalDepth, DepthEstimator, make_depth_estimator
from spatialvid.generate.fit import fit_new_gaussians
from spatialvid.generate.inpaint import Inpainter, _telea, make_inpainter
from spatialvid.generate.lift import _tangent, lift_pixels, unproject


@dataclass
class FillConfig:
    """Settings of one fill step (units: pixels of the fill view unless said otherwise).

    alpha_threshold: a pixel is unseen below this accumulated opacity. min_count: also unseen with fewer
    contributors (0 = off). min_area: unseen specks / seen islands smaller than this are cleaned away.
    dilate: the mask grows by this much to regenerate the fringe of the captured content.
    block: pixels per side of one new Gaussian. footprint: Gaussian std as a fraction of its block.
    opacity: initial opacity of new Gaussians. fit_iters / fit_lr: the short optimisation (0 = off);
    fit_max_side: it renders the mask's bounding box at most this large (pixels, longer side).
    background: colour behind the scene (0..1 RGB; None = the scene's ``metadata["background"]``, as trained).
    antialiased: the mip-splatting filter (None = the scene's ``metadata["antialiased"]``).
    backend: rasterizer backend.
    keep_free_space: new Gaussians standing in front of the surface that a training camera or an earlier fill
    camera saw are moved back along their ray (or dropped) (at most free_space_max_views sampled training
    cameras and as many nearest earlier fill cameras, rendered at free_space_side px on the longer side; "in front" = nearer than (1 - free_space_margin) times
    that camera's depth there).
    max_gaussians: the scene's Gaussian cap (a fill that would exceed it fails before changing anything).
    """

    alpha_threshold: float = 0.5
    min_count: int = 0
    min_area: int = 16
    dilate: int = 2
    block: int = 2
    footprint: float = 0.6
    opacity: float = 0.9
    fit_iters: int = 10
    fit_lr: float = 0.03
    fit_max_side: int = 256
    background: tuple[float, float, float] | None = None
    antialiased: bool | None = None
    backend: str = "auto"
    max_gaussians: int = DEFAULT_MAX_GAUSSIANS
    keep_free_space: bool = True
    free_space_max_views: int = 24
    free_space_side: int = 160
    free_space_margin: float = 0.1


@dataclass
class FillResult:
    """What one fill step did.

    ``step`` is the history step id (None when nothing was added); ``added`` the number of new Gaussians
    (appended at the end of ``scene.gaussians``); ``mask`` the unseen mask [H,W]; ``fill_rgb`` the filled
    image [H,W,3]; ``depth`` the completed depth [H,W] (camera z); ``timings`` wall seconds per stage, ``cpu_timings`` process
    CPU seconds per stage (all threads).
    """

    step: int | None
    added: int
    mask: np.ndarray
    fill_rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    unseen_fraction: float = 0.0
    inpainter: str = ""
    depth_estimator: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    cpu_timings: dict[str, float] = field(default_factory=dict)

    def indices(self, scene) -> torch.Tensor:
        """Row indices of this step's Gaussians in ``scene.gaussians``."""
        if self.step is None:
            return torch.zeros(0, dtype=torch.long)
        g = scene.gaussians
        return torch.nonzero((g.step == self.step) & (g.origin == GENERATED)).reshape(-1)


def _coarse_fill(img: np.ndarray, hole: np.ndarray, side: int = 128) -> np.ndarray:
    """A cheap smooth colour fill (Telea at <= ``side`` px, upsampled): only an edge guide for depth."""
    h, w = hole.shape
    s = min(1.0, side / max(h, w))
    if s >= 1.0:
        return _telea(img, hole)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = _telea(cv2.resize(img, size, interpolation=cv2.INTER_AREA),
                   cv2.resize(hole.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out[~hole] = img[~hole]
    return out


def depth_guide(depth: np.ndarray, valid: np.ndarray, camera: Cameras | None = None,
                normal_weight: float = 2.0) -> np.ndarray:
    """Geometry guide for the inpainter, ``[H,W,1]`` or ``[H,W,4]``: inverse depth normalised to ~0..1
    by the valid pixels' 2nd..98th percentiles (clipped to -0.5..1.5), plus, with ``camera``, the
    camera-space surface normal (scaled by ``normal_weight``) so floors are filled from floors and walls
    from walls."""
    disp = 1.0 / np.maximum(depth, 1e-6)
    lo, hi = np.percentile(disp[valid], [2, 98]) if valid.any() else (disp.min(), disp.max())
    g = np.clip((disp - lo) / max(hi - lo, 1e-6), -0.5, 1.5).astype(np.float32)[..., None]
    if camera is None:
        return g
    pts = unproject(depth, camera)
    n = np.cross(_tangent(pts, 1), _tangent(pts, 0))
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    n = cv2.GaussianBlur(n.astype(np.float32), (0, 0), 1.5)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    return np.concatenate([g, normal_weight * n], 2).astype(np.float32)


def _camera_from_record(rec: dict[str, Any]) -> Cameras:
    c2w = torch.as_tensor(rec["c2w_opencv"], dtype=torch.float32)
    return Cameras.from_c2w(c2w, rec["fx"], rec["fy"], rec["cx"], rec["cy"], int(rec["width"]), int(rec["height"]))


def guard_cameras(scene, max_views: int = 24, near: Cameras | None = None) -> list[Cameras]:
    """The cameras whose view must not change when a fill adds Gaussians: the earlier (not undone) fill
    cameras from the history (the ``max_views`` nearest to ``near`` when there are more), plus up to
    ``max_views`` evenly spaced training cameras."""
    out: list[Cameras] = []
    undone = _undone_steps(scene.history)
    for h in scene.history:
        rec = h.get("info", {}).get("camera")
        if h.get("kind") == "fill" and isinstance(rec, dict) and h.get("step") not in undone:
            try:
                out.append(_camera_from_record(rec))
            except (KeyError, TypeError, ValueError):
                continue
    if len(out) > max_views and near is not None:
        c0 = near.centers()[0]
        out = sorted(out, key=lambda c: float((c.centers()[0] - c0).norm()))[:max_views]
    n = len(scene.cameras)
    if n:
        for i in np.unique(np.linspace(0, n - 1, min(n, max_views)).round().astype(int)):
            out.append(scene.cameras[int(i)])
    return out


class SeenSpace:
    """The space that a set of cameras saw through: each camera's rendered depth and alpha (at <= ``side`` px).

    A point is in seen space when some camera sees a surface (alpha >= ``alpha_threshold``) behind it, farther
    than the point by more than ``margin`` of that depth: the camera looked through it, so it is empty.
    """

    def __init__(self, gaussians: Gaussians, cameras: list[Cameras], margin: float = 0.1, side: int = 160,
                 alpha_threshold: float = 0.5, backend: str = "auto", antialiased: bool = False):
        self.margin = margin
        self.views = []
        for cam in cameras:
            s = min(1.0, side / max(int(cam.width[0]), int(cam.height[0])))
            c = cam.scaled(s) if s < 1.0 else cam
            cov = render_coverage(gaussians, c, backend=backend, antialiased=antialiased)
            depth = torch.from_numpy(np.where(cov.alpha >= alpha_threshold, cov.depth, 0.0).astype(np.float32))
            self.views.append((c, depth))

    def contains(self, points: torch.Tensor, radius: torch.Tensor | None = None) -> torch.Tensor:
        """``bool [N]`` for ``points [N,3]`` (world). With ``radius [N]`` (world units, e.g. 3 sigma of a
        Gaussian) a point just outside a view counts where its footprint reaches into it (compared with the
        nearest border pixel): a Gaussian close to a camera covers much of its image from off-screen."""
        bad = torch.zeros(points.shape[0], dtype=torch.bool)
        for c, depth in self.views:
            h, w = depth.shape
            uv, z = c.project(points.to(c.fx.device))
            uf, vf, z = uv[0, :, 0], uv[0, :, 1], z[0]
            r = torch.zeros_like(z) if radius is None else radius.to(z.device) * c.fx[0] / z.clamp_min(1e-6)
            inside = (z > 0) & (uf >= -r) & (uf < w + r) & (vf >= -r) & (vf < h + r)
            u, v = uf.floor().long().clamp(0, w - 1), vf.floor().long().clamp(0, h - 1)
            d = depth[v, u]
            bad |= (inside & (d > 0) & (z < (1.0 - self.margin) * d)).cpu()
        return bad.to(points.device)  # on the points' device (the views are kept on the CPU)


def push_out_of_seen_space(new: Gaussians, camera: Cameras, seen: SeenSpace,
                           factors=(1.25, 1.5, 2.0, 3.0, 5.0)) -> tuple[Gaussians, int, int]:
    """Move each new Gaussian that lies in ``seen`` space back along its ray from ``camera`` (the fill
    camera: it still covers the same pixel), to the nearest of ``factors`` x its distance that is clear of
    seen space, scaled by the same factor; drop those clear at none. Returns (gaussians, moved, dropped)."""
    radius = 3.0 * torch.exp(new.log_scales.detach()).amax(-1)
    bad = seen.contains(new.means.detach(), radius)
    if not bool(bad.any()):
        return new, 0, 0
    centre = camera.centers()[0].to(new.means.device)
    means, log_scales = new.means.detach().clone(), new.log_scales.detach().clone()
    todo = bad.clone()
    for f in factors:
        idx = torch.nonzero(todo).reshape(-1)
        if idx.numel() == 0:
            break
        cand = centre + (means[idx] - centre) * f
        ok = ~seen.contains(cand, radius[idx] * f)
        take = idx[ok]
        means[take] = cand[ok]
        log_scales[take] = log_scales[take] + math.log(f)
        todo[take] = False
    moved = int(bad.sum()) - int(todo.sum())
    out = replace(new, means=means, log_scales=log_scales)
    return out[~todo], moved, int(todo.sum())


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _camera_record(camera: Cameras) -> dict[str, Any]:
    return {"c2w_opencv": camera.c2w()[0].tolist(), "fx": float(camera.fx[0]), "fy": float(camera.fy[0]),
            "cx": float(camera.cx[0]), "cy": float(camera.cy[0]), "width": int(camera.width[0]),
            "height": int(camera.height[0]), "name": camera.names[0]}


def fill_view(scene, camera: Cameras, inpainter: str | Inpainter | None = "classical",
              depth: str | DepthEstimator | None = "classical", config: FillConfig | None = None,
              **overrides: Any) -> FillResult:
    """Fill what ``camera`` (1 camera) sees but ``scene`` does not cover; modifies ``scene`` in place.

    ``inpainter``: "classical" | "exemplar" | "mean" | "diffusers:PATH" | an Inpainter. ``depth``: "classical" |
    "transformers:PATH" | a DepthEstimator. Keyword overrides set :class:`FillConfig` fields.
    """
    cfg = config or FillConfig()
    if overrides:
        unknown = set(overrides) - set(asdict(cfg))
        if unknown:
            raise SpatialvidError(f"fill_view: unknown option(s) {', '.join(sorted(unknown))}")
        cfg = FillConfig(**{**asdict(cfg), **overrides})
    if len(camera) != 1:
        raise SpatialvidError(f"fill_view: expected 1 camera, got {len(camera)}")
    camera.validate("fill camera")
    from spatialvid.render.api import parse_background, render_settings

    look = render_settings(scene)  # render as the scene was trained unless told otherwise
    cfg = replace(cfg, background=look["background"] if cfg.background is None else parse_background(cfg.background),
                  antialiased=look["antialiased"] if cfg.antialiased is None else bool(cfg.antialiased))
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t, tc = time.perf_counter(), time.process_time()

    g_all = scene.gaussians
    cov = render_coverage(g_all, camera, background=cfg.background, backend=cfg.backend,
                          antialiased=cfg.antialiased)
    mask = unseen_mask(cov.alpha, cov.count, cfg.alpha_threshold, cfg.min_count, cfg.min_area, cfg.dilate)
    timings["coverage"] = time.perf_counter() - t
    cpu["coverage"] = time.process_time() - tc
    h, w = mask.shape
    frac = float(mask.mean())
    if not mask.any():
        return FillResult(None, 0, mask, unseen_fraction=0.0, timings=timings, reason="nothing unseen",
                          cpu_timings=cpu)
    valid = cov.alpha >= cfg.alpha_threshold
    if not valid.any():
        raise SpatialvidError("fill: this camera sees none of the scene, so there is nothing to continue "
                              "from; move it so part of the scene is in view")
    if cfg.block < 1:
        raise SpatialvidError(f"fill: block must be >= 1, got {cfg.block}")
    ys, xs = np.nonzero(mask)  # lift makes one Gaussian per block that holds unseen pixels: check the cap now
    n_new = np.unique((ys // cfg.block) * ((w + cfg.block - 1) // cfg.block) + xs // cfg.block).size
    g_all.check_capacity(extra=int(n_new), cap=cfg.max_gaussians)
    inp = make_inpainter(inpainter)
    dep = make_depth_estimator(depth)

    # 2. colour, guided by a first (classical, cheap) depth completion so that holes are filled from
    #    regions of similar geometry; 3. depth with the chosen estimator and the filled colours as guide
    t, tc = time.perf_counter(), time.process_time()
    known = np.where(valid[..., None], cov.surface, 0.0).astype(np.float32)
    pre = dep if isinstance(dep, ClassicalDepth) else ClassicalDepth()
    pre_depth = pre.complete(cov.depth, valid, _coarse_fill(known, ~valid))
    fill_rgb = inp.inpaint(known, mask, guide=depth_guide(pre_depth, valid, camera))
    timings["inpaint"] = time.perf_counter() - t
    cpu["inpaint"] = time.process_time() - tc
    t, tc = time.perf_counter(), time.process_time()
    full_depth = dep.complete(cov.depth, valid, fill_rgb)
    timings["depth"] = time.perf_counter() - t
    cpu["depth"] = time.process_time() - tc
    # 4. lift
    t, tc = time.perf_counter(), time.process_time()
    step = scene.next_step_id()
    new = lift_pixels(mask, fill_rgb, full_depth, camera, step, block=cfg.block, footprint=cfg.footprint,
                      opacity=cfg.opacity, sh_degree=g_all.sh_degree if len(g_all) else 0)
    g_all.check_capacity(extra=len(new), cap=cfg.max_gaussians)
    timings["lift"] = time.perf_counter() - t
    cpu["lift"] = time.process_time() - tc
    # 5. fit (the existing Gaussians that touch the view are constants)
    t, tc = time.perf_counter(), time.process_time()
    bg = np.asarray(cfg.background, np.float32)
    target = np.where(mask[..., None], fill_rgb, cov.rgb).astype(np.float32)
    fixed = g_all[cov.visible.to(g_all.device)] if len(g_all) else g_all
    new = new.to(g_all.device)
    new, rep = fit_new_gaussians(fixed, new, camera, target, mask, iters=cfg.fit_iters, lr=cfg.fit_lr,
                                 max_side=cfg.fit_max_side,
                                 background=tuple(bg.tolist()), backend=cfg.backend, antialiased=cfg.antialiased)
    timings["fit"] = time.perf_counter() - t
    cpu["fit"] = time.process_time() - tc
    # 5b. keep seen space empty: a new Gaussian in front of what a training camera or an earlier fill camera
    #     saw is moved back along its ray until it is not (or dropped), so views already seen or filled look
    #     the same after this step and a depth guess that cut through seen space lands behind it instead
    t, tc = time.perf_counter(), time.process_time()
    moved = carved = 0
    if cfg.keep_free_space and len(new) and len(g_all):
        seen = SeenSpace(g_all, guard_cameras(scene, cfg.free_space_max_views, camera), cfg.free_space_margin,
                         cfg.free_space_side, cfg.alpha_threshold, cfg.backend, cfg.antialiased)
        new, moved, carved = push_out_of_seen_space(new, camera, seen)
    timings["free_space"] = time.perf_counter() - t
    cpu["free_space"] = time.process_time() - tc
    # 6. commit + record
    new = new.with_sh_degree(g_all.sh_degree) if len(g_all) else new
    scene.gaussians = Gaussians.cat([g_all, new]) if len(g_all) else new
    got = scene.add_history(
        "fill", step_id=step, camera=_camera_record(camera), added=len(new), moved_back=moved, dropped=carved, unseen_pixels=int(mask.sum()),
        pixels=int(h * w), unseen_fraction=frac, inpainter=inp.name, texture_trust=getattr(inp, "last_trust", None),
        depth=dep.name, render_backend=cov.backend,
        fit={"iters": rep.iters, "loss_first": _finite_or_none(rep.loss_first),
             "loss_last": _finite_or_none(rep.loss_last)},
        timings={k: round(v, 4) for k, v in timings.items()}, config=asdict(cfg))
    if got != step:  # pragma: no cover - history ids are sequential
        raise SpatialvidError(f"fill: history step id {got} differs from the id {step} given to the Gaussians")
    return FillResult(step, len(new), mask, fill_rgb, full_depth, frac, inp.name, dep.name, timings,
                      cpu_timings=cpu)


def _undone_steps(history: list[dict[str, Any]]) -> set[int]:
    return {int(h["info"]["undid"]) for h in history if h.get("kind") == "undo" and "undid" in h.get("info", {})}


def undo_last_fill(scene) -> int:
    """Remove the Gaussians of the most recent fill step not yet undone; records ``"undo"``.

    Returns the number of Gaussians removed. Raises :class:`SpatialvidError` when there is nothing to undo.
    """
    undone = _undone_steps(scene.history)
    fills = [int(h["step"]) for h in scene.history if h.get("kind") == "fill" and int(h["step"]) not in undone]
    if not fills:
        raise SpatialvidError("nothing to undo: the scene has no fill step (or all were undone)")
    step = fills[-1]
    g = scene.gaussians
    drop = (g.step == step) & (g.origin == GENERATED)
    n = int(drop.sum())
    scene.gaussians = g[~drop]
    scene.add_history("undo", undid=step, removed=n)
    return n
