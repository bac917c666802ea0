"""Training configuration: a dataclass, YAML presets (``configs/{fast,default,quality}.yaml``) and CLI overrides.

With ``batch_size`` B > 1 every step averages the loss over B cameras and (``batch_lr_scaling: sqrt``, the rule
of Grendel, Zhao et al. 2024, "On Scaling Up 3D Gaussian Splatting Training") multiplies every Gaussian
learning rate by sqrt(B) and raises Adam's betas to the power B; step-counted fields (``steps``, ``densify_*``,
``sh_degree_interval``, ``checkpoint_every``...) still count optimisation steps (B images each).

Resolution: every value comes from the dataclass defaults, then the preset file, then ``--field value`` on the
command line (later wins). Learning rates follow the 3D Gaussian Splatting paper; ``lr_means`` and
``lr_means_final`` are multiplied by the scene extent (the radius of the camera centres, in world units).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spatialvid.errors import FormatError, SpatialvidError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
PRESETS = ("fast", "default", "quality", "mesh")


@dataclass
class TrainConfig:
    """Every knob of a training run (units in brackets)."""

    # ---- schedule ----
    steps: int = 7000                  # optimisation steps (batch_size images per step)
    seed: int = 0
    # ---- batching (and data-parallel ranks under torchrun: spatialvid/train/distributed.py) ----
    batch_size: int = 1                # training cameras per step, in total over all ranks (>= the rank count)
    batch_lr_scaling: str = "sqrt"     # batch_size > 1: sqrt (Grendel: lrs x sqrt(batch), Adam betas ^ batch) | none
    # ---- data ----
    downscale: float = 1.0             # divide the input images' size by this
    resolution: int = 0                # if > 0: longest image side in px (overrides downscale)
    holdout_every: int = 8             # every Nth image (i % N == 0) is held out for evaluation; 0 = none
    background: str = "black"          # black | white (behind the Gaussians, and behind RGBA images)
    # ---- init ----
    init: str = "auto"                 # auto (sparse points if any, else random) | points | random
    init_opacity: float = 0.1
    init_random_points: int = 20000
    init_max_points: int = 300000      # subsample larger point clouds
    # ---- model ----
    sh_degree: int = 3
    sh_degree_interval: int = 1000     # raise the active SH degree every N steps
    antialiased: bool = False
    max_gaussians: int = 1_000_000     # hard cap (densification stops, MCMC budget)
    # ---- optimiser (3DGS paper) ----
    lr_means: float = 1.6e-4           # x scene extent, decays exponentially to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_sh0: float = 2.5e-3
    lr_shN_div: float = 20.0           # lr_shN = lr_sh0 / lr_shN_div
    lr_opacity: float = 5e-2
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    ssim_lambda: float = 0.2           # loss = (1-l) L1 + l (1 - SSIM)
    depth_sparse_weight: float = 0.0   # + w x mean |depth - z| / z at the SfM points each image observed (0 = off)
    normal_weight: float = 0.0         # + w x depth-normal consistency (losses.normal_consistency_loss; 0 = off)
    normal_start: int = 1000           # step from which the normal and multi-view terms apply
    multiview_weight: float = 0.0      # + w x losses.multiview_ncc_loss against a neighbour view (0 = off)
    # ---- densification ----
    strategy: str = "default"          # default (3DGS adaptive density control) | mcmc
    densify_start: int = 500
    densify_stop: int = 15000
    densify_every: int = 100
    grad_threshold: float = 2e-4       # mean NDC-space gradient norm that triggers clone/split
    grow_scale3d: float = 0.01         # clone if max scale <= this x extent, else split
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1         # prune if max scale > this x extent (after the first opacity reset)
    prune_screen: float = 0.15         # prune if 2D radius > this x max(W,H) (after the first opacity reset)
    opacity_reset_every: int = 3000    # 0 = never
    # ---- MCMC strategy ----
    mcmc_cap: int = 300000             # Gaussian budget (also capped by max_gaussians)
    mcmc_grow_rate: float = 0.05
    mcmc_min_opacity: float = 0.005
    mcmc_noise_lr: float = 5e5
    mcmc_opacity_reg: float = 0.01
    mcmc_scale_reg: float = 0.01
    # ---- pose refinement ----
    pose_refine: str = "auto"          # auto (on for video input, off for known poses) | on | off
    lr_pose: float = 1e-4
    pose_refine_start: int = 500
    # ---- rendering / io ----
    backend: str = "auto"              # rasterizer backend: auto | cpu | cuda | torch
    device: str = "auto"               # where parameters, images and optimiser state live: auto | cpu | cuda[:N]
    eval_every: int = 0                # steps between held-out evaluations during training (0 = end only)
    checkpoint_every: int = 1000       # steps between checkpoints (0 = only at the end)
    log_every: int = 50
    save_eval_images: bool = True      # write side-by-side held-out renders to SCENE_DIR/eval/

    def validate(self) -> None:
        if self.steps < 1:
            raise SpatialvidError(f"steps must be >= 1 (got {self.steps})")
        for name in ("depth_sparse_weight", "normal_weight", "multiview_weight"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise SpatialvidError(f"{name} must be a number >= 0 (got {v})")
        if self.batch_size < 1:
            raise SpatialvidError(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.batch_lr_scaling not in ("sqrt", "none"):
            raise SpatialvidError(f"batch_lr_scaling must be 'sqrt' or 'none' (got {self.batch_lr_scaling!r})")
        if self.downscale <= 0:
            raise SpatialvidError(f"downscale must be > 0 (got {self.downscale})")
        if self.resolution < 0:
            raise SpatialvidError(f"resolution must be >= 0 (got {self.resolution})")
        if not 0 <= self.sh_degree <= 3:
            raise SpatialvidError(f"sh_degree must be 0..3 (got {self.sh_degree})")
        if self.strategy not in ("default", "mcmc"):
            raise SpatialvidError(f"strategy must be 'default' or 'mcmc' (got {self.strategy!r})")
        if self.init not in ("auto", "points", "random"):
            raise SpatialvidError(f"init must be auto, points or random (got {self.init!r})")
        if self.pose_refine not in ("auto", "on", "off"):
            raise SpatialvidError(f"pose_refine must be auto, on or off (got {self.pose_refine!r})")
        if self.background not in ("black", "white"):
            raise SpatialvidError(f"background must be black or white (got {self.background!r})")
        if self.max_gaussians < 1:
            raise SpatialvidError("max_gaussians must be >= 1")
        if not 0 <= self.ssim_lambda <= 1:
            raise SpatialvidError("ssim_lambda must be in 0..1")
        d = str(self.device).lower()
        if d not in ("auto", "cpu", "cuda") and not d.startswith("cuda:"):
            raise SpatialvidError(f"device must be auto, cpu or cuda[:N] (got {self.device!r})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, typ: type, value: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise SpatialvidError(f"config field {name}: expected true/false, got {value!r}")
    try:
        if typ is int and isinstance(value, str):
            return int(float(value)) if ("e" in value.lower() or "." in value) else int(value)
        if typ is int and isinstance(value, float):
            if value != int(value):
                raise ValueError
            return int(value)
        return typ(value)
    except (TypeError, ValueError):
        raise SpatialvidError(f"config field {name}: expected {typ.__name__}, got {value!r}") from None


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def field_types() -> dict[str, type]:
    return {f.name: _TYPES[f.type] if isinstance(f.type, str) else f.type for f in fields(TrainConfig)}


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], where: str = "overrides") -> TrainConfig:
    """Return a copy of ``cfg`` with ``overrides`` applied (unknown keys are an error naming ``where``)."""
    types = field_types()
    unknown = sorted(set(overrides) - set(types))
    if unknown:
        raise SpatialvidError(f"{where}: unknown config field(s) {', '.join(unknown)}; known: {', '.join(types)}")
    vals = {k: _coerce(k, types[k], v) for k, v in overrides.items() if v is not None}
    return dataclasses.replace(cfg, **vals)


def load_config(preset: str | Path | None = "default", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- preset (a name in configs/ or a YAML path) <- overrides; validated."""
    cfg = TrainConfig()
    if preset:
        path = Path(preset)
        if not path.suffix:
            path = CONFIG_DIR / f"{preset}.yaml"
            if not path.exists():
                raise SpatialvidError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)} or a YAML file")
        if not path.exists():
            raise SpatialvidError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise FormatError(path, f"not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise FormatError(path, "expected a mapping of config fields")
        cfg = apply_overrides(cfg, data, where=str(path))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    cfg.validate()
    return cfg


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--<field>`` (dashes or underscores) for every TrainConfig field, default None (= keep preset)."""
    group = parser.add_argument_group("training config fields (override the preset; defaults shown are built-in)")
    defaults = TrainConfig()
    for name, typ in field_types().items():
        if name in ("steps", "backend", "device"):  # added explicitly by the command
            continue
        flag = "--" + name.replace("_", "-")
        metavar = "BOOL" if typ is bool else typ.__name__.upper()
        group.add_argument(flag, "--" + name, dest=f"cfg_{name}", default=None, metavar=metavar,
                           help=f"(default {getattr(defaults, name)!r})")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for name in field_types():
        v = getattr(args, f"cfg_{name}", None)
        if v is None and name in ("steps", "backend", "device"):
            v = getattr(args, name, None)
        if v is not None:
            out[name] = v
    return out
