"""Compile the CUDA extension's sources: every .cu in cuda_ext/ (nvcc, sm_80 and sm_90 object files) and the
torch glue bindings_cuda.cpp (needs no GPU). This is what `make cuda-check` runs.

Usage: python cuda_ext/check_nvcc.py [--nvcc PATH] [--arch 80 90 ...] [--sources F.cu ...] [--no-bindings]

bindings_cuda.cpp is compiled in one of two ways, and the output says which:

* torch built with CUDA (``torch.version.cuda`` set): the whole extension (the .cu files and the bindings,
  linked into a module) is built with ``torch.utils.cpp_extension.load``, exactly as spatialvid builds it at
  run time, and then imported (importing needs no GPU);
* a CPU-only torch: the bindings are compiled to an object file (``c++ -c -Wall -Werror``) against this torch's
  headers, the Python headers and the CUDA toolkit's headers (``-I$CUDA_HOME/include``, found from nvcc), and
  ``nm`` checks that every kernel launcher they call is defined, with the same signature, in the nvcc objects.
  CPU wheels lack the one generated header ``c10/cuda/impl/cuda_cmake_macros.h``; a stand-in with its single
  macro is written to a temporary folder for this check only. Linking the module needs a CUDA torch, so this
  mode does not link.

Exits non-zero (printing the compiler's errors) if any source fails. ``--sources`` checks only the given .cu
files (and skips the bindings unless ``--bindings``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BINDINGS = HERE / "bindings_cuda.cpp"
CUDA_SOURCES = ["bindings_cuda.cpp", "project.cu", "sh.cu", "intersect.cu", "rasterize.cu"]
CMAKE_MACROS = "#pragma once\n// stand-in for the header CUDA builds of torch generate (check_nvcc.py)\n" \
               "#define C10_CUDA_BUILD_SHARED_LIBS\n"


def find_nvcc(explicit: str | None) -> str | None:
    for cand in (explicit, os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/bin/nvcc",
                 "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).exists():
            return cand
    return None


def cuda_home(nvcc: str) -> Path | None:
    """$CUDA_HOME, else the toolkit that holds cuda_runtime.h next to nvcc (symlinks followed)."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), str(Path(nvcc).resolve().parents[1]),
             str(Path(nvcc).parents[1]), "/usr/local/cuda"]
    for c in cands:
        if c and (Path(c) / "include" / "cuda_runtime.h").exists():
            return Path(c)
    return None


def check_cu(nvcc: str, sources: list[Path], arch: list[str], tmp: str) -> list[str]:
    """nvcc -c every source into ``tmp``; returns the names that failed."""
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in arch]
    failed = []
    for src in sources:
        cmd = [nvcc, "-std=c++17", "-O3", "--use_fast_math", "-Werror=all-warnings", *gencode, "-I", str(HERE),
               "-c", str(src), "-o", str(Path(tmp) / (src.stem + ".o"))]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            failed.append(src.name)
            print(f"FAIL {src.name}\n{r.stdout}{r.stderr}", file=sys.stderr)
        else:
            print(f"ok   {src.name} (nvcc, sm_{', sm_'.join(arch)})", flush=True)
    return failed


def check_full_build(nvcc: str, arch: list[str]) -> bool:
    """CUDA torch: build and import the whole extension with torch's extension tools."""
    import torch
    from torch.utils import cpp_extension

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", ";".join(f"{a[:-1]}.{a[-1]}" for a in arch))
    home = cuda_home(nvcc)
    if home is not None:
        os.environ.setdefault("CUDA_HOME", str(home))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ext = cpp_extension.load(
                name="spatialvid_raster_cuda_check", sources=[str(HERE / s) for s in CUDA_SOURCES],
                extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=["-O3", "--use_fast_math", "-std=c++17"],
                extra_include_paths=[str(HERE)], build_directory=tmp, verbose=False)
        except Exception as e:  # compiler errors
            print(f"FAIL bindings_cuda.cpp + *.cu (torch.utils.cpp_extension, torch {torch.__version__}, CUDA "
                  f"{torch.version.cuda})\n{e}", file=sys.stderr)
            return False
    names = [n for n in ("project_fwd", "project_bwd", "sh_fwd", "sh_bwd", "intersect", "raster_fwd", "raster_bwd")
             if not hasattr(ext, n)]
    if names:
        print(f"FAIL the built extension lacks {', '.join(names)}", file=sys.stderr)
        return False
    print(f"ok   bindings_cuda.cpp + *.cu: whole extension built and imported with torch.utils.cpp_extension "
          f"(torch {torch.__version__}, CUDA {torch.version.cuda}, {time.perf_counter() - t0:.0f} s)")
    return True


def _symbols(obj: Path, defined: bool) -> set[str]:
    """Mangled names of the gs_cuda:: functions ``obj`` defines (or needs)."""
    flag = "--defined-only" if defined else "--undefined-only"
    r = subprocess.run(["nm", flag, str(obj)], capture_output=True, text=True)
    return {line.split()[-1] for line in r.stdout.splitlines() if "7gs_cuda" in line}


def _demangle(names: list[str]) -> list[str]:
    if shutil.which("c++filt") is None:
        return names
    return subprocess.run(["c++filt", *names], capture_output=True, text=True).stdout.splitlines() or names


def check_bindings_compile(nvcc: str, cu_objects: list[Path]) -> bool:
    """CPU torch: compile bindings_cuda.cpp (``c++ -c``) with torch + Python + CUDA headers, then check that every
    kernel launcher it calls is defined, with the same signature, in the nvcc objects (``nm``)."""
    import torch
    from torch.utils import cpp_extension

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        print(f"FAIL bindings_cuda.cpp: no C++ compiler ({cxx!r} not on PATH)", file=sys.stderr)
        return False
    home = cuda_home(nvcc)
    if home is None:
        print("FAIL bindings_cuda.cpp: CUDA headers (cuda_runtime.h) not found; set CUDA_HOME", file=sys.stderr)
        return False
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        shim = Path(tmp) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        torch_inc = [Path(p) for p in cpp_extension.include_paths()]
        have_macros = any((p / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists() for p in torch_inc)
        if not have_macros:
            shim.parent.mkdir(parents=True)
            shim.write_text(CMAKE_MACROS)
        abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True))
        obj = Path(tmp) / "bindings_cuda.o"
        cmd = [cxx, "-std=c++17", "-c", "-O0", "-fPIC", "-Wall", "-Werror", "-DTORCH_EXTENSION_NAME=spatialvid_raster_cuda",
               "-DTORCH_API_INCLUDE_EXTENSION_H", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
        for p in torch_inc:
            cmd += ["-isystem", str(p)]
        cmd += ["-isystem", sysconfig.get_paths()["include"], "-isystem", tmp, "-isystem", str(home / "include"),
                "-I", str(HERE), str(BINDINGS), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL bindings_cuda.cpp (c++ -c)\n{' '.join(cmd)}\n{r.stdout}{r.stderr}", file=sys.stderr)
            return False
        need = _symbols(obj, defined=False)
        have: set[str] = set()
        for o in cu_objects:
            have |= _symbols(o, defined=True)
    missing = sorted(need - have)
    if shutil.which("nm") is None:
        missing, checked = [], "nm not found: launcher signatures not checked"
    else:
        checked = f"all {len(need)} kernel launchers it calls are defined in the nvcc objects (nm)"
    if missing:
        print("FAIL bindings_cuda.cpp calls launchers no .cu defines (signature mismatch?):\n  "
              + "\n  ".join(_demangle(missing)),
              file=sys.stderr)
        return False
    how = "" if have_macros else " + a stand-in c10/cuda/impl/cuda_cmake_macros.h"
    print(f"ok   bindings_cuda.cpp: compiled with {cxx} -c -Wall -Werror against the CPU torch {torch.__version__} "
          f"headers{how}, Python headers and -I{home / 'include'}; {checked} "
          f"({time.perf_counter() - t0:.0f} s; not linked into a module: that needs a CUDA build of torch)")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nvcc", help="nvcc to use (default: $NVCC, PATH, /usr/local/bin/nvcc)")
    ap.add_argument("--arch", nargs="+", default=["80", "90"], help="SM versions (default: 80 90)")
    ap.add_argument("--sources", nargs="+", type=Path, help="compile these .cu files instead of cuda_ext/*.cu")
    ap.add_argument("--bindings", action="store_true", help="with --sources: also check bindings_cuda.cpp")
    ap.add_argument("--no-bindings", action="store_true", help="only the .cu files")
    args = ap.parse_args()
    nvcc = find_nvcc(args.nvcc)
    if nvcc is None:
        print("check_nvcc: nvcc not found (set NVCC or put it on PATH)", file=sys.stderr)
        return 2
    sources = args.sources or sorted(HERE.glob("*.cu"))
    if not sources:
        print("check_nvcc: no .cu files in cuda_ext/", file=sys.stderr)
        return 2
    do_bindings = not args.no_bindings and (args.sources is None or args.bindings)
    n_total = len(sources)
    with tempfile.TemporaryDirectory() as tmp:
        failed = check_cu(nvcc, sources, args.arch, tmp)
        if do_bindings:
            n_total += 1
            import torch

            if torch.version.cuda is not None:
                ok = check_full_build(nvcc, args.arch)
            else:
                print(f"check_nvcc: torch {torch.__version__} has no CUDA: bindings_cuda.cpp is compiled (not linked) "
                      "against its headers plus the CUDA toolkit's (see --help)", flush=True)
                ok = check_bindings_compile(nvcc, [Path(tmp) / (s.stem + ".o") for s in sources])
            if not ok:
                failed.append(BINDINGS.name)
    if failed:
        print(f"check_nvcc: {len(failed)} of {n_total} CUDA sources failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    what = f"all {len(sources)} .cu sources" + (" and bindings_cuda.cpp" if do_bindings else "")
    print(f"check_nvcc: {what} compile with {nvcc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
