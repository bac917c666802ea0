"""The training loop: Gaussians fitted to posed images (3D Gaussian Splatting, Kerbl et al. 2023).

``batch_size`` images per step (one by default; the loss averaged over them), L1 + D-SSIM loss, one Adam per parameter (3DGS learning rates, positions decayed
exponentially and scaled by the scene extent), SH degree raised every ``sh_degree_interval`` steps,
densification by a strategy object (:mod:`spatialvid.train.strategy`), optional per-camera pose refinement,
atomic checkpoints (``--resume`` continues to the same result), held-out evaluation at the end.
With ``dist`` (a :class:`~spatialvid.train.distributed.Distributed`, under torchrun) the batch is split over the
ranks, see :mod:`spatialvid.train.distributed`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialvid.device import resolve_device
from spatialvid.errors import SpatialvidError
from spatialvid.faults import fault_point
from spatialvid.gaussians import CAPTURED, Gaussians, num_sh_bases, quat_to_rotmat, rgb_to_sh0
from spatialvid.render import rasterize
from spatialvid.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from spatialvid.train.config import TrainConfig
from spatialvid.train.data import TrainData
from spatialvid.train.losses import multiview_ncc_loss, normal_consistency_loss, photometric_loss
from spatialvid.train.optim import PARAM_NAMES, batch_scaling, exp_lr, make_optimizers, set_lr
from spatialvid.train.pose_refine import PoseRefiner
from spatialvid.train.strategy import make_strategy


class TrainingDiverged(SpatialvidError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    step: int
    num_gaussians: int
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None


@dataclass
class StepEvent:
    """What a step callback (``Trainer(on_step=...)``) receives after a training step.

    ``step`` counts completed steps (1..``total``, the same numbering as ``Trainer.history``); ``loss`` and
    ``psnr`` (dB, on the training image) are smoothed (EMA 0.9, as in the progress bar), ``step_loss`` /
    ``step_psnr`` are the raw values of this step; ``train_seconds`` excludes time spent in callbacks.
    The Gaussians are built only on request: :meth:`gaussians`.
    """

    step: int
    total: int
    loss: float
    psnr: float
    step_loss: float
    step_psnr: float
    num_gaussians: int
    train_seconds: float
    trainer: Trainer = field(repr=False)

    @property
    def stats(self) -> dict[str, Any]:
        """``{step, loss, psnr, num_gaussians}`` (plain numbers, e.g. for a UI)."""
        return {"step": self.step, "loss": self.loss, "psnr": self.psnr, "num_gaussians": self.num_gaussians}

    def gaussians(self, copy: bool = True) -> Gaussians:
        """The current Gaussians, detached. ``copy=False`` shares storage with the parameters: cheaper, but only
        valid until the callback returns (the next step changes it in place)."""
        return self.trainer.gaussians(copy=copy)


StepCallback = Callable[[StepEvent], None]


def scene_extent(centers: torch.Tensor) -> float:
    """3DGS scene radius: 1.1 x the largest distance of a camera centre from their mean (world units)."""
    if len(centers) < 2:
        return 1.0
    r = float((centers - centers.mean(0)).norm(dim=-1).max()) * 1.1
    return r if r > 1e-6 else 1.0


def knn_scales(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Mean distance to the ``k`` nearest neighbours of each point (scipy cKDTree), [P]."""
    from scipy.spatial import cKDTree

    pts = points.double().numpy()
    if len(pts) < 2:
        return torch.full((len(pts),), 0.01)
    kk = min(k + 1, len(pts))
    d, _ = cKDTree(pts).query(pts, k=kk)
    d = d[:, 1:] if kk > 1 else d
    m = torch.from_numpy(d.mean(-1)).float()
    pos = m[m > 0]
    floor = float(pos.median()) * 0.01 if len(pos) else 1e-4
    return m.clamp_min(max(floor, 1e-7))


def random_points_in_frusta(cameras, n: int, extent: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` points uniform in the region seen by many cameras: candidates in a box around the camera centres
    (grown by the scene extent), kept when they project inside at least 20% of the cameras (relaxed down to
    one camera if too few survive)."""
    centers = cameras.centers()
    lo = centers.min(0).values - extent
    hi = centers.max(0).values + extent
    out, need = [], n
    thresholds = [max(2, int(0.2 * len(cameras))), 2, 1]
    for thr in thresholds:
        for _ in range(20):
            cand = lo + (hi - lo) * torch.rand(max(4 * need, 4096), 3, generator=gen)
            uv, z = cameras.project(cand)
            w = cameras.width[:, None].float()
            h = cameras.height[:, None].float()
            inside = (z > 0.05 * extent) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
            ok = inside.sum(0) >= min(thr, len(cameras))
            out.append(cand[ok][:need])
            need -= int(out[-1].shape[0])
            if need <= 0:
                return torch.cat(out)[:n]
    if need == n:
        raise SpatialvidError("random init: no point in front of the cameras (are the poses valid?)")
    return torch.cat(out)


def init_gaussians(data: TrainData, cfg: TrainConfig, extent: float, gen: torch.Generator) -> tuple[Gaussians, str]:
    """Initial Gaussians: from the sparse points (scales = mean 3-NN distance, opacity ``init_opacity``),
    or random in the camera frusta. Returns (gaussians, description)."""
    use_points = data.points is not None and len(data.points) >= 4 and cfg.init != "random"
    if cfg.init == "points" and not use_points:
        raise SpatialvidError("init=points but the input has no sparse points (use --init random)")
    if use_points:
        pts, rgb = data.points, data.colors
        limit = min(cfg.init_max_points, cfg.max_gaussians)
        if len(pts) > limit:
            sel = torch.randperm(len(pts), generator=gen)[:limit]
            pts, rgb = pts[sel], rgb[sel]
        how = f"{len(pts):,} sparse points"
    else:
        n = min(cfg.init_random_points, cfg.max_gaussians)
        pts = random_points_in_frusta(data.train_cameras, n, extent, gen)
        rgb = 0.5 + 0.1 * torch.randn(len(pts), 3, generator=gen)
        rgb = rgb.clamp(0, 1)
        how = f"{len(pts):,} random points in the camera frusta"
    scales = knn_scales(pts)
    n = len(pts)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    g = Gaussians.from_arrays(pts, torch.log(scales)[:, None].expand(n, 3).clone(), quats,
                              torch.logit(torch.full((n,), float(cfg.init_opacity))), rgb_to_sh0(rgb),
                              torch.zeros(n, num_sh_bases(cfg.sh_degree) - 1, 3))
    return g, how


def rng_state_dict(gen: torch.Generator) -> dict[str, Any]:
    """torch / numpy / Python / trainer-generator RNG states as tensors and plain numbers (no pickled objects,
    so a checkpoint loads with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "gen": gen.get_state(),
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next}}


def set_rng_state_dict(st: dict[str, Any], gen: torch.Generator) -> None:
    """Restore what :func:`rng_state_dict` recorded."""
    torch.set_rng_state(st["torch"])
    gen.set_state(st["gen"])
    n = st["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = st["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))


def _camera_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


class Trainer:
    """Fits Gaussians to ``data`` with ``cfg``; writes checkpoints under ``out_dir/checkpoints``.

    ``init`` (optional) gives starting Gaussians instead of the points in ``data``.
    ``on_step``: a callable (or a list of them) called as ``fn(event: StepEvent)`` every ``on_step_every``
    completed steps and after the last step of :meth:`train` (on the training thread: a callback that blocks,
    e.g. a UI pause, pauses training; its time is not counted in ``train_seconds``; an exception it raises
    stops training and propagates). Used for live views; the trainer knows nothing about who listens.
    ``dist``: data-parallel training over torch.distributed ranks (every rank builds its Trainer alike; only
    rank 0 writes files and shows progress).
    """

    def __init__(self, data: TrainData, cfg: TrainConfig, out_dir: str | Path | None = None,
                 init: Gaussians | None = None, progress: bool = True,
                 on_step: StepCallback | Sequence[StepCallback] | None = None, on_step_every: int = 1,
                 dist=None):
        cfg.validate()
        if on_step_every < 1:
            raise SpatialvidError(f"on_step_every must be >= 1, got {on_step_every}")
        self.dist = dist
        self.world_size = 1 if dist is None else dist.world_size
        self.is_main = dist is None or dist.is_main
        if dist is not None:
            dist.check_batch(cfg.batch_size)
        self.lr_scale, self.betas = batch_scaling(cfg.batch_size, cfg.batch_lr_scaling)
        progress = progress and self.is_main
        self.data, self.cfg, self.progress = data, cfg, progress
        if on_step is None:
            self.callbacks: list[StepCallback] = []
        elif callable(on_step):
            self.callbacks = [on_step]
        else:
            self.callbacks = list(on_step)
        self.on_step_every = int(on_step_every)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.extent = scene_extent(data.train_cameras.centers())
        if init is None:
            g, self.init_note = init_gaussians(data, cfg, self.extent, self.gen)
        else:
            g = init.with_sh_degree(cfg.sh_degree)
            self.init_note = f"{len(g):,} given Gaussians"
        if len(g) > cfg.max_gaussians:
            raise SpatialvidError(f"initial Gaussians ({len(g):,}) exceed max_gaussians={cfg.max_gaussians:,} "
                                  "(raise --max-gaussians)")
        # everything the step loop touches lives on cfg.device (the init above is computed on the CPU, so a
        # run starts from the same Gaussians on every device)
        self.device = resolve_device(cfg.device, cfg.backend)
        dev = self.device
        self.params = {k: torch.nn.Parameter(getattr(g, k).detach().float().to(dev).clone()) for k in PARAM_NAMES}
        self.optimizers = make_optimizers(self.params, self._base_lrs(), self.betas)
        self.strategy = self._make_strategy()
        self.strategy_state = self.strategy.initialize_state(self.params)
        refine = cfg.pose_refine == "on" or (cfg.pose_refine == "auto" and not data.known_poses)
        ntrain = len(data.train_idx)
        self.pose = PoseRefiner(ntrain).to(dev) if refine else None
        self.pose_opt = torch.optim.Adam(self.pose.parameters(), lr=cfg.lr_pose) if refine else None
        cams = data.cameras
        self.viewmats = cams.viewmats().to(dev)
        self.Ks = cams.Ks().to(dev)
        self._images: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # device copies of data.images
        for i in range(len(data.images)):
            self.image(i)
        self.bg = (torch.ones(3) if cfg.background == "white" else torch.zeros(3)).to(dev)
        self.step = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.eval_history: list[dict[str, Any]] = []
        self._nbrs: dict[int, list[int]] = {}
        if dist is not None:  # same config, cameras, images and initial Gaussians on every rank
            from spatialvid.train.distributed import input_digests

            dist.check_same_inputs(input_digests(data, cfg, self.params))

    # ---- helpers ----------------------------------------------------------------------------------
    def _make_strategy(self):
        st = make_strategy(self.cfg, self.extent, verbose=self.progress)
        if self.dist is not None:
            st.reduce_stats = self.dist.reduce_stats
        return st

    def _base_lrs(self) -> dict[str, float]:
        """Gaussian learning rates (x sqrt(batch_size) with the ``sqrt`` batch rule)."""
        c, k = self.cfg, self.lr_scale
        lrs = {"means": c.lr_means * self.extent, "log_scales": c.lr_scales, "quats": c.lr_quats,
               "opacity_logits": c.lr_opacity, "sh0": c.lr_sh0, "shN": c.lr_sh0 / c.lr_shN_div}
        return lrs if k == 1.0 else {n: v * k for n, v in lrs.items()}

    def image(self, i: int) -> torch.Tensor:
        """``data.images[i]`` on the trainer's device (uploaded once; a replaced image is uploaded again)."""
        im = self.data.images[i]
        if im.device == self.device:
            return im
        hit = self._images.get(i)
        if hit is None or hit[0] is not im:
            hit = self._images[i] = (im, im.to(self.device))
        return hit[1]

    def lr_means(self, step: int) -> float:
        c = self.cfg
        lr = exp_lr(step, c.steps, c.lr_means * self.extent, c.lr_means_final * self.extent)
        return lr if self.lr_scale == 1.0 else lr * self.lr_scale

    def sh_degree_at(self, step: int) -> int:
        if self.cfg.sh_degree_interval <= 0:
            return self.cfg.sh_degree
        return min(self.cfg.sh_degree, step // self.cfg.sh_degree_interval)

    def camera_batch(self, step: int) -> list[int]:
        """Indices (into ``data.train_idx``) of the ``batch_size`` training cameras of ``step``: items
        step*B .. step*B+B-1 of a stream of permutations of the training images (a fresh one per epoch, derived
        from (seed, epoch)), so a resumed run, and every rank, sees the same cameras."""
        n, b = len(self.data.train_idx), self.cfg.batch_size
        orders: dict[int, torch.Tensor] = {}
        out = []
        for k in range(step * b, step * b + b):
            if k // n not in orders:
                orders[k // n] = _camera_order(self.cfg.seed, k // n, n)
            out.append(int(orders[k // n][k % n]))
        return out

    def camera_at(self, step: int) -> int:
        """Index (into ``data.train_idx``) of the (first) training camera used at ``step``."""
        return self.camera_batch(step)[0]

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def gaussians(self, step_id: int = 0, copy: bool = True) -> Gaussians:
        """The current Gaussians (detached copies; ``copy=False``: detached views sharing the parameters'
        storage), tagged CAPTURED with history step ``step_id``."""
        n = self.num_gaussians
        return Gaussians(**{k: (self.params[k].detach().clone() if copy else self.params[k].detach())
                            for k in PARAM_NAMES},
                         origin=torch.full((n,), CAPTURED, dtype=torch.uint8, device=self.device),
                         step=torch.full((n,), step_id, dtype=torch.int32, device=self.device))

    def _posed(self, cam_idx: int, train_pos: int | None):
        """(means, quats, viewmat) to render camera ``cam_idx`` with: the learned pose correction of training
        position ``train_pos`` applied to the Gaussians (when pose refinement is on and it is given)."""
        means, quats = self.params["means"], self.params["quats"]
        vm = self.viewmats[cam_idx]
        if self.pose is not None and train_pos is not None:
            means, quats = self.pose.apply(train_pos, means, quats, vm)
        return means, quats, vm

    def render(self, cam_idx: int, sh_degree: int | None = None, train_pos: int | None = None):
        """Render camera ``cam_idx`` (index into ``data.cameras``); with ``train_pos`` (its position in the
        training list) the learned pose correction is applied."""
        p = self.params
        means, quats, vm = self._posed(cam_idx, train_pos)
        deg = self.cfg.sh_degree if sh_degree is None else sh_degree
        # only the active bands enter the graph (no gradient work, no Adam step for unused ones)
        k = (deg + 1) ** 2 - 1
        sh = torch.cat([p["sh0"][:, None, :], p["shN"][:, :k]], 1) if k else p["sh0"][:, None, :]
        img = self.image(cam_idx)
        out = rasterize(means, quats, torch.exp(p["log_scales"]), torch.sigmoid(p["opacity_logits"]), sh,
                        vm, self.Ks[cam_idx], img.shape[1], img.shape[0], sh_degree=deg,
                        background=self.bg, antialiased=self.cfg.antialiased, backend=self.cfg.backend)
        out.width, out.height = img.shape[1], img.shape[0]
        return out

    def _normal_loss(self, out, cam_idx: int, train_pos: int) -> torch.Tensor:
        """Depth-normal consistency of render ``out`` of camera ``cam_idx``: the Gaussians' normals (shortest
        axis, camera space, facing the camera) rendered as colours against the normals of ``out.depth``."""
        p = self.params
        means, quats, vm = self._posed(cam_idx, train_pos)
        scales = torch.exp(p["log_scales"])
        R = quat_to_rotmat(quats)
        n = torch.gather(R, 2, scales.detach().argmin(1)[:, None, None].expand(-1, 3, 1))[..., 0]
        nc = n @ vm[:3, :3].T
        mc = means @ vm[:3, :3].T + vm[:3, 3]
        nc = nc * torch.where((nc * mc).sum(-1, keepdim=True) > 0, -1.0, 1.0)
        nr = rasterize(means, quats, scales, torch.sigmoid(p["opacity_logits"]), nc, vm, self.Ks[cam_idx],
                       out.width, out.height, background=torch.zeros(3, device=means.device),
                       antialiased=self.cfg.antialiased, backend=self.cfg.backend)
        return normal_consistency_loss(nr.rgb, out.depth, out.alpha, self.Ks[cam_idx])

    def _neighbours(self, cam: int) -> list[int]:
        """Up to 4 training cameras that look the same way as ``cam`` (optical axes < 40 deg apart) from a
        baseline of 2-40 % of the scene extent, widest first (for the multi-view term)."""
        if cam not in self._nbrs:
            c2w = self.data.cameras.c2w().double()
            C, Z = c2w[:, :3, 3], c2w[:, :3, 2]
            cand = torch.tensor(self.data.train_idx)
            ang = torch.rad2deg(torch.acos((Z[cand] @ Z[cam]).clamp(-1, 1)))
            b = (C[cand] - C[cam]).norm(dim=1)
            ok = (ang < 40) & (b > 0.02 * self.extent) & (cand != cam)
            idx = cand[ok]
            self._nbrs[cam] = idx[torch.argsort(-b[ok].clamp(max=0.4 * self.extent))[:4]].tolist()
        return self._nbrs[cam]

    def _multiview_loss(self, out, cam: int, step: int):
        """:func:`multiview_ncc_loss` of render ``out`` of camera ``cam`` against one of its neighbours (they
        take turns by step)."""
        nb = self._neighbours(cam)
        if not nb:
            return 0.0
        j = nb[step % len(nb)]
        return multiview_ncc_loss(out.depth, out.alpha, self.Ks[cam], self.viewmats[cam], self.image(cam),
                                  self.Ks[j], self.viewmats[j], self.image(j))

    def _sparse_depth_loss(self, out, cam: int) -> torch.Tensor | float:
        """Mean relative depth error ``|depth - z| / z`` at the SfM points camera ``cam`` observed (where the
        render is solid: alpha > 0.5); 0 when it has none."""
        obs = self.data.sparse_depth[cam]
        if obs is None:
            return 0.0
        obs = obs.to(out.depth.device)
        H, W = out.depth.shape
        u = obs[:, 0].long().clamp(0, W - 1)
        v = obs[:, 1].long().clamp(0, H - 1)
        d, a = out.depth[v, u], out.alpha[v, u].detach()
        ok = a > 0.5
        if not ok.any():
            return 0.0
        return ((d[ok] - obs[ok, 2]).abs() / obs[ok, 2]).mean()

    def refined_cameras(self):
        """All cameras at the training resolution, training poses corrected by the pose refinement."""
        cams = self.data.cameras.clone()
        if self.pose is not None:
            idx = self.data.train_idx
            vms = self.pose.refined_viewmats(self.viewmats[idx]).cpu()
            cams.R[idx] = vms[:, :3, :3]
            cams.t[idx] = vms[:, :3, 3]
        return cams

    # ---- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {k: v.clone() for k, v in self.strategy_state.items()},
            "pose": None if self.pose is None else self.pose.state_dict(),
            "pose_opt": None if self.pose_opt is None else self.pose_opt.state_dict(),
            "rng": rng_state_dict(self.gen),
            "train_seconds": self.train_seconds,
            "history": list(self.history),
            "eval_history": list(self.eval_history),
            "extent": self.extent,
            "num_cameras": len(self.data.cameras),
            "camera_names": list(self.data.cameras.names),
            "world_size": self.world_size,
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if st.get("camera_names") != list(self.data.cameras.names):
            raise SpatialvidError("checkpoint was made from different images (camera names differ); "
                                  "resume with the same input, or start again with --overwrite")
        ranks = int(st.get("world_size", 1))
        if ranks != self.world_size:
            raise SpatialvidError(f"checkpoint was written by a run on {ranks} rank(s) but this run has "
                                  f"{self.world_size}; resume with the same number of ranks "
                                  f"({'torchrun --nproc_per_node ' + str(ranks) + ' ...' if ranks > 1 else 'no torchrun'})")
        for key, old in (("sh_degree", None), ("strategy", None), ("seed", None), ("batch_size", 1)):
            if st["config"].get(key, old) != getattr(self.cfg, key):
                raise SpatialvidError(f"checkpoint has {key}={st['config'].get(key, old)!r} but this run has "
                                      f"{getattr(self.cfg, key)!r}; resume with the same settings")
        self.step = int(st["step"])
        self.extent = float(st["extent"])
        dev = self.device  # checkpoints load on the CPU (map_location) and move to this run's device
        self.params = {k: torch.nn.Parameter(v.to(dev).clone()) for k, v in st["params"].items()}
        self.optimizers = make_optimizers(self.params, self._base_lrs(), self.betas)
        for k, o in self.optimizers.items():
            o.load_state_dict(st["optimizers"][k])  # torch moves Adam's moments to the parameter's device
        self.strategy = self._make_strategy()
        self.strategy_state = {k: v.to(dev).clone() for k, v in st["strategy_state"].items()}
        if (st["pose"] is None) != (self.pose is None):
            raise SpatialvidError("checkpoint and this run disagree on pose refinement (--pose-refine)")
        if self.pose is not None:
            self.pose.load_state_dict(st["pose"])
            self.pose_opt.load_state_dict(st["pose_opt"])
        set_rng_state_dict(st["rng"], self.gen)
        self.train_seconds = float(st["train_seconds"])
        self.history = list(st["history"])
        self.eval_history = list(st.get("eval_history", []))

    def save_checkpoint(self) -> Path | None:
        """Write ``out_dir/checkpoints/last.pt`` (rank 0 only; with ranks, all first check they agree)."""
        if self.dist is not None:
            from spatialvid.train.distributed import tensor_digest

            self.dist.check_in_sync(self.step, tensor_digest(*self.params.values(), torch.get_rng_state()))
        if self.out_dir is None or not self.is_main:
            return None
        path = save_checkpoint(checkpoint_path(self.out_dir), self.state_dict())
        fault_point("train:after-checkpoint")
        return path

    def resume(self) -> int:
        """Load ``out_dir/checkpoints/last.pt`` (read by rank 0, sent to the others); returns the step it
        continues from."""
        if self.out_dir is None:
            raise SpatialvidError("resume needs an output folder")
        path = checkpoint_path(self.out_dir)
        self.load_state_dict(load_checkpoint(path) if self.dist is None else
                             self.dist.on_main(lambda: load_checkpoint(path)))
        return self.step

    # ---- the loop ---------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, Any]:
        """One optimisation step at ``step`` (0-based) on the cameras of :meth:`camera_batch` (this rank's
        share of them). Returns the step's stats (loss, l1, psnr: batch means over all ranks...)."""
        cfg = self.cfg
        batch = self.camera_batch(step)
        b = len(batch)
        mine = list(enumerate(batch)) if self.dist is None else self.dist.share(list(enumerate(batch)))
        lr_m = self.lr_means(step)
        set_lr(self.optimizers["means"], lr_m)
        use_pose = self.pose is not None and step >= cfg.pose_refine_start
        deg = self.sh_degree_at(step)
        outs, finite = [], True
        loss_sum = l1_sum = mse_sum = 0.0
        for j, pos in mine:
            cam = self.data.train_idx[pos]
            out = self.render(cam, deg, train_pos=pos if self.pose is not None else None)
            gt = self.image(cam)
            loss, l1 = photometric_loss(out.rgb, gt, cfg.ssim_lambda)
            if cfg.normal_weight > 0 and step >= cfg.normal_start:
                loss = loss + cfg.normal_weight * self._normal_loss(out, cam, pos)
            if cfg.multiview_weight > 0 and step >= cfg.normal_start:
                loss = loss + cfg.multiview_weight * self._multiview_loss(out, cam, step)
            if cfg.depth_sparse_weight > 0 and self.data.sparse_depth is not None:
                loss = loss + cfg.depth_sparse_weight * self._sparse_depth_loss(out, cam)
            if b > 1:  # the batch mean: each camera's share
                loss, l1 = loss / b, l1 / b
            if j == 0:  # the regulariser once per step (on rank 0)
                reg = self.strategy.regularization(self.params)
                if torch.is_tensor(reg):
                    loss = loss + reg
            if not torch.isfinite(loss):
                finite = False
                if self.dist is None:
                    return {"step": step, "loss": float("nan"), "finite": False}
                break  # the other ranks learn it from the all-reduce below
            self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, out)
            loss.backward()
            with torch.no_grad():
                mse_sum += torch.mean((out.rgb.detach() - gt) ** 2).item()
            loss_sum += float(loss.detach())
            l1_sum += float(l1)
            outs.append(out)
        if self.dist is not None:
            finite = self._all_reduce_grads(deg, [loss_sum, l1_sum, mse_sum, 0.0 if finite else 1.0])
            loss_sum, l1_sum, mse_sum = self._reduced[:3]
            if not finite:
                self._zero_grads()
                return {"step": step, "loss": float("nan"), "finite": False}
        for o in self.optimizers.values():
            o.step()
            o.zero_grad(set_to_none=True)
        if self.pose_opt is not None:
            if use_pose:
                self.pose_opt.step()
            self.pose_opt.zero_grad(set_to_none=True)
        info = self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step,
                                                outs[0] if len(outs) == 1 else outs, lr_means=lr_m)
        mse = mse_sum / b if b > 1 else mse_sum
        return {"step": step, "loss": loss_sum, "l1": l1_sum,
                "psnr": 10 * math.log10(1 / max(mse, 1e-12)), "finite": True, **info}

    def _all_reduce_grads(self, deg: int, scalars: list[float]) -> bool:
        """Sum the gradients (Gaussians: only the active SH bands; pose corrections) and ``scalars`` over the
        ranks; the summed scalars go to ``self._reduced``. False when some rank's loss was not finite."""
        params = [self.params[k] for k in PARAM_NAMES]
        active: list[int | None] = [None] * len(params)
        active[PARAM_NAMES.index("shN")] = (deg + 1) ** 2 - 1
        if self.pose is not None:
            params.append(self.pose.deltas)
            active.append(None)
        self._reduced = self.dist.sum_gradients(params, scalars, active)
        return self._reduced[3] == 0 and all(math.isfinite(x) for x in self._reduced[:3])

    def _zero_grads(self) -> None:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        if self.pose_opt is not None:
            self.pose_opt.zero_grad(set_to_none=True)

    def train(self, until: int | None = None) -> TrainResult:
        """Train from the current step to ``until`` (default ``cfg.steps``)."""
        cfg = self.cfg
        until = cfg.steps if until is None else min(until, cfg.steps)
        if self.num_gaussians == 0:
            raise SpatialvidError("nothing to train: no initial Gaussians")
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        ema_loss = ema_psnr = None
        t_start = time.perf_counter()
        t0 = self.train_seconds
        cb_seconds = 0.0  # time spent in step callbacks (e.g. paused by a UI): not training time

        def elapsed() -> float:
            return t0 + time.perf_counter() - t_start - cb_seconds

        try:
            while self.step < until:
                step = self.step
                st = self.train_step(step)
                if not st["finite"]:
                    self.train_seconds = elapsed()
                    self._diverged(step)
                self.step = step + 1
                ema_loss = st["loss"] if ema_loss is None else 0.9 * ema_loss + 0.1 * st["loss"]
                ema_psnr = st["psnr"] if ema_psnr is None else 0.9 * ema_psnr + 0.1 * st["psnr"]
                if step % max(cfg.log_every, 1) == 0 or self.step == until:
                    self.history.append({"step": self.step, "loss": ema_loss, "psnr": ema_psnr,
                                         "num_gaussians": self.num_gaussians,
                                         "time": elapsed()})
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or self.step == until:
                        bar.set_postfix(loss=f"{ema_loss:.4f}", psnr=f"{ema_psnr:.2f}", n=f"{self.num_gaussians:,}",
                                        refresh=False)
                if (cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps and self.data.test_idx
                        and self.is_main):
                    m = self.evaluate(save_images=False)
                    self.eval_history.append({"step": self.step, "psnr": m["psnr"], "ssim": m["ssim"]})
                    if bar is not None:
                        bar.write(f"step {self.step}: held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.train_seconds = elapsed()
                    self.save_checkpoint()
                if self.callbacks and (self.step % self.on_step_every == 0 or self.step == until):
                    t_cb = time.perf_counter()
                    event = StepEvent(self.step, cfg.steps, ema_loss, ema_psnr, st["loss"], st["psnr"],
                                      self.num_gaussians, elapsed(), self)
                    try:
                        for fn in self.callbacks:
                            fn(event)
                    finally:
                        cb_seconds += time.perf_counter() - t_cb
        finally:
            if bar is not None:
                bar.close()
        self.train_seconds = elapsed()
        return TrainResult(self.step, self.num_gaussians, self.train_seconds, self.history)

    def _diverged(self, step: int) -> None:
        if not self.is_main:
            raise TrainingDiverged(f"training diverged: the loss became NaN/inf at step {step} (rank "
                                   f"{self.dist.rank}; rank 0 says which checkpoint is kept)")
        ck = checkpoint_path(self.out_dir) if self.out_dir is not None else None
        if ck is not None and ck.exists():
            try:
                good = int(load_checkpoint(ck)["step"])
                kept = f"the last good checkpoint (step {good}) is kept at {ck}; lower the learning rates and --resume"
            except SpatialvidError:
                kept = f"checkpoint at {ck} left as it was"
        else:
            kept = "no checkpoint had been written yet (lower --checkpoint-every to keep more)"
        raise TrainingDiverged(f"training diverged: the loss became NaN/inf at step {step}; {kept}")

    # ---- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, indices: list[int] | None = None, save_images: bool | None = None) -> dict[str, Any]:
        """Held-out metrics (PSNR, SSIM, LPIPS when local weights exist): see :mod:`spatialvid.train.eval`."""
        from spatialvid.train.eval import evaluate_trainer

        return evaluate_trainer(self, indices, save_images=self.cfg.save_eval_images if save_images is None
                                else save_images)
