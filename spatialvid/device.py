"""The compute-device setting shared by ``reconstruct``, ``render``, ``fill`` and ``view``.

``--device auto`` (default) is ``cuda`` when ``torch.cuda.is_available()``, else ``cpu`` (and ``cpu`` when the
rasterizer backend asked for is ``cpu``, so ``--backend cpu`` alone keeps working on a GPU machine); ``cuda`` (or
``cuda:N``) without a usable GPU is an error. Parameters, images, cameras, optimiser state and loaded scenes
live on the resolved device, and the rasterizer backend ``auto`` follows the tensors' device (CUDA kernels
for CUDA tensors, C++ kernels for CPU tensors).
"""

from __future__ import annotations

import argparse

import torch

from spatialvid.errors import SpatialvidError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str | torch.device | None = "auto", backend: str | None = None) -> torch.device:
    """``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` (or a torch.device) -> a usable ``torch.device``.

    ``backend``: the rasterizer backend that will run; ``auto`` with ``backend="cpu"`` is the CPU.

    Raises :class:`SpatialvidError` (one line) for an unknown name or a CUDA device torch cannot use.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = str(spec or "auto").strip().lower()
    if s == "auto":
        s = "cuda" if torch.cuda.is_available() and backend != "cpu" else "cpu"
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        index = None
        if s != "cuda":
            try:
                index = int(s.split(":", 1)[1])
            except ValueError:
                raise SpatialvidError(f"device {spec!r}: expected cuda or cuda:N") from None
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "torch sees no CUDA device")
            raise SpatialvidError(f"device {spec!r}: CUDA is not available ({why}, torch {torch.__version__}); "
                                  "use --device cpu or --device auto")
        n = torch.cuda.device_count()
        if index is not None and not 0 <= index < n:
            raise SpatialvidError(f"device {spec!r}: only {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        # with its index, so that it compares equal to the device of the tensors put there
        return torch.device("cuda", torch.cuda.current_device() if index is None else index)
    raise SpatialvidError(f"unknown device {spec!r} (choose from {', '.join(DEVICES)}, or cuda:N)")


def check_backend(backend: str, device: torch.device) -> None:
    """A rasterizer backend that cannot run on ``device`` is an error before any work (``auto``/``torch``
    run anywhere; ``cpu`` needs the CPU, ``cuda`` a CUDA device)."""
    if backend == "cpu" and device.type != "cpu":
        raise SpatialvidError(f"--backend cpu runs on the CPU but the device is {device}; use --device cpu "
                              "(or --backend auto)")
    if backend == "cuda" and device.type != "cuda":
        raise SpatialvidError(f"--backend cuda needs --device cuda (the device is {device})")


def add_device_argument(parser: argparse.ArgumentParser, what: str = "tensors") -> None:
    """``--device auto|cpu|cuda`` (default auto)."""
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                        help=f"where {what} live (default: auto = cuda when torch sees a GPU, else cpu; "
                             "cuda:N picks a GPU)")


def move_scene(scene, device: torch.device):
    """Put ``scene.gaussians`` on ``device`` (in place; returns the scene). Cameras stay on the CPU (they are a
    few numbers; the rasterizer moves each one's matrices to the Gaussians' device)."""
    scene.gaussians = scene.gaussians.to(device)
    return scene
