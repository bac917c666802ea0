"""Held-out evaluation (PSNR, SSIM, LPIPS when local weights exist), ``metrics.json`` and the training curve.

Protocol: the held-out images are every ``holdout_every``-th image by sorted name (see
:func:`spatialvid.train.data.split_indices`), rendered from their given poses at the training resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialvid.atomic import atomic_open, atomic_write_json
from spatialvid.metrics import lpips, lpips_model, psnr, ssim

METRICS_JSON = "metrics.json"
CURVE_PNG = "training_curve.png"
EVAL_DIR = "eval"


def _save_side_by_side(path: Path, gt: torch.Tensor, pred: torch.Tensor) -> None:
    from PIL import Image

    both = torch.cat([gt, pred], dim=1).clamp(0, 1).mul(255).round().byte().cpu().numpy()
    with atomic_open(path, "wb") as f:
        Image.fromarray(both).save(f, format="PNG")


@torch.no_grad()
def evaluate_trainer(trainer, indices: list[int] | None = None, save_images: bool = False) -> dict[str, Any]:
    """Render the held-out cameras (``data.test_idx`` by default) and compare with their images."""
    data = trainer.data
    idx = list(data.test_idx if indices is None else indices)
    model, note = lpips_model()
    per = []
    for i in idx:
        out = trainer.render(i)
        pred, gt = out.rgb.clamp(0, 1), trainer.image(i)  # on the trainer's device
        entry = {"image": data.cameras.names[i], "psnr": psnr(pred, gt), "ssim": float(ssim(pred, gt)),
                 "lpips": lpips(pred.cpu(), gt.cpu(), model) if model is not None else None}
        per.append(entry)
        if save_images and trainer.out_dir is not None:
            _save_side_by_side(trainer.out_dir / EVAL_DIR / f"{Path(entry['image']).stem}.png", gt, pred)

    def mean(key):
        vals = [e[key] for e in per if e[key] is not None]
        return float(np.mean(vals)) if vals else None

    res = {"psnr": mean("psnr"), "ssim": mean("ssim"), "lpips": mean("lpips") if model is not None else None,
           "heldout_images": [e["image"] for e in per], "per_image": per}
    if model is None:
        res["lpips_note"] = note
    return res


def write_metrics(scene_dir: str | Path, metrics: dict[str, Any]) -> Path:
    path = Path(scene_dir) / METRICS_JSON
    atomic_write_json(path, metrics)
    return path


def plot_curve(path: str | Path, history: list[dict[str, Any]], eval_history: list[dict[str, Any]] | None = None,
               title: str = "training") -> Path | None:
    """Loss and train PSNR (EMA) against step, held-out PSNR as points; PNG written atomically."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax1 = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax1.plot(steps, [h["loss"] for h in history], color="tab:red", label="loss (EMA)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss", color="tab:red")
    ax1.set_yscale("log")
    ax2 = ax1.twinx()
    ax2.plot(steps, [h["psnr"] for h in history], color="tab:blue", label="train PSNR (EMA)")
    if eval_history:
        ax2.plot([e["step"] for e in eval_history], [e["psnr"] for e in eval_history], "o", color="tab:green",
                 label="held-out PSNR")
    ax2.set_ylabel("PSNR (dB)", color="tab:blue")
    ax3 = ax1.twinx()
    ax3.spines["right"].set_position(("axes", 1.12))
    ax3.plot(steps, [h["num_gaussians"] for h in history], color="tab:gray", alpha=0.6, label="Gaussians")
    ax3.set_ylabel("Gaussians", color="tab:gray")
    lines = ax1.get_lines() + ax2.get_lines() + ax3.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax1.set_title(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path
