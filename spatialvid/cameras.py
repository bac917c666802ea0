"""Pinhole cameras with OpenCV distortion.

Conventions (read these before guessing):

* Axes are **OpenCV**: x right, y down, z forward (the camera looks down +z).
* ``R``, ``t`` are **world-to-camera**: ``x_cam = R @ x_world + t``.
* Intrinsics are in pixels; the pixel centre of the top-left pixel is (0.5, 0.5) in the continuous
  image coordinates used by the rasterizer (so ``cx = width / 2`` is the image centre).
* Distortion is OpenCV's radial-tangential model, ``dist = (k1, k2, p1, p2, k3)``. The rasterizer renders
  an ideal pinhole image; distortion is only used by ingest (undistortion) and by the exporters.
* nerfstudio / OpenGL ``transform_matrix`` is camera-to-world with x right, y up, z back:
  ``c2w_cv = c2w_gl @ diag(1, -1, -1, 1)`` and back with the same matrix (it is its own inverse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from spatialvid.errors import SpatialvidError

GL_FROM_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def _t(x, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(x, dtype=dtype)


@dataclass
class Cameras:
    """A batch of N pinhole cameras (see the module docstring for axes and conventions).

    Attributes:
        fx, fy, cx, cy: [N] float32, pixels.
        width, height: [N] int64, pixels.
        R: [N,3,3] float32 world-to-camera rotation (OpenCV axes).
        t: [N,3] float32 world-to-camera translation.
        dist: [N,5] float32 OpenCV distortion (k1, k2, p1, p2, k3); zeros for a pinhole.
        names: per-camera image names (file names, used to match images and poses).
        image_paths: per-camera image paths ("" when there is no image).
    """

    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: torch.Tensor
    height: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    dist: torch.Tensor = None  # type: ignore[assignment]
    names: list[str] = field(default_factory=list)
    image_paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = _t(self.R).reshape(-1, 9).shape[0]  # batch size from the poses; scalar intrinsics broadcast
        self.fx = _t(self.fx).reshape(-1).expand(n).clone()
        self.fy = _t(self.fy).reshape(-1).expand(n).clone()
        self.cx = _t(self.cx).reshape(-1).expand(n).clone()
        self.cy = _t(self.cy).reshape(-1).expand(n).clone()
        self.width = _t(self.width, torch.int64).reshape(-1).expand(n).clone()
        self.height = _t(self.height, torch.int64).reshape(-1).expand(n).clone()
        self.R = _t(self.R).reshape(n, 3, 3)
        self.t = _t(self.t).reshape(n, 3)
        self.dist = torch.zeros(n, 5) if self.dist is None else _t(self.dist).reshape(n, 5)
        if not self.names:
            self.names = [f"{i:05d}" for i in range(n)]
        if not self.image_paths:
            self.image_paths = [""] * n
        if len(self.names) != n or len(self.image_paths) != n:
            raise SpatialvidError(f"Cameras: {n} cameras but {len(self.names)} names / {len(self.image_paths)} paths")

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_c2w(cls, c2w: torch.Tensor, fx, fy, cx, cy, width, height, opengl: bool = False, **kw) -> Cameras:
        """From camera-to-world 4x4 (or 3x4) matrices; ``opengl=True`` for nerfstudio/OpenGL axes."""
        c2w = _t(c2w, torch.float64)
        if c2w.dim() == 2:
            c2w = c2w[None]
        if c2w.shape[-2] == 3:
            bottom = torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(c2w.shape[0], 1, 4)
            c2w = torch.cat([c2w, bottom], dim=1)
        if opengl:
            c2w = c2w @ GL_FROM_CV
        w2c = torch.linalg.inv(c2w)
        return cls(fx=fx, fy=fy, cx=cx, cy=cy, width=width, height=height,
                   R=w2c[:, :3, :3].float(), t=w2c[:, :3, 3].float(), **kw)

    @classmethod
    def look_at(cls, eye, target, up=(0.0, 0.0, 1.0), fov_deg: float = 60.0, width: int = 512,
                height: int = 512, name: str = "look_at") -> Cameras:
        """One camera at ``eye`` looking at ``target``; ``up`` is the world up; ``fov_deg`` is vertical."""
        eye_t, target_t, up_t = (_t(v, torch.float64) for v in (eye, target, up))
        fwd = target_t - eye_t
        if fwd.norm() < 1e-12:
            raise SpatialvidError("Cameras.look_at: eye and target coincide")
        z = fwd / fwd.norm()
        x = torch.linalg.cross(z, up_t)
        if x.norm() < 1e-9:  # looking along up: pick any perpendicular
            x = torch.linalg.cross(z, torch.tensor([1.0, 0, 0], dtype=torch.float64))
            if x.norm() < 1e-9:
                x = torch.linalg.cross(z, torch.tensor([0, 1.0, 0], dtype=torch.float64))
        x = x / x.norm()
        y = torch.linalg.cross(z, x)  # OpenCV: y down
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye_t
        f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
        return cls.from_c2w(c2w, f, f, width / 2, height / 2, width, height, names=[name])

    # ---- batch access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.fx.shape[0])

    def __getitem__(self, idx) -> Cameras:
        if isinstance(idx, int):
            idx = [idx if idx >= 0 else len(self) + idx]
        if isinstance(idx, slice):
            idx = list(range(len(self)))[idx]
        if isinstance(idx, torch.Tensor):
            idx = idx.reshape(-1).tolist() if idx.dtype != torch.bool else idx.nonzero().reshape(-1).tolist()
        idx = list(idx)
        return Cameras(fx=self.fx[idx], fy=self.fy[idx], cx=self.cx[idx], cy=self.cy[idx],
                       width=self.width[idx], height=self.height[idx], R=self.R[idx], t=self.t[idx],
                       dist=self.dist[idx], names=[self.names[i] for i in idx],
                       image_paths=[self.image_paths[i] for i in idx])

    @staticmethod
    def cat(items: list[Cameras]) -> Cameras:
        return Cameras(fx=torch.cat([c.fx for c in items]), fy=torch.cat([c.fy for c in items]),
                       cx=torch.cat([c.cx for c in items]), cy=torch.cat([c.cy for c in items]),
                       width=torch.cat([c.width for c in items]), height=torch.cat([c.height for c in items]),
                       R=torch.cat([c.R for c in items]), t=torch.cat([c.t for c in items]),
                       dist=torch.cat([c.dist for c in items]),
                       names=sum((c.names for c in items), []), image_paths=sum((c.image_paths for c in items), []))

    def clone(self) -> Cameras:
        return replace(self, fx=self.fx.clone(), fy=self.fy.clone(), cx=self.cx.clone(), cy=self.cy.clone(),
                       width=self.width.clone(), height=self.height.clone(), R=self.R.clone(), t=self.t.clone(),
                       dist=self.dist.clone(), names=list(self.names), image_paths=list(self.image_paths))

    # ---- matrices -----------------------------------------------------------------------------
    def viewmats(self) -> torch.Tensor:
        """[N,4,4] world-to-camera (OpenCV axes), the ``viewmat`` the rasterizer takes."""
        n = len(self)
        m = torch.zeros(n, 4, 4)
        m[:, :3, :3] = self.R
        m[:, :3, 3] = self.t
        m[:, 3, 3] = 1.0
        return m

    def Ks(self) -> torch.Tensor:
        """[N,3,3] pinhole intrinsics."""
        n = len(self)
        k = torch.zeros(n, 3, 3)
        k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = self.fx, self.fy, self.cx, self.cy, 1.0
        return k

    def c2w(self, opengl: bool = False) -> torch.Tensor:
        """[N,4,4] camera-to-world; OpenCV axes, or OpenGL/nerfstudio axes with ``opengl=True``."""
        m = torch.linalg.inv(self.viewmats().double())
        if opengl:
            m = m @ GL_FROM_CV
        return m.float()

    def centers(self) -> torch.Tensor:
        """[N,3] camera centres in world coordinates: ``-R^T t``."""
        return -(self.R.transpose(1, 2) @ self.t[:, :, None])[:, :, 0]

    def fov_y(self) -> torch.Tensor:
        """[N] vertical field of view in degrees."""
        return torch.rad2deg(2 * torch.atan(self.height.float() / (2 * self.fy)))

    def project(self, points: torch.Tensor, distort: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points [P,3] into every camera: returns uv [N,P,2] (pixels) and depth z [N,P]."""
        p = points.float()
        cam = torch.einsum("nij,pj->npi", self.R, p) + self.t[:, None, :]
        z = cam[..., 2]
        x, y = cam[..., 0] / z, cam[..., 1] / z
        if distort:
            k1, k2, p1, p2, k3 = (self.dist[:, i : i + 1] for i in range(5))
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
            xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            x, y = xd, yd
        u = self.fx[:, None] * x + self.cx[:, None]
        v = self.fy[:, None] * y + self.cy[:, None]
        return torch.stack([u, v], -1), z

    def scaled(self, factor: float) -> Cameras:
        """The same cameras with images resized by ``factor`` (intrinsics and sizes scaled)."""
        w = torch.round(self.width.float() * factor).long()
        h = torch.round(self.height.float() * factor).long()
        sx, sy = w.float() / self.width.float(), h.float() / self.height.float()
        return replace(self.clone(), fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       width=w, height=h)

    def validate(self, where: str = "cameras") -> None:
        """Raise a clear error for non-finite values, non-positive sizes/focals or non-rotation R."""
        for name in ("fx", "fy", "cx", "cy", "R", "t", "dist"):
            if not torch.isfinite(getattr(self, name)).all():
                raise SpatialvidError(f"{where}: non-finite values in {name}")
        if (self.fx <= 0).any() or (self.fy <= 0).any():
            raise SpatialvidError(f"{where}: focal lengths must be positive")
        if (self.width <= 0).any() or (self.height <= 0).any():
            raise SpatialvidError(f"{where}: image sizes must be positive")
        eye = torch.eye(3).expand(len(self), 3, 3)
        err = (self.R.double() @ self.R.double().transpose(1, 2) - eye.double()).abs().amax() if len(self) else 0.0
        if err > 1e-3 or (len(self) and (torch.linalg.det(self.R.double()) < 0).any()):
            raise SpatialvidError(f"{where}: rotation matrices are not orthonormal (error {float(err):.2g})")
