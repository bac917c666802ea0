"""3D Gaussians, stored pre-activation exactly as the 3DGS PLY stores them.

* ``means`` [N,3] world units.
* ``log_scales`` [N,3]: ``scales = exp(log_scales)`` (world units, standard deviations).
* ``quats`` [N,4] (w, x, y, z), normalised by :attr:`rotations`.
* ``opacity_logits`` [N]: ``opacities = sigmoid(opacity_logits)``.
* ``sh0`` [N,3] degree-0 SH coefficient per channel (colour = 0.5 + C0 * sh0);
  ``shN`` [N,K-1,3] higher-degree coefficients, K = (degree+1)^2 (K-1 = 0 for degree 0).
* ``origin`` [N] uint8: :data:`CAPTURED` (fitted to the video) or :data:`GENERATED` (added by fill).
* ``step`` [N] int32: id of the history step that created the Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from spatialvid.errors import CapacityError

C0 = 0.28209479177387814
CAPTURED = 0
GENERATED = 1
DEFAULT_MAX_GAUSSIANS = 3_000_000


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    return sh0 * C0 + 0.5


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """[N,4] quaternions (w, x, y, z; normalised here) -> [N,3,3] rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    d = int(round(k**0.5)) - 1
    if (d + 1) ** 2 != k or d < 0 or d > 3:
        raise ValueError(f"{k} SH coefficients per channel is not (d+1)^2 for a degree d in 0..3")
    return d


@dataclass
class Gaussians:
    means: torch.Tensor
    log_scales: torch.Tensor
    quats: torch.Tensor
    opacity_logits: torch.Tensor
    sh0: torch.Tensor
    shN: torch.Tensor
    origin: torch.Tensor
    step: torch.Tensor

    # ---- activations (one place) ---------------------------------------------------------------
    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def rotations(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def sh(self) -> torch.Tensor:
        """[N,K,3] all SH coefficients (DC first)."""
        return torch.cat([self.sh0[:, None, :], self.shN], dim=1)

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_bases(1 + self.shN.shape[1])

    @property
    def colors(self) -> torch.Tensor:
        """[N,3] base colour from the DC term, clamped to 0..1."""
        return sh0_to_rgb(self.sh0).clamp(0, 1)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def device(self) -> torch.device:
        return self.means.device

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def empty(cls, sh_degree: int = 0) -> Gaussians:
        return cls.from_arrays(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0),
                               torch.zeros(0, 3), sh_degree=sh_degree)

    @classmethod
    def from_arrays(cls, means, log_scales, quats, opacity_logits, sh0, shN=None, origin=None, step=None,
                    sh_degree: int = 0) -> Gaussians:
        n = means.shape[0]
        if shN is None:
            shN = torch.zeros(n, num_sh_bases(sh_degree) - 1, 3)
        origin = torch.full((n,), CAPTURED, dtype=torch.uint8) if origin is None else origin.to(torch.uint8)
        step = torch.zeros(n, dtype=torch.int32) if step is None else step.to(torch.int32)
        return cls(means.float(), log_scales.float(), quats.float(), opacity_logits.float().reshape(-1),
                   sh0.float(), shN.float(), origin, step)

    @classmethod
    def from_points(cls, xyz: torch.Tensor, rgb: torch.Tensor, scale: torch.Tensor | float = 0.01,
                    opacity: float = 0.1, sh_degree: int = 0, origin: int = CAPTURED, step: int = 0) -> Gaussians:
        """Isotropic Gaussians at ``xyz`` [N,3] with colours ``rgb`` [N,3] in 0..1 and std ``scale``."""
        n = xyz.shape[0]
        scale_t = torch.as_tensor(scale, dtype=torch.float32).expand(n).reshape(n, 1)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1
        return cls.from_arrays(xyz, torch.log(scale_t).expand(n, 3).clone(), quats,
                               torch.logit(torch.full((n,), float(opacity))), rgb_to_sh0(rgb.float()),
                               origin=torch.full((n,), origin, dtype=torch.uint8),
                               step=torch.full((n,), step, dtype=torch.int32), sh_degree=sh_degree)

    # ---- batch operations ---------------------------------------------------------------------
    def _map(self, fn) -> Gaussians:
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def __getitem__(self, idx) -> Gaussians:
        return self._map(lambda t: t[idx])

    def to(self, device) -> Gaussians:
        return self._map(lambda t: t.to(device))

    def detach(self) -> Gaussians:
        return self._map(lambda t: t.detach())

    def clone(self) -> Gaussians:
        return self._map(lambda t: t.detach().clone())

    @staticmethod
    def cat(items: list[Gaussians]) -> Gaussians:
        kmax = max(g.shN.shape[1] for g in items)
        padded = []
        for g in items:
            if g.shN.shape[1] < kmax:
                pad = torch.zeros(len(g), kmax - g.shN.shape[1], 3, dtype=g.shN.dtype, device=g.device)
                g = Gaussians(**{**{f.name: getattr(g, f.name) for f in fields(g)}, "shN": torch.cat([g.shN, pad], 1)})
            padded.append(g)
        return Gaussians(**{f.name: torch.cat([getattr(g, f.name) for g in padded]) for f in fields(Gaussians)})

    def with_sh_degree(self, degree: int) -> Gaussians:
        """Pad (with zeros) or truncate the higher-order SH to ``degree``."""
        k = num_sh_bases(degree) - 1
        shN = self.shN[:, :k]
        if shN.shape[1] < k:
            shN = torch.cat([shN, torch.zeros(len(self), k - shN.shape[1], 3, device=self.device)], 1)
        return Gaussians(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "shN": shN})

    def check_capacity(self, extra: int = 0, cap: int = DEFAULT_MAX_GAUSSIANS) -> None:
        """Raise :class:`CapacityError` if ``len(self) + extra`` exceeds ``cap``."""
        if len(self) + extra > cap:
            raise CapacityError(
                f"{len(self) + extra:,} Gaussians would exceed the cap of {cap:,} "
                "(raise it with --max-gaussians, or lower densification)")

    def validate(self, where: str = "gaussians") -> None:
        from spatialvid.errors import SpatialvidError

        n = len(self)
        for f in fields(self):
            t = getattr(self, f.name)
            if t.shape[0] != n:
                raise SpatialvidError(f"{where}: {f.name} has {t.shape[0]} rows, expected {n}")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise SpatialvidError(f"{where}: non-finite values in {f.name}")
        sh_degree_from_bases(1 + self.shN.shape[1])
