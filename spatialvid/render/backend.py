"""Backends for :func:`spatialvid.render.rasterize`: stage implementations and the C++/CUDA extensions.

Each backend exposes the same four stages (``project``, ``eval_sh``, ``intersect``, ``rasterize``).
The C++ extension (``cuda_ext/*.cpp``, OpenMP) is compiled with ``torch.utils.cpp_extension.load`` the
first time it is needed (a one-line message is printed) and cached under ``~/.cache/spatialvid/``
(override with ``SPATIALVID_BUILD_DIR``). The CUDA extension is built the same way on a machine with a GPU.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import warnings
from pathlib import Path

import torch

from spatialvid.errors import SpatialvidError
from spatialvid.render import _torch_impl as ti

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "cuda_ext"
CPU_SOURCES = ["bindings_cpu.cpp", "project_cpu.cpp", "sh_cpu.cpp", "intersect_cpu.cpp", "rasterize_cpu.cpp"]
CUDA_SOURCES = ["bindings_cuda.cpp", "project.cu", "sh.cu", "intersect.cu", "rasterize.cu"]

_lock = threading.Lock()
_cpu_ext = None
_cpu_error: str | None = None
_cuda_ext = None
_cuda_error: str | None = None


def build_dir(kind: str) -> Path:
    base = os.environ.get("SPATIALVID_BUILD_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "spatialvid"
    tag = f"torch{torch.__version__.split('+')[0]}-py{sys.version_info.major}{sys.version_info.minor}"
    d = root / f"{kind}_ext-{tag}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cxx_flags() -> list[str]:
    return ["-O3", "-fopenmp", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi"]


def build_cpu_extension(verbose: bool = False):
    """Compile (or load from cache) the C++ CPU extension and return the module.

    Raises :class:`SpatialvidError` naming what is missing when the compiler or headers are absent.
    """
    global _cpu_ext, _cpu_error
    with _lock:
        if _cpu_ext is not None:
            return _cpu_ext
        from torch.utils import cpp_extension

        cxx = os.environ.get("CXX", "c++")
        if shutil.which(cxx) is None:
            _cpu_error = (f"no C++ compiler found ({cxx!r} is not on PATH); install g++ (e.g. apt-get install "
                          "g++) or use backend='torch'")
            raise SpatialvidError(f"cannot build the CPU rasterizer: {_cpu_error}")
        try:
            import ninja  # noqa: F401
        except ImportError:
            if shutil.which("ninja") is None:
                _cpu_error = "ninja is missing (pip install ninja)"
                raise SpatialvidError(f"cannot build the CPU rasterizer: {_cpu_error}") from None
            pass
        os.environ.setdefault("PATH", "")
        ninja_bin = Path(sys.executable).parent
        if str(ninja_bin) not in os.environ["PATH"].split(os.pathsep):
            os.environ["PATH"] = str(ninja_bin) + os.pathsep + os.environ["PATH"]
        bdir = build_dir("cpu")
        sources = [str(SRC / s) for s in CPU_SOURCES]
        so_exists = any(bdir.glob("spatialvid_raster_cpu*.so"))
        if not so_exists or verbose:
            print("spatialvid: compiling the C++ rasterizer (once, ~1 min)...", file=sys.stderr, flush=True)
        try:
            ext = cpp_extension.load(
                name="spatialvid_raster_cpu", sources=sources, extra_cflags=_cxx_flags(),
                extra_ldflags=["-fopenmp"], extra_include_paths=[str(SRC)], build_directory=str(bdir),
                verbose=verbose)
        except Exception as e:  # compiler errors, missing Python headers, ...
            msg = str(e).strip().splitlines()
            hint = msg[-1] if msg else repr(e)
            if "Python.h" in str(e):
                hint = "Python development headers are missing (install python3-dev)"
            _cpu_error = hint
            raise SpatialvidError(f"cannot build the CPU rasterizer: {hint} (build dir {bdir}; "
                                  "set backend='torch' to use the slow reference)") from e
        _cpu_ext = ext
        return ext


def _try_build(build) -> bool:
    """Run ``build()`` once; on failure warn that the PyTorch reference takes over and return False."""
    try:
        build()
        return True
    except SpatialvidError as e:
        warnings.warn(f"{e}; falling back to the PyTorch reference rasterizer", stacklevel=4)
        return False


def cpu_extension_available() -> bool:
    """True if the C++ extension is (or can be) built; tries the build once and remembers a failure."""
    if _cpu_ext is not None:
        return True
    if _cpu_error is not None:
        return False
    return _try_build(build_cpu_extension)


def build_cuda_extension(verbose: bool = False):
    """Compile (or load) the CUDA extension; needs nvcc and a CUDA build of torch."""
    global _cuda_ext, _cuda_error
    with _lock:
        if _cuda_ext is not None:
            return _cuda_ext
        if not torch.cuda.is_available():
            _cuda_error = "torch reports no CUDA device"
            raise SpatialvidError("cannot build the CUDA rasterizer: torch reports no CUDA device")
        from torch.utils import cpp_extension

        bdir = build_dir("cuda")
        print("spatialvid: compiling the CUDA rasterizer (once)...", file=sys.stderr, flush=True)
        try:
            ext = cpp_extension.load(
                name="spatialvid_raster_cuda", sources=[str(SRC / s) for s in CUDA_SOURCES],
                extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=["-O3", "--use_fast_math", "-std=c++17"],
                extra_include_paths=[str(SRC)], build_directory=str(bdir), verbose=verbose)
        except Exception as e:
            _cuda_error = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            raise SpatialvidError(f"cannot build the CUDA rasterizer: {_cuda_error}") from e
        _cuda_ext = ext
        return ext


def cuda_extension_available() -> bool:
    if _cuda_ext is not None:
        return True
    if _cuda_error is not None or not torch.cuda.is_available():
        return False
    return _try_build(build_cuda_extension)


# ------------------------------------------------------------------------------------------------
# torch reference stages
# ------------------------------------------------------------------------------------------------
class TorchStages:
    """The four stages on top of :mod:`spatialvid.render._torch_impl`."""

    @staticmethod
    def project(means, quats, scales, viewmat, K, width, height, near, far, antialiased):
        return ti.project(means, quats, scales, viewmat, K, width, height, near, far, antialiased)

    @staticmethod
    def eval_sh(dirs, coeffs, degree):
        return ti.eval_sh(dirs, coeffs, degree)

    @staticmethod
    def intersect(means2d, cov2d, opacities, radii, depths, width, height):
        box, tb = ti.tile_bounds(means2d, cov2d, opacities, radii, width, height)
        nonempty = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
        radii = torch.where(nonempty, radii, torch.zeros_like(radii))
        gids, offsets = ti.intersect(tb, depths, width, height)
        return gids, offsets, radii, None

    @staticmethod
    def rasterize(means2d, conics, colors, opacities, depths, gids, offsets, aux, width, height):
        return ti.rasterize_tiles(means2d, conics, colors, opacities, depths, gids, offsets, width, height)


def cpu_stages():
    from spatialvid.render import _cpu

    build_cpu_extension()
    return _cpu.CpuStages


def cuda_stages():
    from spatialvid.render import _cpu

    build_cuda_extension()
    return _cpu.CudaStages
