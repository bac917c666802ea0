"""Compile every CUDA source in cuda_ext/ with nvcc for sm_80 and sm_90 (object files only; needs no GPU).

Usage: python cuda_ext/check_nvcc.py [--nvcc PATH] [--arch 80 90 ...]
Exits non-zero (printing nvcc's errors) if any .cu file fails to compile. The .cu kernels include no torch
headers (the torch glue is in bindings_cuda.cpp, built by torch's extension tools on a CUDA machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def find_nvcc(explicit: str | None) -> str | None:
    for cand in (explicit, os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/bin/nvcc",
                 "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).exists():
            return cand
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nvcc", help="nvcc to use (default: $NVCC, PATH, /usr/local/bin/nvcc)")
    ap.add_argument("--arch", nargs="+", default=["80", "90"], help="SM versions (default: 80 90)")
    ap.add_argument("--sources", nargs="+", type=Path, help="compile these files instead of cuda_ext/*.cu")
    args = ap.parse_args()
    nvcc = find_nvcc(args.nvcc)
    if nvcc is None:
        print("check_nvcc: nvcc not found (set NVCC or put it on PATH)", file=sys.stderr)
        return 2
    sources = args.sources or sorted(HERE.glob("*.cu"))
    if not sources:
        print("check_nvcc: no .cu files in cuda_ext/", file=sys.stderr)
        return 2
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in args.arch]
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            cmd = [nvcc, "-std=c++17", "-O3", "--use_fast_math", "-Werror=all-warnings", *gencode, "-I", str(HERE),
                   "-c", str(src), "-o", str(Path(tmp) / (src.stem + ".o"))]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                failed.append(src.name)
                print(f"FAIL {src.name}\n{r.stdout}{r.stderr}", file=sys.stderr)
            else:
                print(f"ok   {src.name} (sm_{', sm_'.join(args.arch)})")
    if failed:
        print(f"check_nvcc: {len(failed)} of {len(sources)} CUDA sources failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"check_nvcc: all {len(sources)} CUDA sources compile with {nvcc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
