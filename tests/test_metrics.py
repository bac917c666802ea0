"""spatialvid.metrics: PSNR / SSIM against known values and an independent numpy/scipy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from spatialvid import metrics


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 SSIM, skimage-style: scipy gaussian_filter (sigma 1.5, truncate 3.5 -> 11 taps),
    population covariances, borders of 5 px cropped, mean over channels."""
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)

        def f(z):
            return ndimage.gaussian_filter(z, sigma=1.5, truncate=3.5)

        mx, my = f(a), f(b)
        sxx, syy, sxy = f(a * a) - mx * mx, f(b * b) - my * my, f(a * b) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def test_psnr_of_known_mse():
    target = torch.zeros(10, 12, 3)
    assert metrics.psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-5)  # MSE 0.01 -> 20 dB (float32 0.1)
    assert metrics.psnr(target + 0.01, target) == pytest.approx(40.0, abs=1e-5)
    noisy = target.clone()
    noisy[0, 0, 0] = 1.0  # MSE = 1 / 360
    assert metrics.psnr(noisy, target) == pytest.approx(10 * math.log10(360), abs=1e-9)
    assert metrics.psnr(target, target) == math.inf


def test_ssim_identity_and_reference():
    rng = np.random.default_rng(0)
    x = ndimage.gaussian_filter(rng.random((40, 50, 3)), sigma=(2, 2, 0))
    y = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)
    tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    assert float(metrics.ssim(tx, tx)) == pytest.approx(1.0, abs=1e-6)
    ref = _ssim_reference(x, y)
    assert 0.2 < ref < 0.99  # a meaningful, non-trivial comparison
    assert float(metrics.ssim(tx, ty)) == pytest.approx(ref, abs=2e-5)
    # BCHW gives the same as HWC
    assert float(metrics.ssim(tx.permute(2, 0, 1)[None], ty.permute(2, 0, 1)[None])) == pytest.approx(ref, abs=2e-5)


def test_ssim_is_differentiable_and_drops_with_noise():
    torch.manual_seed(0)
    target = torch.rand(32, 32, 3)
    pred = (target + 0.2 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    s = metrics.ssim(pred, target)
    s.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert float(s) < 0.9
    # a gradient step on 1 - SSIM increases SSIM
    with torch.no_grad():
        better = (pred + 0.5 * pred.grad / pred.grad.abs().max()).clamp(0, 1)
    assert float(metrics.ssim(better, target)) > float(s)


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError):
        metrics.ssim(torch.rand(8, 8, 3), torch.rand(8, 8, 3))  # smaller than the window
    with pytest.raises(ValueError):
        metrics.ssim(torch.rand(20, 20, 3), torch.rand(20, 21, 3))


def test_lpips_loader_local_only(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.LPIPS_ENV, raising=False)
    model, note = metrics.lpips_model()
    assert model is None and metrics.LPIPS_ENV in note
    assert metrics.lpips(torch.rand(16, 16, 3), torch.rand(16, 16, 3), None) is None
    model, note = metrics.lpips_model(tmp_path / "missing.pt")
    assert model is None and "not found" in note

    class MeanAbs(torch.nn.Module):  # stands in for a real LPIPS TorchScript export
        def forward(self, a, b):
            return (a - b).abs().mean(dim=(1, 2, 3))

    path = tmp_path / "lpips.pt"
    torch.jit.script(MeanAbs()).save(str(path))
    monkeypatch.setenv(metrics.LPIPS_ENV, str(path))
    model, note = metrics.lpips_model()
    assert model is not None and note == ""
    a, b = torch.zeros(16, 16, 3), torch.full((16, 16, 3), 0.25)
    assert metrics.lpips(a, b, model) == pytest.approx(0.5)  # inputs are mapped to -1..1


def test_masked_psnr_ssim_scores_only_the_region():
    from spatialvid.metrics import masked_psnr_ssim

    rng = np.random.default_rng(0)
    gt = rng.random((40, 50, 3)).astype(np.float32) * 0.8
    pred = gt.copy()
    mask = np.zeros((40, 50), bool)
    mask[10:30, 5:35] = True
    pred[mask] += 0.1  # inside: MSE 0.01 -> exactly 20 dB
    pred[~mask] = 0.0  # outside the box: must not count
    p, s = masked_psnr_ssim(pred, gt, mask)
    assert abs(p - 20.0) < 1e-4
    assert abs(s - metrics.ssim(torch.from_numpy(pred[10:30, 5:35]), torch.from_numpy(gt[10:30, 5:35]))) < 1e-6
    small = np.zeros((40, 50), bool)
    small[2:6, 2:6] = True
    assert math.isnan(masked_psnr_ssim(pred, gt, small)[1])
    with pytest.raises(ValueError, match="empty mask"):
        masked_psnr_ssim(pred, gt, np.zeros((40, 50), bool))
