"""Rendering: the differentiable Gaussian rasterizer (:func:`rasterize`, :func:`render_gaussians`).

Backends: ``"auto"`` (CUDA if available, else the C++ CPU kernels), ``"cpu"``, ``"cuda"``, ``"torch"``
(pure-PyTorch reference). See :mod:`spatialvid.render.rasterizer` for conventions.
"""

from spatialvid.render.rasterizer import BACKENDS, RasterOutput, rasterize, rasterize_batch, render_gaussians

__all__ = ["BACKENDS", "RasterOutput", "rasterize", "rasterize_batch", "render_gaussians"]
