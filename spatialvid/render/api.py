"""The rendering API: :func:`render_scene` (what ``Scene.render(camera)`` calls) -> :class:`RenderResult`.

Example::

    from spatialvid.scene import Scene
    from spatialvid.cameras import Cameras
    scene = Scene.load("scenes/sample")
    cam = Cameras.look_at(eye=(3, 0, 1.5), target=(0, 0, 0), up=(0, 0, 1), fov_deg=50, width=640, height=480)
    out = scene.render(cam)          # out.rgb [480,640,3] float32 0..1, out.depth, out.alpha, out.coverage
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spatialvid.errors import SpatialvidError

_NAMED_BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "gray": (0.5, 0.5, 0.5),
                      "grey": (0.5, 0.5, 0.5)}


@dataclass
class RenderResult:
    """One rendered view, as numpy arrays.

    Attributes:
        rgb: [H,W,3] float32 in 0..1, composited over the background.
        depth: [H,W] float32 expected camera-space z (OpenCV: distance along the viewing axis, scene
            units), normalised by alpha; 0 where nothing was rendered.
        alpha: [H,W] float32 accumulated opacity in 0..1.
        coverage: [H,W] int32 number of Gaussians composited into each pixel (0 = empty).
    """

    rgb: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray
    coverage: np.ndarray

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def rgb_uint8(self) -> np.ndarray:
        """[H,W,3] uint8 (rounded)."""
        return (np.clip(self.rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def parse_background(background) -> tuple[float, float, float]:
    """None/'black'/'white'/'gray', '#rrggbb', 'r,g,b' (0..1 or 0..255) or a 3-sequence -> RGB in 0..1."""
    if background is None:
        return (0.0, 0.0, 0.0)
    if isinstance(background, str):
        s = background.strip().lower()
        if s in _NAMED_BACKGROUNDS:
            return _NAMED_BACKGROUNDS[s]
        if s.startswith("#") and len(s) == 7:
            try:
                return tuple(int(s[i:i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]
            except ValueError:
                pass
        parts = s.split(",")
        try:
            background = [float(p) for p in parts]
        except ValueError:
            raise SpatialvidError(f"background {background!r}: use black, white, gray, #rrggbb or r,g,b") from None
    try:
        vals = [float(v) for v in np.asarray(background, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError):
        raise SpatialvidError(f"background {background!r}: expected 3 numbers") from None
    if len(vals) != 3 or not all(np.isfinite(vals)):
        raise SpatialvidError(f"background {background!r}: expected 3 finite numbers")
    if max(vals) > 1.0:
        vals = [v / 255.0 for v in vals]
    if min(vals) < 0.0 or max(vals) > 1.0:
        raise SpatialvidError(f"background {background!r}: values must be in 0..1 (or 0..255)")
    return (vals[0], vals[1], vals[2])


def render_settings(scene) -> dict[str, Any]:
    """How ``scene`` was trained to look: ``{"background": (r, g, b) in 0..1, "antialiased": bool}`` from its
    metadata (written by reconstruct; black and False for scenes that do not say)."""
    meta = getattr(scene, "metadata", None) or {}
    return {"background": parse_background(meta.get("background")), "antialiased": bool(meta.get("antialiased", False))}


def render_scene(scene, camera, background=None, sh_degree: int | None = None, backend: str = "auto",
                 **kwargs) -> RenderResult:
    """Render ``scene`` (a :class:`~spatialvid.scene.Scene` or bare :class:`~spatialvid.gaussians.Gaussians`)
    from ``camera`` (a 1-camera :class:`~spatialvid.cameras.Cameras`; distortion is ignored: ideal pinhole).

    ``background``: see :func:`parse_background` (default: the scene's ``metadata["background"]`` or
    black); ``antialiased`` (a keyword argument) defaults to the scene's ``metadata["antialiased"]``, so a
    scene renders the way it was trained and evaluated. ``sh_degree``: SH degree to evaluate (default: all stored). ``backend``: "auto" | "cpu" |
    "cuda" | "torch". Extra keyword arguments go to :func:`spatialvid.render.rasterize` (near, far,
    antialiased). Rendering is deterministic: the same inputs give bit-identical images.
    """
    from spatialvid.render import render_gaussians

    gaussians = getattr(scene, "gaussians", scene)
    if background is None:
        background = (getattr(scene, "metadata", None) or {}).get("background")
    bg = parse_background(background)
    kwargs.setdefault("antialiased", render_settings(scene)["antialiased"])
    if not hasattr(camera, "viewmats"):
        raise SpatialvidError(f"render: camera must be a spatialvid Cameras object, got {type(camera).__name__}")
    if len(camera) != 1:
        raise SpatialvidError(f"render: expected exactly 1 camera, got {len(camera)} (index the batch: cams[i])")
    camera.validate("render camera")
    w, h = int(camera.width[0]), int(camera.height[0])
    if len(gaussians) == 0:
        return RenderResult(rgb=np.broadcast_to(np.asarray(bg, np.float32), (h, w, 3)).copy(),
                            depth=np.zeros((h, w), np.float32), alpha=np.zeros((h, w), np.float32),
                            coverage=np.zeros((h, w), np.int32))
    with torch.no_grad():
        out = render_gaussians(gaussians, camera, sh_degree=sh_degree, background=bg, backend=backend, **kwargs)
    return RenderResult(
        rgb=out.rgb.detach().float().cpu().numpy(),
        depth=out.depth.detach().float().cpu().numpy(),
        alpha=out.alpha.detach().float().cpu().numpy(),
        coverage=out.count.detach().cpu().numpy().astype(np.int32),
    )
