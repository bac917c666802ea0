"""Crop regions for exports: an axis-aligned box and/or a sphere, in the scene's frame (the coordinates of
``gaussians.ply``, what ``spatialvid view`` and ``render`` use). With both, a point must lie in both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatialvid.errors import SpatialvidError


@dataclass(frozen=True)
class Crop:
    """``box`` = (xmin, ymin, zmin, xmax, ymax, zmax) and/or ``sphere`` = (cx, cy, cz, r), scene units."""

    box: tuple[float, float, float, float, float, float] | None = None
    sphere: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.box is not None:
            b = [float(v) for v in self.box]
            if len(b) != 6 or not np.isfinite(b).all():
                raise SpatialvidError(f"crop box {self.box!r}: expected 6 finite numbers xmin,ymin,zmin,xmax,ymax,zmax")
            if not (b[0] < b[3] and b[1] < b[4] and b[2] < b[5]):
                raise SpatialvidError(f"crop box {self.box!r}: each min must be below its max")
            object.__setattr__(self, "box", tuple(b))
        if self.sphere is not None:
            s = [float(v) for v in self.sphere]
            if len(s) != 4 or not np.isfinite(s).all():
                raise SpatialvidError(f"crop sphere {self.sphere!r}: expected 4 finite numbers cx,cy,cz,r")
            if not s[3] > 0:
                raise SpatialvidError(f"crop sphere {self.sphere!r}: the radius must be positive")
            object.__setattr__(self, "sphere", tuple(s))

    @property
    def active(self) -> bool:
        return self.box is not None or self.sphere is not None

    def contains(self, points) -> np.ndarray:
        """[N] bool for points [N,3] (numpy or torch) in the scene frame."""
        p = np.asarray(points.detach().cpu().numpy() if hasattr(points, "detach") else points, np.float64)
        keep = np.ones(len(p), bool)
        if self.box is not None:
            lo, hi = np.array(self.box[:3]), np.array(self.box[3:])
            keep &= ((p >= lo) & (p <= hi)).all(1)
        if self.sphere is not None:
            c, r = np.array(self.sphere[:3]), self.sphere[3]
            keep &= ((p - c) ** 2).sum(1) <= r * r
        return keep

    def describe(self) -> str:
        parts = []
        if self.box is not None:
            parts.append("box " + ",".join(f"{v:g}" for v in self.box))
        if self.sphere is not None:
            parts.append("sphere " + ",".join(f"{v:g}" for v in self.sphere))
        return " and ".join(parts) or "none"


def parse_crop(box: str | None = None, sphere: str | None = None) -> Crop:
    """``Crop`` from the CLI strings ``"xmin,ymin,zmin,xmax,ymax,zmax"`` and ``"cx,cy,cz,r"``."""

    def floats(text: str, n: int, what: str) -> tuple[float, ...]:
        try:
            vals = tuple(float(v) for v in str(text).split(","))
        except ValueError:
            vals = ()
        if len(vals) != n:
            raise SpatialvidError(f"{what} {text!r}: expected {n} comma-separated numbers")
        return vals

    return Crop(box=floats(box, 6, "--crop-box") if box is not None else None,  # type: ignore[arg-type]
                sphere=floats(sphere, 4, "--crop-sphere") if sphere is not None else None)  # type: ignore[arg-type]
