"""Densification strategies. The trainer only calls the hooks; each strategy owns its state (a dict of
tensors, checkpointed as is).

Hooks (called every step):

* ``initialize_state(params) -> state``
* ``step_pre_backward(params, optimizers, state, step, out)``: before ``loss.backward()``.
* ``step_post_backward(params, optimizers, state, step, out, lr_means) -> dict``: after ``backward()``
  and ``optimizer.step()``; may add, remove or move Gaussians (keeping Adam moments aligned).
* ``regularization(params) -> tensor`` extra loss terms (0 by default).

``out`` is the rasterizer output (``.means2d`` with ``retain_grad``, ``.radii`` in px, ``.width``/``.height``
taken from the trainer as attributes of ``out`` when the backend does not set them); with a batch of cameras
``step_post_backward`` gets the list of this process's outputs.

Data-parallel training (:mod:`spatialvid.train.distributed`) sets ``strategy.reduce_stats``: a callable
``(stats, ops) -> stats`` that combines per-step statistics over ranks (``ops[key]`` is ``"sum"`` or ``"max"``)
before they enter the state, so every rank takes the same decisions.
"""

from __future__ import annotations

import math

import torch

from spatialvid.gaussians import quat_to_rotmat
from spatialvid.train.optim import cat_rows, keep_rows, reset_rows_state


class Strategy:
    """Base: no densification."""

    def __init__(self, scene_extent: float, max_gaussians: int, verbose: bool = True):
        self.scene_extent = float(scene_extent)
        self.max_gaussians = int(max_gaussians)
        self.verbose = verbose
        self.messages: list[str] = []
        self.reduce_stats = None  # set by data-parallel training: combines per-step statistics over ranks

    def _say(self, msg: str) -> None:
        if msg not in self.messages:
            self.messages.append(msg)
            if self.verbose:
                from tqdm import tqdm

                tqdm.write(msg)

    def initialize_state(self, params) -> dict:
        return {}

    def step_pre_backward(self, params, optimizers, state, step, out) -> None:
        pass

    def step_post_backward(self, params, optimizers, state, step, out, lr_means: float = 0.0) -> dict:
        return {}

    def regularization(self, params) -> torch.Tensor | float:
        return 0.0


def _image_size(out) -> tuple[int, int]:
    return int(out.width), int(out.height)


def _outputs(out) -> list:
    """One rasterizer output or a sequence of them -> a list."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


class DefaultStrategy(Strategy):
    """Adaptive density control of 3D Gaussian Splatting (Kerbl et al. 2023).

    Every ``every`` steps in [start, stop): Gaussians whose mean screen-space (NDC) position gradient exceeds
    ``grad_threshold`` are cloned (if small: max scale <= grow_scale3d * extent) or split in two (if large;
    children sampled from the parent, scales / 1.6); then Gaussians with opacity < prune_opacity are pruned,
    and (after the first opacity reset) those larger than prune_scale3d * extent in the world or
    prune_screen * image size on screen. Every ``reset_every`` steps all opacities are clamped to
    2 * prune_opacity. Growth never exceeds ``max_gaussians``.

    With a batch of B cameras per step (the loss averaged over them) each camera's screen-space gradient is
    multiplied by ``grad_scale`` = B, so that the statistics (and ``grad_threshold``) mean what they mean with
    one camera per step; each camera counts once in ``count`` (as in gsplat's batched training).
    """

    STAT_OPS = {"grad2d": "sum", "count": "sum", "max_radii": "max"}

    def __init__(self, scene_extent: float, max_gaussians: int = 1_000_000, start: int = 500, stop: int = 15000,
                 every: int = 100, grad_threshold: float = 2e-4, grow_scale3d: float = 0.01,
                 prune_opacity: float = 0.005, prune_scale3d: float = 0.1, prune_screen: float = 0.15,
                 reset_every: int = 3000, grad_scale: float = 1.0, verbose: bool = True):
        super().__init__(scene_extent, max_gaussians, verbose)
        self.grad_scale = float(grad_scale)
        self.start, self.stop, self.every = start, stop, every
        self.grad_threshold, self.grow_scale3d = grad_threshold, grow_scale3d
        self.prune_opacity, self.prune_scale3d, self.prune_screen = prune_opacity, prune_scale3d, prune_screen
        self.reset_every = reset_every

    def initialize_state(self, params) -> dict:
        n, dev = params["means"].shape[0], params["means"].device
        return {"grad2d": torch.zeros(n, device=dev), "count": torch.zeros(n, device=dev),
                "max_radii": torch.zeros(n, device=dev)}

    def step_pre_backward(self, params, optimizers, state, step, out) -> None:
        for o in _outputs(out):
            if step < self.stop and o.means2d.requires_grad:
                o.means2d.retain_grad()

    def batch_stats(self, outs, n: int, device=None) -> dict[str, torch.Tensor]:
        """This step's statistics over the rendered cameras ``outs``, [n] each: the sum of the screen-space
        gradient norms (NDC units, x ``grad_scale``) and the count of the cameras where each Gaussian is
        visible, and the largest screen radius (fraction of max(W, H))."""
        grad2d, count, max_radii = (torch.zeros(n, device=device) for _ in range(3))
        for out in outs:
            g = out.means2d.grad
            if g is None:
                continue
            w, h = _image_size(out)
            g = g.detach().reshape(-1, 2)
            gn = torch.stack([g[:, 0] * (w / 2), g[:, 1] * (h / 2)], -1).norm(dim=-1)
            if self.grad_scale != 1.0:
                gn = gn * self.grad_scale
            vis = out.radii.reshape(-1) > 0
            grad2d[vis] += gn[vis]
            count[vis] += 1
            r = out.radii.reshape(-1)[vis].float() / max(w, h)
            max_radii[vis] = torch.maximum(max_radii[vis], r)
        return {"grad2d": grad2d, "count": count, "max_radii": max_radii}

    def add_stats(self, state, stats) -> None:
        state["grad2d"] += stats["grad2d"]
        state["count"] += stats["count"]
        state["max_radii"] = torch.maximum(state["max_radii"], stats["max_radii"])

    def accumulate(self, state, out) -> None:
        """Add the screen-space gradient norms (NDC units) of the Gaussians visible in ``out`` (one output or
        a list), combined over ranks when ``reduce_stats`` is set."""
        stats = self.batch_stats(_outputs(out), state["grad2d"].shape[0], state["grad2d"].device)
        if self.reduce_stats is not None:
            stats = self.reduce_stats(stats, self.STAT_OPS)
        self.add_stats(state, stats)

    def step_post_backward(self, params, optimizers, state, step, out, lr_means: float = 0.0) -> dict:
        info = {}
        if step >= self.stop:
            return info
        self.accumulate(state, out)
        if step > self.start and step % self.every == 0:
            n_clone, n_split = self.grow(params, optimizers, state, step)
            n_prune = self.prune(params, optimizers, state, step)
            for k in state:
                state[k] = torch.zeros(params["means"].shape[0], device=params["means"].device)
            info.update(cloned=n_clone, split=n_split, pruned=n_prune)
        if self.reset_every and step > 0 and step % self.reset_every == 0:
            self.reset_opacity(params, optimizers)
            info["opacity_reset"] = True
        return info

    # ---- operations (public so tests can drive them on a hand-made state) ----------------------
    def grow(self, params, optimizers, state, step: int) -> tuple[int, int]:
        avg = state["grad2d"] / state["count"].clamp_min(1)
        high = avg > self.grad_threshold
        small = torch.exp(params["log_scales"].detach()).amax(-1) <= self.grow_scale3d * self.scene_extent
        clone, split = high & small, high & ~small
        n = params["means"].shape[0]
        room = self.max_gaussians - n
        want = int(clone.sum()) + int(split.sum())  # a split adds one net Gaussian, a clone one
        if want > room:
            self._say(f"densification: reached max_gaussians={self.max_gaussians:,}; growth limited "
                      "(raise --max-gaussians or use --strategy mcmc for a fixed budget)")
            cand = (clone | split).nonzero().reshape(-1)
            keep = cand[torch.argsort(avg[cand], descending=True)[:max(room, 0)]]
            sel = torch.zeros(n, dtype=torch.bool, device=avg.device)
            sel[keep] = True
            clone, split = clone & sel, split & sel
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            self.duplicate(params, optimizers, state, clone)
            split = torch.cat([split, torch.zeros(n_clone, dtype=torch.bool, device=split.device)])
        if n_split:
            self.split(params, optimizers, state, split)
        return n_clone, n_split

    def duplicate(self, params, optimizers, state, mask: torch.Tensor) -> None:
        """Append an exact copy of every Gaussian in ``mask`` (zero Adam moments for the copies)."""
        cat_rows(params, optimizers, {k: v.detach()[mask] for k, v in params.items()})
        for k in state:
            state[k] = torch.cat([state[k], state[k][mask]])

    def split(self, params, optimizers, state, mask: torch.Tensor) -> None:
        """Replace every Gaussian in ``mask`` by two children sampled from it, each with scales / 1.6."""
        p = {k: v.detach() for k, v in params.items()}
        scales = torch.exp(p["log_scales"][mask])
        rot = quat_to_rotmat(p["quats"][mask])
        # drawn on the CPU (the checkpointed generator), so every device splits alike
        samples = torch.randn(2, scales.shape[0], 3).to(scales.device) * scales[None]
        new_means = (torch.einsum("nij,bnj->bni", rot, samples) + p["means"][mask][None]).reshape(-1, 3)
        rows = {}
        for k, v in p.items():
            if k == "means":
                rows[k] = new_means
            elif k == "log_scales":
                rows[k] = (v[mask] - math.log(1.6)).repeat(2, *[1] * (v.dim() - 1))
            else:
                rows[k] = v[mask].repeat(2, *[1] * (v.dim() - 1))
        keep_rows(params, optimizers, ~mask)
        cat_rows(params, optimizers, rows)
        for k in state:
            state[k] = torch.cat([state[k][~mask], state[k][mask].repeat(2)])

    def prune(self, params, optimizers, state, step: int) -> int:
        opac = torch.sigmoid(params["opacity_logits"].detach())
        bad = opac < self.prune_opacity
        if self.reset_every and step > self.reset_every:
            big = torch.exp(params["log_scales"].detach()).amax(-1) > self.prune_scale3d * self.scene_extent
            bad |= big
            if "max_radii" in state:
                bad |= state["max_radii"] > self.prune_screen
        if bad.all():  # never prune to nothing
            bad[torch.argmax(opac)] = False
        n = int(bad.sum())
        if n:
            keep_rows(params, optimizers, ~bad)
            for k in state:
                state[k] = state[k][~bad]
        return n

    def reset_opacity(self, params, optimizers) -> None:
        cap = math.log(2 * self.prune_opacity / (1 - 2 * self.prune_opacity))
        with torch.no_grad():
            params["opacity_logits"].clamp_(max=cap)
        idx = torch.arange(params["opacity_logits"].shape[0], device=params["opacity_logits"].device)
        reset_rows_state({"opacity_logits": optimizers["opacity_logits"]}, idx)


_BINOMS: torch.Tensor | None = None


def _binoms(nmax: int = 51) -> torch.Tensor:
    global _BINOMS
    if _BINOMS is None or _BINOMS.shape[0] < nmax:
        b = torch.zeros(nmax, nmax, dtype=torch.float64)
        for n in range(nmax):
            for k in range(n + 1):
                b[n, k] = math.comb(n, k)
        _BINOMS = b
    return _BINOMS


def compute_relocation(opacities: torch.Tensor, scales: torch.Tensor, ratios: torch.Tensor, nmax: int = 51):
    """3DGS-MCMC (Kheradmand et al. 2024, eq. 9): a Gaussian split into ``ratio`` copies keeps its rendered
    footprint: returns (new opacities [N], new scales [N,3])."""
    ratios = ratios.clamp(1, nmax - 1).long()
    new_op = 1 - (1 - opacities.double()) ** (1.0 / ratios.double())
    dev = opacities.device
    b = _binoms(nmax).to(dev)
    i = torch.arange(1, nmax, dtype=torch.float64, device=dev)  # 1..nmax-1
    k = torch.arange(nmax - 1, dtype=torch.float64, device=dev)  # 0..nmax-2
    # coef[i-1, k] = C(i-1, k) (-1)^k / sqrt(k+1) for k < i
    coef = b[:nmax - 1, :nmax - 1] * ((-1.0) ** k)[None] / torch.sqrt(k + 1)[None]
    coef = coef * (k[None] < i[:, None])
    powers = new_op[:, None] ** (k[None] + 1)  # [N, K]
    per_i = powers @ coef.T  # [N, I]: sum_k coef[i,k] o^(k+1)
    cum = torch.cumsum(per_i, dim=1)
    denom = cum.gather(1, (ratios - 1)[:, None])[:, 0]
    new_scales = (opacities.double() / denom)[:, None] * scales.double()
    return new_op.float(), new_scales.float()


class MCMCStrategy(Strategy):
    """3DGS as MCMC (Kheradmand et al. 2024): a fixed budget of Gaussians.

    Every ``every`` steps in [start, stop): dead Gaussians (opacity <= min_opacity) are relocated onto live
    ones sampled by opacity (keeping their footprint, eq. 9), and the count grows by ``grow_rate`` up to
    ``cap``. Every step, position noise proportional to the covariance and the means learning rate is
    injected into low-opacity Gaussians. Regularisation: opacity_reg * mean opacity + scale_reg * mean scale.
    """

    def __init__(self, scene_extent: float, cap: int = 300000, max_gaussians: int = 1_000_000, start: int = 500,
                 stop: int = 25000, every: int = 100, grow_rate: float = 0.05, min_opacity: float = 0.005,
                 noise_lr: float = 5e5, opacity_reg: float = 0.01, scale_reg: float = 0.01, verbose: bool = True):
        super().__init__(scene_extent, max_gaussians, verbose)
        self.cap = min(int(cap), int(max_gaussians))
        self.start, self.stop, self.every = start, stop, every
        self.grow_rate, self.min_opacity, self.noise_lr = grow_rate, min_opacity, noise_lr
        self.opacity_reg, self.scale_reg = opacity_reg, scale_reg

    def regularization(self, params):
        reg = 0.0
        if self.opacity_reg:
            reg = reg + self.opacity_reg * torch.sigmoid(params["opacity_logits"]).mean()
        if self.scale_reg:
            reg = reg + self.scale_reg * torch.exp(params["log_scales"]).mean()
        return reg

    def step_post_backward(self, params, optimizers, state, step, out, lr_means: float = 0.0) -> dict:
        info = {}
        if self.start < step < self.stop and step % self.every == 0:
            info["relocated"] = self.relocate(params, optimizers)
            info["added"] = self.add(params, optimizers)
        self.inject_noise(params, lr_means)
        return info

    def _sample(self, probs: torch.Tensor, n: int) -> torch.Tensor:
        return torch.multinomial(probs / probs.sum(), n, replacement=True)

    def _set_from(self, params, dst: torch.Tensor, src: torch.Tensor, ratios: torch.Tensor) -> None:
        opac = torch.sigmoid(params["opacity_logits"].detach()[src])
        new_op, new_sc = compute_relocation(opac, torch.exp(params["log_scales"].detach()[src]), ratios)
        new_op = new_op.clamp(self.min_opacity, 1 - 1e-6)
        with torch.no_grad():
            params["opacity_logits"][src] = torch.logit(new_op)
            params["log_scales"][src] = torch.log(new_sc.clamp_min(1e-12))
            for v in params.values():
                v[dst] = v[src]

    def relocate(self, params, optimizers) -> int:
        opac = torch.sigmoid(params["opacity_logits"].detach())
        dead = (opac <= self.min_opacity).nonzero().reshape(-1)
        alive = (opac > self.min_opacity).nonzero().reshape(-1)
        if len(dead) == 0 or len(alive) == 0:
            return 0
        src = alive[self._sample(opac[alive], len(dead))]
        ratios = torch.bincount(src, minlength=len(opac))[src] + 1
        self._set_from(params, dead, src, ratios)
        reset_rows_state(optimizers, torch.cat([src, dead]))
        return int(len(dead))

    def add(self, params, optimizers) -> int:
        n = params["means"].shape[0]
        target = min(self.cap, int(math.ceil((1 + self.grow_rate) * n)))
        n_new = max(0, target - n)
        if n_new == 0:
            if n >= self.cap:
                self._say(f"mcmc: Gaussian budget of {self.cap:,} reached (raise --mcmc-cap / --max-gaussians)")
            return 0
        opac = torch.sigmoid(params["opacity_logits"].detach())
        src = self._sample(opac, n_new)
        ratios = torch.bincount(src, minlength=n)[src] + 1
        new_idx = torch.arange(n, n + n_new, device=src.device)
        cat_rows(params, optimizers, {k: v.detach()[src] for k, v in params.items()})
        self._set_from(params, new_idx, src, ratios)
        reset_rows_state(optimizers, src)
        return n_new

    def inject_noise(self, params, lr_means: float) -> None:
        if not lr_means or not self.noise_lr:
            return
        with torch.no_grad():
            opac = torch.sigmoid(params["opacity_logits"])
            scales = torch.exp(params["log_scales"])
            rot = quat_to_rotmat(params["quats"])
            cov = rot @ torch.diag_embed(scales * scales) @ rot.transpose(1, 2)
            gate = 1.0 / (1.0 + torch.exp(-100.0 * ((1 - opac) - 0.995)))
            noise = torch.randn_like(params["means"]) * gate[:, None] * (self.noise_lr * lr_means)
            params["means"].add_(torch.einsum("nij,nj->ni", cov, noise))


def make_strategy(cfg, scene_extent: float, verbose: bool = True) -> Strategy:
    if cfg.strategy == "mcmc":
        return MCMCStrategy(scene_extent, cap=cfg.mcmc_cap, max_gaussians=cfg.max_gaussians, start=cfg.densify_start,
                            stop=cfg.densify_stop, every=cfg.densify_every, grow_rate=cfg.mcmc_grow_rate,
                            min_opacity=cfg.mcmc_min_opacity, noise_lr=cfg.mcmc_noise_lr,
                            opacity_reg=cfg.mcmc_opacity_reg, scale_reg=cfg.mcmc_scale_reg, verbose=verbose)
    return DefaultStrategy(scene_extent, max_gaussians=cfg.max_gaussians, start=cfg.densify_start,
                           stop=cfg.densify_stop, every=cfg.densify_every, grad_threshold=cfg.grad_threshold,
                           grow_scale3d=cfg.grow_scale3d, prune_opacity=cfg.prune_opacity,
                           prune_scale3d=cfg.prune_scale3d, prune_screen=cfg.prune_screen,
                           reset_every=cfg.opacity_reset_every, grad_scale=getattr(cfg, "batch_size", 1),
                           verbose=verbose)
