"""3D Gaussian Splatting PLY: the de-facto interchange format of 3DGS tools and viewers.

Layout written (binary little endian, one ``vertex`` element, float32 unless noted)::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{M-1} opacity scale_0 scale_1 scale_2
    rot_0 rot_1 rot_2 rot_3 origin(uchar) step(int)

Values are pre-activation (opacity logit, log scales, quaternion w x y z). ``f_rest`` is channel-major:
all red higher-order coefficients, then green, then blue; ``M = 3 * ((d+1)^2 - 1)`` for SH degree ``d``.
Normals are written as zeros. ``origin`` (0 captured, 1 generated) and ``step`` (history step id) are
spatialvid extras that other viewers ignore.

Reading accepts PLYs from other 3DGS tools: binary little/big endian or ASCII, extra properties ignored,
missing ``f_rest`` = degree 0, missing ``origin``/``step`` = captured / step 0. Quaternions whose norm is not
1 (within 1e-6) are normalised. Every problem raises :class:`~spatialvid.errors.FormatError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from numpy.lib.recfunctions import structured_to_unstructured

from spatialvid.atomic import atomic_open
from spatialvid.errors import FormatError
from spatialvid.gaussians import CAPTURED, Gaussians

# PLY scalar type names -> numpy type codes (without byte order)
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_MAX_HEADER = 1 << 20
REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def _f_rest_count(degree: int) -> int:
    return 3 * ((degree + 1) ** 2 - 1)


# ---------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------
def _float_names(num_rest: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(num_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def ply_header(num: int, num_rest: int, extras: bool = True) -> bytes:
    """The ASCII header of a 3DGS PLY with ``num`` vertices and ``num_rest`` f_rest properties."""
    lines = ["ply", "format binary_little_endian 1.0", "comment written by spatialvid", f"element vertex {num}"]
    lines += [f"property float {n}" for n in _float_names(num_rest)]
    if extras:
        lines += ["property uchar origin", "property int step"]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def gaussians_to_records(g: Gaussians, extras: bool = True) -> np.ndarray:
    """Pack Gaussians into a structured numpy array with the 3DGS PLY vertex layout."""
    g = g.detach().to("cpu")
    n = len(g)
    k1 = g.shN.shape[1]
    num_rest = 3 * k1
    names = _float_names(num_rest)
    fields = [(name, "<f4") for name in names]
    if extras:
        fields += [("origin", "u1"), ("step", "<i4")]
    dtype = np.dtype(fields)
    floats = np.zeros((n, len(names)), dtype=np.float32)
    floats[:, 0:3] = g.means.numpy()
    floats[:, 6:9] = g.sh0.numpy()
    if num_rest:
        # [N, K-1, 3] -> [N, 3, K-1] -> channel-major flat
        floats[:, 9 : 9 + num_rest] = g.shN.numpy().transpose(0, 2, 1).reshape(n, num_rest)
    o = 9 + num_rest
    floats[:, o] = g.opacity_logits.numpy().reshape(n)
    floats[:, o + 1 : o + 4] = g.log_scales.numpy()
    floats[:, o + 4 : o + 8] = g.quats.numpy()
    rec = np.empty(n, dtype=dtype)
    raw = rec.view(np.uint8).reshape(n, dtype.itemsize)
    nf = 4 * len(names)
    raw[:, :nf] = floats.astype("<f4").view(np.uint8).reshape(n, nf)
    if extras:
        rec["origin"] = g.origin.numpy().astype(np.uint8)
        rec["step"] = g.step.numpy().astype(np.int32)
    return rec


def write_ply(path: str | Path, gaussians: Gaussians, extras: bool = True) -> Path:
    """Write ``gaussians`` as a standard 3DGS PLY (atomically). ``extras=False`` omits origin/step."""
    path = Path(path)
    rec = gaussians_to_records(gaussians, extras=extras)
    header = ply_header(len(rec), 3 * gaussians.shN.shape[1], extras=extras)
    with atomic_open(path, "wb") as f:
        f.write(header)
        f.write(rec.tobytes())
    return path


# ---------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------
def _parse_header(path: Path, head: bytes):
    """Return (format, elements, header_length); elements = [(name, count, [(prop, type|None)])]."""
    if not head.startswith(b"ply"):
        raise FormatError(path, "not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise FormatError(path, "corrupted PLY header (no 'end_header' line)")
    nl = head.find(b"\n", end)
    if nl < 0:
        raise FormatError(path, "truncated PLY header (nothing after 'end_header')")
    header_len = nl + 1
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(path, "corrupted PLY header (non-ASCII bytes)") from None
    fmt = None
    elements: list = []
    for lineno, line in enumerate(text.replace("\r", "").split("\n")[1:], start=2):
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            if len(parts) < 2 or parts[1] not in ("binary_little_endian", "binary_big_endian", "ascii"):
                raise FormatError(path, f"unsupported PLY format line {lineno}: {line!r}")
            fmt = parts[1]
        elif parts[0] == "element":
            if len(parts) != 3 or not re.fullmatch(r"\d+", parts[2]):
                raise FormatError(path, f"corrupted PLY header line {lineno}: {line!r}")
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise FormatError(path, f"corrupted PLY header line {lineno}: property before any element")
            if len(parts) == 5 and parts[1] == "list":
                elements[-1][2].append((parts[4], None))
            elif len(parts) == 3 and parts[1] in _PLY_TYPES:
                elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
            else:
                raise FormatError(path, f"corrupted PLY header line {lineno}: {line!r}")
        else:
            raise FormatError(path, f"corrupted PLY header line {lineno}: {line!r}")
    if fmt is None:
        raise FormatError(path, "corrupted PLY header (no 'format' line)")
    return fmt, elements, header_len


def _read_vertex_records(path: Path) -> np.ndarray:
    if not path.exists():
        raise FormatError(path, "file not found")
    if path.is_dir():
        raise FormatError(path, "is a folder, expected a .ply file")
    size = path.stat().st_size
    if size == 0:
        raise FormatError(path, "empty file (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(min(size, _MAX_HEADER))
        fmt, elements, header_len = _parse_header(path, head)
        names = [e[0] for e in elements]
        if "vertex" not in names:
            if "chunk" in names:
                raise FormatError(path, "compressed PLY (SuperSplat 'chunk' layout) is not supported; "
                                        "decompress it to a standard 3DGS PLY first")
            raise FormatError(path, "no 'vertex' element: not a Gaussian-splat PLY")
        if fmt == "ascii":
            return _read_ascii(path)
        bo = "<" if fmt == "binary_little_endian" else ">"
        offset = header_len
        for k, (name, count, props) in enumerate(elements):
            if any(t is None for _, t in props):
                raise FormatError(path, f"element '{name}' has list properties: not a Gaussian-splat PLY")
            dtype = np.dtype([(p, bo + t) for p, t in props])
            if name == "vertex":
                vdtype, vcount, last = dtype, count, k == len(elements) - 1
                break
            offset += count * dtype.itemsize
        need = offset + vcount * vdtype.itemsize
        if size < need:
            raise FormatError(path, f"truncated PLY: the header announces {vcount} vertices "
                                    f"({need} bytes) but the file has {size} bytes")
        if last and size > need:  # more data than the header declares: the vertex count is wrong
            extra = size - need
            raise FormatError(path, f"the header announces {vcount} vertices ({need} bytes) but the file has "
                                    f"{extra} bytes more ({extra / vdtype.itemsize:.1f} vertices): wrong vertex count")
        f.seek(offset)
        buf = f.read(vcount * vdtype.itemsize)
    if len(buf) != vcount * vdtype.itemsize:
        raise FormatError(path, "truncated PLY (short read)")
    return np.frombuffer(buf, dtype=vdtype, count=vcount)


def _read_ascii(path: Path) -> np.ndarray:
    try:
        from plyfile import PlyData

        return PlyData.read(str(path))["vertex"].data
    except Exception as e:  # plyfile raises several types for bad ASCII files
        raise FormatError(path, f"corrupted ASCII PLY ({e})") from None


def read_ply(path: str | Path, max_gaussians: int | None = None) -> Gaussians:
    """Read a 3DGS PLY (ours or another tool's) into :class:`Gaussians` (float32, CPU)."""
    path = Path(path)
    rec = _read_vertex_records(path)
    props = set(rec.dtype.names or ())
    missing = [p for p in REQUIRED if p not in props]
    if missing:
        raise FormatError(path, f"missing required vertex properties: {', '.join(missing)} "
                                "(not a 3D Gaussian Splatting PLY?)")
    n = len(rec)
    if max_gaussians is not None and n > max_gaussians:
        raise FormatError(path, f"{n:,} Gaussians exceed the cap of {max_gaussians:,}")
    rest = sorted((p for p in props if p.startswith("f_rest_")), key=lambda p: int(p[7:]) if p[7:].isdigit() else -1)
    m = len(rest)
    degree = next((d for d in range(4) if _f_rest_count(d) == m), None)
    if degree is None:
        raise FormatError(path, f"wrong SH count: {m} f_rest properties, expected 0, 9, 24 or 45 "
                                "(3 * ((degree+1)^2 - 1) for degree 0..3)")
    if rest != [f"f_rest_{i}" for i in range(m)]:
        raise FormatError(path, "f_rest properties are not numbered f_rest_0 .. f_rest_{m-1}")

    # one pass over the records (much faster than copying field by field)
    cols = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", *rest, "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
    mat = structured_to_unstructured(rec[cols], dtype=np.float32, copy=True)
    means = np.ascontiguousarray(mat[:, 0:3])
    sh0 = np.ascontiguousarray(mat[:, 3:6])
    fr = np.ascontiguousarray(mat[:, 6 : 6 + m])
    opac = np.ascontiguousarray(mat[:, 6 + m])
    scales = np.ascontiguousarray(mat[:, 7 + m : 10 + m])
    quats = np.ascontiguousarray(mat[:, 10 + m : 14 + m])
    del mat
    for label, arr in (("x/y/z", means), ("f_dc", sh0), ("f_rest", fr), ("opacity", opac),
                       ("scale", scales), ("rot", quats)):
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = int(bad.reshape(n, -1).any(1).sum())
            raise FormatError(path, f"NaN/Inf values in {label} ({rows} of {n} Gaussians)")
    norm = np.linalg.norm(quats.astype(np.float64), axis=1)
    if (norm < 1e-12).any():
        raise FormatError(path, f"{int((norm < 1e-12).sum())} Gaussians have a zero quaternion (rot_0..3)")
    off = np.abs(norm - 1.0) > 1e-6
    if off.any():
        quats[off] = (quats[off] / norm[off, None]).astype(np.float32)
    k1 = m // 3
    shN = np.ascontiguousarray(fr.reshape(n, 3, k1).transpose(0, 2, 1))
    origin = rec["origin"].astype(np.uint8) if "origin" in props else np.full(n, CAPTURED, np.uint8)
    step = rec["step"].astype(np.int32) if "step" in props else np.zeros(n, np.int32)
    if (origin > 1).any():
        raise FormatError(path, f"'origin' must be 0 (captured) or 1 (generated); found {int(origin.max())}")
    return Gaussians(
        means=torch.from_numpy(means), log_scales=torch.from_numpy(scales), quats=torch.from_numpy(quats),
        opacity_logits=torch.from_numpy(opac), sh0=torch.from_numpy(sh0), shN=torch.from_numpy(shN),
        origin=torch.from_numpy(origin.copy()), step=torch.from_numpy(step.copy()))
