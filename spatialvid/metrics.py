"""Image quality metrics: PSNR, SSIM (differentiable torch) and an optional LPIPS loader.

Images are float tensors in 0..1, either [H,W,3] (HWC, what the rasterizer returns) or [B,3,H,W] (BCHW).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F


def _to_bchw(img: torch.Tensor) -> torch.Tensor:
    if img.dim() == 3 and img.shape[-1] in (1, 3, 4) and img.shape[0] not in (1, 3, 4):
        return img.permute(2, 0, 1)[None]
    if img.dim() == 3 and img.shape[-1] in (1, 3, 4):  # ambiguous tiny images: assume HWC (our convention)
        return img.permute(2, 0, 1)[None]
    if img.dim() == 3:
        return img[None]
    if img.dim() == 4:
        return img
    raise ValueError(f"expected an image [H,W,C] or [B,C,H,W], got shape {tuple(img.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (images in 0..max_val)."""
    mse = torch.mean((pred.detach().double() - target.detach().double()) ** 2).item()
    if mse <= 0:
        return float("inf")
    return 10.0 * math.log10(max_val * max_val / mse)


@lru_cache(maxsize=8)
def _gauss_1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (g / g.sum()).float()


def _blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' borders (as in the SSIM paper / skimage)."""
    c = x.shape[1]
    g = _gauss_1d(size, sigma).to(x.device, x.dtype)
    x = F.conv2d(x, g.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(x, g.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5,
         max_val: float = 1.0, reduce: bool = True) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03.

    Differentiable. Accepts [H,W,C] or [B,C,H,W]; 'valid' windows only (no padding). Returns the mean SSIM
    as a 0-d tensor (or the per-pixel map with ``reduce=False``).
    """
    x, y = _to_bchw(pred), _to_bchw(target)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"ssim: image {tuple(x.shape[-2:])} smaller than the {window}px window")
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    c = x.shape[1]
    stacked = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), window, sigma)
    mu_x, mu_y, exx, eyy, exy = torch.split(stacked, c, dim=1)
    sxx = exx - mu_x * mu_x
    syy = eyy - mu_y * mu_y
    sxy = exy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    m = num / den
    return m.mean() if reduce else m


LPIPS_ENV = "SPATIALVID_LPIPS_WEIGHTS"
LPIPS_NOTE = (f"LPIPS not computed: no local weights (set {LPIPS_ENV} to a TorchScript LPIPS model file; "
              "spatialvid never downloads weights)")


def masked_psnr_ssim(pred, target, mask) -> tuple[float, float]:
    """Scores of a region: PSNR (dB, images in 0..1) over the ``mask`` pixels and SSIM over the mask's bounding
    box (SSIM needs a neighbourhood; NaN when the box is under the 11 px window). ``pred``/``target``: ``[H,W,3]``
    arrays or tensors; ``mask``: ``[H,W]`` bool."""
    pred_t, target_t = torch.as_tensor(pred).float(), torch.as_tensor(target).float()
    m = torch.as_tensor(mask, dtype=torch.bool)
    if not bool(m.any()):
        raise ValueError("masked_psnr_ssim: empty mask")
    mse = float(((pred_t - target_t) ** 2)[m].mean())
    ys, xs = torch.nonzero(m, as_tuple=True)
    box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
    s = float(ssim(pred_t[box], target_t[box])) if min(b.stop - b.start for b in box) >= 11 else float("nan")
    return 10 * math.log10(1 / max(mse, 1e-12)), s


@lru_cache(maxsize=2)
def _load_lpips(path: str):
    model = torch.jit.load(path, map_location="cpu")
    model.eval()
    return model


def lpips_model(path: str | os.PathLike | None = None):
    """Load an LPIPS network from a local TorchScript file (``path`` or $SPATIALVID_LPIPS_WEIGHTS).

    Returns ``(model, note)``: the model is ``None`` (and ``note`` says why) when no local file is available.
    The model takes two [B,3,H,W] images in -1..1 and returns distances [B,...].
    """
    p = path or os.environ.get(LPIPS_ENV)
    if not p:
        return None, LPIPS_NOTE
    if not Path(p).is_file():
        return None, f"LPIPS not computed: weights file {p} not found"
    try:
        return _load_lpips(str(p)), ""
    except Exception as e:  # a broken file must not stop an evaluation
        return None, f"LPIPS not computed: could not load {p} ({type(e).__name__}: {e})"


def lpips(pred: torch.Tensor, target: torch.Tensor, model) -> float | None:
    """LPIPS distance between two images in 0..1 (``None`` without a model)."""
    if model is None:
        return None
    with torch.no_grad():
        d = model(_to_bchw(pred) * 2 - 1, _to_bchw(target) * 2 - 1)
    return float(d.mean())
