"""The ``.spz`` compressed splat format (Niantic's, read by web viewers and world-generation tools).

A ``.spz`` file is one gzip stream holding a 16-byte header and then one block per attribute, each for
all N Gaussians in turn (little endian)::

    header    uint32 magic 0x5053474e ("NGSP") | uint32 version (2) | uint32 N | uint8 SH degree |
              uint8 fractional bits F | uint8 flags (0x1 = antialiased) | uint8 reserved (0)
    positions N x 3 x 24-bit signed fixed point: round(x * 2^F), low byte first
    alphas    N x uint8: round(sigmoid(opacity logit) * 255)
    colors    N x 3 uint8: round(f_dc * 0.15 * 255 + 127.5) (the degree-0 SH coefficient, scaled)
    scales    N x 3 uint8: round((log scale + 10) * 16)
    rotations N x 3 uint8: x, y, z of the unit quaternion with w >= 0, round((q + 1) * 127.5);
              w = sqrt(1 - x^2 - y^2 - z^2) on reading
    sh        N x (K-1) x 3 uint8 (coefficient-major, colour innermost), K = (degree+1)^2:
              round(c * 128 + 128), degree-1 coefficients to 5 bits (multiples of 8), higher ones to
              4 bits (multiples of 16), clamped to 0..255

Every value is clamped to its byte range. Coordinates are stored as they are (the scene's frame, like the
PLY); the ``origin``/``step`` tags are not stored (the format has no room), so a read-back scene is all
captured. ``F`` is 12 (1/4096 of a scene unit) unless a coordinate would overflow 24 bits, then as
many bits as fit.

Encoder choices (any reader decodes them as usual): the Gaussians are ordered along a Morton (Z-order)
curve of their positions, which keeps neighbours together and makes the gzip stream smaller; each
covariance is written with the one of its 24 equivalent (rotation, axis order) forms whose quaternion
has the largest ``w``, where the implied-``w`` encoding is precise; and, given viewpoints (the training
cameras), the degree-0 colour absorbs the part of the higher-order SH rounding error those viewpoints
see on average.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from spatialvid.atomic import atomic_open
from spatialvid.errors import FormatError, SpatialvidError
from spatialvid.gaussians import C0, Gaussians

MAGIC = 0x5053474E
VERSION = 2
FLAG_ANTIALIASED = 0x1
COLOR_SCALE = 0.15
DEFAULT_FRACTIONAL_BITS = 12
SH1_BITS = 5
SH_REST_BITS = 4
_HEADER = struct.Struct("<IIIBBBB")
MAX_POINTS = 50_000_000


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    """Coefficients -> uint8 ``round(x * 128 + 128)`` snapped to multiples of ``2^(8 - bits)``."""
    bucket = 1 << (8 - bits)
    q = np.round(x * 128.0 + 128.0)
    q = np.floor((q + bucket / 2) / bucket) * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def _morton_order(xyz: np.ndarray) -> np.ndarray:
    """Indices sorting points along a 3D Morton curve (10 bits per axis over their bounding box)."""
    if len(xyz) == 0:
        return np.zeros(0, np.int64)
    lo, hi = xyz.min(0), xyz.max(0)
    q = ((xyz - lo) / np.maximum(hi - lo, 1e-12) * 1023.0).astype(np.uint64)

    def spread(v: np.ndarray) -> np.ndarray:  # insert two zero bits between the 10 bits of v
        v = (v | (v << np.uint64(16))) & np.uint64(0x030000FF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x0300F00F)
        v = (v | (v << np.uint64(4))) & np.uint64(0x030C30C3)
        return (v | (v << np.uint64(2))) & np.uint64(0x09249249)

    code = spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1)) | (spread(q[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def _cube_rotations() -> tuple[np.ndarray, np.ndarray]:
    """The 24 signed permutation matrices with determinant +1: quaternions [24,4] (w,x,y,z) and, per
    matrix, the source axis of each column [24,3]."""
    import itertools

    from scipy.spatial.transform import Rotation

    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            P = np.zeros((3, 3))
            for j, i in enumerate(perm):
                P[i, j] = signs[j]
            if np.linalg.det(P) > 0:
                mats.append(P)
    P = np.stack(mats)
    q = Rotation.from_matrix(P).as_quat()[:, [3, 0, 1, 2]]
    return q, np.abs(P).argmax(1)


def canonical_rotations(quats: np.ndarray, log_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same covariances ``R S^2 R^T`` written with the rotation of largest ``|w|``: ``R' = R P`` for one
    of the 24 signed axis permutations ``P`` (the scales permuted to match), returned with ``w >= 0``.

    .spz version 2 stores x, y, z and implies w, which is precise when ``w`` is large; any of these
    equivalent forms decodes to the same Gaussian, so the encoder picks the best one."""
    q = quats / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    g, src = _cube_rotations()
    w = q[:, :1] * g[None, :, 0] - (q[:, None, 1:] * g[None, :, 1:]).sum(-1)  # [N,24] w of q * g
    k = np.abs(w).argmax(1)
    gk = g[k]
    w1, v1, w2, v2 = q[:, :1], q[:, 1:], gk[:, :1], gk[:, 1:]
    out = np.concatenate([w1 * w2 - (v1 * v2).sum(1, keepdims=True), w1 * v2 + w2 * v1 + np.cross(v1, v2)], 1)
    out = np.where(out[:, :1] < 0, -out, out)
    scales = np.take_along_axis(log_scales, src[k], axis=1)
    return out, scales


def mean_sh_basis(means: np.ndarray, centres: np.ndarray, degree: int) -> np.ndarray:
    """[N,K-1] the degree>=1 SH basis averaged over the directions from ``centres`` [C,3] to ``means``."""
    from spatialvid.render._torch_impl import sh_basis

    m = torch.from_numpy(np.asarray(means, np.float64))
    acc = torch.zeros(len(m), (degree + 1) ** 2 - 1, dtype=torch.float64)
    for c in np.asarray(centres, np.float64):
        d = m - torch.from_numpy(c)
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        acc += sh_basis(d, degree)[:, 1:]
    return (acc / max(len(centres), 1)).numpy()


def fractional_bits_for(xyz: np.ndarray, preferred: int = DEFAULT_FRACTIONAL_BITS) -> int:
    """The largest fractional-bit count <= ``preferred`` for which every coordinate fits 24 signed bits."""
    m = float(np.abs(xyz).max()) if len(xyz) else 0.0
    bits = preferred
    while bits > 0 and m * (1 << bits) >= (1 << 23) - 1:
        bits -= 1
    if m * (1 << bits) >= (1 << 23) - 1:
        raise SpatialvidError(f".spz: coordinates up to {m:g} do not fit the format's 24-bit positions")
    return bits


def pack_spz(gaussians: Gaussians, antialiased: bool = False, fractional_bits: int | None = None,
             sort: bool = True, view_centres: np.ndarray | None = None) -> bytes:
    """The uncompressed ``.spz`` payload (header + attribute blocks) of ``gaussians``.

    ``view_centres`` [C,3] (e.g. the training cameras' centres): the degree-0 colour absorbs the part of
    the higher-order SH rounding error that these viewpoints see on average (least squares), so renders
    from around them keep their colour."""
    g = gaussians.detach().to("cpu")
    n = len(g)
    if n > MAX_POINTS:
        raise SpatialvidError(f".spz: {n:,} Gaussians exceed the writer's cap of {MAX_POINTS:,}")
    xyz = g.means.double().numpy()
    order = _morton_order(xyz) if sort else np.arange(n)
    xyz = xyz[order]
    bits = fractional_bits_for(xyz) if fractional_bits is None else int(fractional_bits)
    if not 0 <= bits <= 23:
        raise SpatialvidError(f".spz: fractional bits must be in 0..23, got {bits}")
    fixed = np.round(xyz * (1 << bits)).astype(np.int64)
    if np.abs(fixed).max(initial=0) > (1 << 23) - 1:
        raise SpatialvidError(f".spz: positions overflow 24 bits with {bits} fractional bits")
    fixed &= 0xFFFFFF
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], -1).astype(np.uint8)  # [N,3,3]
    alphas = _u8(torch.sigmoid(g.opacity_logits.double()).numpy()[order] * 255.0)
    q, log_scales = canonical_rotations(g.quats.double().numpy()[order], g.log_scales.double().numpy()[order])
    scales = _u8((log_scales + 10.0) * 16.0)
    rots = _u8((q[:, 1:4] + 1.0) * 127.5)
    degree = g.sh_degree
    sh = g.shN.double().numpy()[order]  # [N, K-1, 3]: coefficient-major, colour innermost
    sh0 = g.sh0.double().numpy()[order]
    shq = np.empty(sh.shape, np.uint8)
    if sh.shape[1]:
        shq[:, :3] = _quantize_sh(sh[:, :3], SH1_BITS)
        shq[:, 3:] = _quantize_sh(sh[:, 3:], SH_REST_BITS)
        if view_centres is not None and len(view_centres):
            err = (shq.astype(np.float64) - 128.0) / 128.0 - sh  # what the reader will get, minus the truth
            basis = mean_sh_basis(xyz, view_centres, degree)  # [N,K-1]
            sh0 = sh0 - (basis[:, :, None] * err).sum(1) / C0
    colors = _u8(sh0 * (COLOR_SCALE * 255.0) + 127.5)
    header = _HEADER.pack(MAGIC, VERSION, n, degree, bits, FLAG_ANTIALIASED if antialiased else 0, 0)
    return b"".join([header, pos.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(),
                     rots.tobytes(), shq.tobytes()])


def write_spz(path: str | Path, gaussians: Gaussians, antialiased: bool = False,
              fractional_bits: int | None = None, view_centres: np.ndarray | None = None) -> Path:
    """Write ``gaussians`` as a ``.spz`` file (atomically). Lossy: see the module docstring and
    :func:`pack_spz` (``view_centres``)."""
    path = Path(path)
    payload = pack_spz(gaussians, antialiased=antialiased, fractional_bits=fractional_bits,
                       view_centres=view_centres)
    with atomic_open(path, "wb") as f:
        # mtime=0: equal scenes give byte-identical files
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as gz:
            gz.write(payload)
    return path


def unpack_spz(data: bytes, path: str | Path = "<spz>") -> tuple[Gaussians, dict]:
    """Decode an uncompressed ``.spz`` payload: ``(gaussians, header dict)``."""
    if len(data) < _HEADER.size:
        raise FormatError(path, f"truncated .spz: {len(data)} bytes, less than the 16-byte header")
    magic, version, n, degree, bits, flags, _ = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError(path, f"not a .spz file (magic 0x{magic:08x}, expected 0x{MAGIC:08x})")
    if version != VERSION:
        raise FormatError(path, f".spz version {version} is not supported (this reader reads version {VERSION})")
    if degree > 3:
        raise FormatError(path, f"SH degree {degree} in the header is not 0..3")
    if n > MAX_POINTS:
        raise FormatError(path, f"{n:,} Gaussians exceed the reader's cap of {MAX_POINTS:,}")
    k1 = (degree + 1) ** 2 - 1
    sizes = [9 * n, n, 3 * n, 3 * n, 3 * n, 3 * k1 * n]
    need = _HEADER.size + sum(sizes)
    if len(data) < need:
        raise FormatError(path, f"truncated .spz: the header announces {n} Gaussians ({need} bytes) but the "
                                f"payload has {len(data)} bytes")
    off = _HEADER.size
    blocks = []
    for s in sizes:
        blocks.append(np.frombuffer(data, np.uint8, s, off))
        off += s
    pos, alph, col, scl, rot, sh = blocks
    p = pos.reshape(n, 3, 3).astype(np.int32)
    fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)  # sign-extend 24 bits
    xyz = fixed.astype(np.float64) / (1 << bits)
    alpha = np.clip(alph.astype(np.float64) / 255.0, 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    logits = np.log(alpha / (1.0 - alpha))
    sh0 = (col.reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE
    log_scales = scl.reshape(n, 3).astype(np.float64) / 16.0 - 10.0
    v = rot.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
    w = np.sqrt(np.maximum(0.0, 1.0 - (v * v).sum(1)))
    quats = np.concatenate([w[:, None], v], 1)
    quats /= np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    shN = (sh.reshape(n, k1, 3).astype(np.float64) - 128.0) / 128.0
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    g = Gaussians.from_arrays(f32(xyz), f32(log_scales), f32(quats), f32(logits), f32(sh0), f32(shN))
    info = {"version": version, "num_points": n, "sh_degree": degree, "fractional_bits": bits,
            "antialiased": bool(flags & FLAG_ANTIALIASED)}
    return g, info


def read_spz_info(path: str | Path) -> tuple[Gaussians, dict]:
    """Read a ``.spz`` file: ``(gaussians, header dict)``; bad files raise :class:`FormatError`."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "file not found" if not path.exists() else "is not a file")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        raise FormatError(path, "not a .spz file (not gzip-compressed)")
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise FormatError(path, f"corrupted .spz (gzip: {e})") from None
    return unpack_spz(data, path)


def read_spz(path: str | Path) -> Gaussians:
    """Read a ``.spz`` file into Gaussians (float32, CPU, all tagged captured)."""
    return read_spz_info(path)[0]
