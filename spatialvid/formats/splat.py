"""The ``.splat`` web format (antimatter15/splat and compatible viewers): 32 bytes per splat, no header.

Per splat (little endian): float32 x, y, z | float32 scale x, y, z (activated: exp of log-scales) |
uint8 r, g, b, a (colour from the degree-0 SH term, ``0.5 + C0 * f_dc``, clamped to 0..255;
``a = sigmoid(opacity) * 255``) | uint8 quaternion w, x, y, z as ``round(q * 128 + 128)`` of the unit
quaternion. Splats are sorted by decreasing ``exp(sum of log-scales) * sigmoid(opacity)`` (big, opaque first),
as web viewers expect. Higher-order SH and the origin/step tags are not stored (the format has no room).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spatialvid.atomic import atomic_open
from spatialvid.errors import FormatError
from spatialvid.gaussians import Gaussians, rgb_to_sh0, sh0_to_rgb

SPLAT_DTYPE = np.dtype([("xyz", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert SPLAT_DTYPE.itemsize == 32


def splat_records(gaussians: Gaussians) -> np.ndarray:
    """Pack Gaussians into sorted ``.splat`` records (structured array, 32 bytes each)."""
    g = gaussians.detach().to("cpu")
    n = len(g)
    importance = (g.log_scales.double().sum(1).exp() * torch.sigmoid(g.opacity_logits.double())).numpy()
    order = np.argsort(-importance, kind="stable")
    rec = np.empty(n, dtype=SPLAT_DTYPE)
    rec["xyz"] = g.means.numpy()[order]
    rec["scale"] = g.scales.numpy()[order]
    rgb = np.clip(np.round(sh0_to_rgb(g.sh0).numpy() * 255.0), 0, 255)
    alpha = np.clip(np.round(g.opacities.numpy() * 255.0), 0, 255)
    rec["rgba"] = np.concatenate([rgb, alpha[:, None]], 1)[order].astype(np.uint8)
    q = g.rotations.numpy()
    rec["rot"] = np.clip(np.round(q * 128.0 + 128.0), 0, 255)[order].astype(np.uint8)
    return rec


def write_splat(path: str | Path, gaussians: Gaussians) -> Path:
    """Export ``gaussians`` as a ``.splat`` file (atomically). Lossy: degree-0 colour, 8-bit rotation."""
    path = Path(path)
    rec = splat_records(gaussians)
    with atomic_open(path, "wb") as f:
        f.write(rec.tobytes())
    return path


def read_splat(path: str | Path) -> Gaussians:
    """Read a ``.splat`` file back into Gaussians (degree 0; opacity clamped away from 0 and 1)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "file not found" if not path.exists() else "is not a file")
    data = path.read_bytes()
    if len(data) % 32:
        raise FormatError(path, f"size {len(data)} bytes is not a multiple of 32: truncated or not a .splat file")
    rec = np.frombuffer(data, dtype=SPLAT_DTYPE)
    xyz = rec["xyz"].astype(np.float32)
    scale = rec["scale"].astype(np.float32)
    if not (np.isfinite(xyz).all() and np.isfinite(scale).all()):
        raise FormatError(path, "NaN/Inf positions or scales")
    if (scale <= 0).any():
        raise FormatError(path, f"{int((scale <= 0).any(1).sum())} splats have non-positive scales")
    rgba = rec["rgba"].astype(np.float32) / 255.0
    q = (rec["rot"].astype(np.float32) - 128.0) / 128.0
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.maximum(norm, 1e-12), np.array([1.0, 0, 0, 0], np.float32))
    alpha = np.clip(rgba[:, 3], 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    return Gaussians.from_arrays(
        torch.from_numpy(xyz), torch.from_numpy(np.log(scale)), torch.from_numpy(q.astype(np.float32)),
        torch.logit(torch.from_numpy(alpha)), rgb_to_sh0(torch.from_numpy(rgba[:, :3])))
