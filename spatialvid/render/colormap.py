"""Colour maps as numpy lookups, and depth/coverage visualisation with a fixed, stated range.

* ``turbo`` (Google's Turbo) and ``viridis``: a 256-entry table read once from matplotlib (a project
  dependency), then linearly interpolated in numpy per frame. Without matplotlib, polynomial fits are used
  (viridis within 0.013, turbo within ~0.13 of the tables: approximate, so the table is preferred).
* ``gray``: identity.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from spatialvid.errors import SpatialvidError

_TURBO_R4 = np.array([0.13572138, 4.61539260, -42.66032258, 132.13108234])
_TURBO_G4 = np.array([0.09140261, 2.19418839, 4.84296658, -14.18503333])
_TURBO_B4 = np.array([0.10667330, 12.64194608, -60.58204836, 110.36276771])
_TURBO_R2 = np.array([-152.94239396, 59.28637943])
_TURBO_G2 = np.array([4.27729857, 2.82956604])
_TURBO_B2 = np.array([-89.90310912, 27.34824973])

_VIRIDIS = np.array([
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
])

COLORMAPS = ("turbo", "viridis", "gray")


def _turbo(x: np.ndarray) -> np.ndarray:
    v4 = np.stack([np.ones_like(x), x, x * x, x * x * x], -1)
    v2 = v4[..., 2:4] * v4[..., 2:3]  # x^4, x^5
    r = v4 @ _TURBO_R4 + v2 @ _TURBO_R2
    g = v4 @ _TURBO_G4 + v2 @ _TURBO_G2
    b = v4 @ _TURBO_B4 + v2 @ _TURBO_B2
    return np.stack([r, g, b], -1)


def _viridis(x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.shape + (3,), dtype=np.float64)
    for c in _VIRIDIS[::-1]:  # Horner
        out = out * x[..., None] + c
    return out


@functools.lru_cache(maxsize=8)
def colormap_table(name: str, n: int = 256) -> np.ndarray:
    """[n,3] float64 RGB table of a colour map (matplotlib's if available, else the polynomial fit)."""
    if name not in COLORMAPS:
        raise SpatialvidError(f"unknown colour map {name!r} (choose from {', '.join(COLORMAPS)})")
    x = np.linspace(0.0, 1.0, n)
    if name == "gray":
        return np.repeat(x[:, None], 3, 1)
    try:
        import matplotlib

        return np.asarray(matplotlib.colormaps[name](x))[:, :3].astype(np.float64)
    except Exception:  # matplotlib missing or broken: polynomial fallback
        return np.clip(_turbo(x) if name == "turbo" else _viridis(x), 0.0, 1.0)


def apply_colormap(x: np.ndarray, name: str = "turbo") -> np.ndarray:
    """Map values in [0, 1] (clipped; NaN -> 0) to RGB float32 [..., 3] in [0, 1]."""
    x = np.nan_to_num(np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0), nan=0.0)
    table = colormap_table(name)
    if name in ("turbo", "viridis"):
        pos = x * (len(table) - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, len(table) - 1)
        w = (pos - i0)[..., None]
        rgb = table[i0] * (1 - w) + table[i1] * w
    elif name == "gray":
        rgb = np.repeat(x[..., None], 3, -1)
    else:
        raise SpatialvidError(f"unknown colour map {name!r} (choose from {', '.join(COLORMAPS)})")
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


@dataclass
class ValueRange:
    """A fixed value range mapped to the colour map (fixed for a whole video so colours mean the same)."""

    near: float
    far: float
    colormap: str = "turbo"
    inverse: bool = False  # map 1/value linearly (disparity): more resolution close to the camera

    def normalize(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if self.inverse:
            with np.errstate(divide="ignore"):
                inv = 1.0 / np.maximum(v, 1e-12)
            return (1.0 / self.near - inv) / (1.0 / self.near - 1.0 / self.far)
        return (v - self.near) / max(self.far - self.near, 1e-12)

    def to_json(self) -> dict:
        return {"min": self.near, "max": self.far, "colormap": self.colormap,
                "scale": "inverse (disparity)" if self.inverse else "linear"}


def colorize_depth(depth: np.ndarray, alpha: np.ndarray | None, rng: ValueRange,
                   alpha_threshold: float = 0.0) -> np.ndarray:
    """Colour-map z-depth [H,W] with a fixed range -> RGB float32 [H,W,3].

    Near maps to the low end of the map (dark blue for turbo), far to the high end (dark red); values outside
    the range clip. Pixels are faded to black by ``alpha`` (nothing rendered -> black), and pixels with
    ``alpha <= alpha_threshold`` are black.
    """
    rgb = apply_colormap(rng.normalize(depth), rng.colormap)
    if alpha is not None:
        a = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)
        a = np.where(a > alpha_threshold, a, 0.0)
        rgb = rgb * a[..., None]
    return rgb


def estimate_depth_range(depth_samples: list[np.ndarray], alpha_samples: list[np.ndarray] | None = None,
                         low: float = 2.0, high: float = 98.0) -> tuple[float, float]:
    """A robust (near, far) from a few depth maps: the ``low``/``high`` percentiles of covered pixels."""
    vals = []
    for i, d in enumerate(depth_samples):
        m = np.isfinite(d) & (d > 0)
        if alpha_samples is not None:
            m &= alpha_samples[i] > 0.5
        vals.append(np.asarray(d)[m])
    v = np.concatenate(vals) if vals else np.zeros(0)
    if v.size == 0:
        return 0.1, 10.0
    near, far = np.percentile(v, [low, high])
    if far <= near:
        far = near * 1.1 + 1e-3
    return float(near), float(far)
