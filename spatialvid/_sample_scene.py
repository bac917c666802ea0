"""The analytic ground-truth scene of the bundled synthetic sample (see :mod:`spatialvid.sample`).

A closed room (floor, four walls, ceiling) with textured boxes and spheres, ray cast exactly in numpy.
World axes: z up, metres. Cameras use OpenCV axes (x right, y down, z forward); ray directions are scaled
so that the ray parameter ``t`` *is* the camera z-depth.

Shading is Lambertian from one fixed directional light plus ambient, so colours do not depend on the
viewpoint (a 3D Gaussian scene with SH degree 0 can represent it exactly). Textures are solid (3D)
procedural textures: multi-octave value noise plus two scales of randomly placed, randomly coloured
dots, deterministic from the seed and rich enough for SIFT matching.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass, field

import numpy as np

LIGHT_DIR = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
AMBIENT = 0.45
TABLE_BITS = 16
EPS = 1e-6


@dataclass(frozen=True)
class Box:
    """A box standing upright, rotated by ``yaw_deg`` about the world z axis."""

    name: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # full extents along the local x, y, z axes (m)
    yaw_deg: float
    material: int
    hidden: bool = False

    @property
    def rot(self) -> np.ndarray:
        """Local-to-world rotation (3x3)."""
        a = np.radians(self.yaw_deg)
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Sphere:
    name: str
    center: tuple[float, float, float]
    radius: float
    material: int
    hidden: bool = False


@dataclass(frozen=True)
class Material:
    """Two base colours mixed by noise, overlaid with randomly coloured dots at two cell sizes (m)."""

    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    noise_freq: float  # base frequency of the mixing noise (cycles per metre)
    dot_cells: tuple[float, float]
    dot_prob: float
    salt: int


ROOM_LO = (-3.2, -3.2, 0.0)
ROOM_HI = (3.2, 3.2, 2.8)
# Primitive ids of the room faces (the hit id of every ray that misses all objects).
FLOOR, CEILING, WALL_XN, WALL_XP, WALL_YN, WALL_YP = range(6)
ROOM_NAMES = ["floor", "ceiling", "wall_-x", "wall_+x", "wall_-y", "wall_+y"]
SCENE_CENTER = (0.0, 0.0, 0.4)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _materials() -> list[Material]:
    """Fixed palette (the seed changes the noise and the dots, not the look of each material)."""
    spec = [  # (hue a, hue b, sat, val a, val b, noise freq, dot cells, dot prob)
        (0.08, 0.11, 0.45, 0.55, 0.80, 1.6, (0.30, 0.11), 0.55),  # 0 floor: warm wood/stone
        (0.60, 0.58, 0.10, 0.80, 0.92, 1.0, (0.45, 0.20), 0.35),  # 1 ceiling: pale
        (0.55, 0.50, 0.30, 0.55, 0.78, 1.2, (0.35, 0.14), 0.50),  # 2 walls: blue-grey
        (0.00, 0.04, 0.65, 0.50, 0.80, 3.0, (0.16, 0.07), 0.60),  # 3 red box
        (0.33, 0.28, 0.55, 0.40, 0.70, 3.0, (0.16, 0.07), 0.60),  # 4 green box
        (0.13, 0.16, 0.70, 0.65, 0.90, 3.5, (0.14, 0.06), 0.60),  # 5 yellow sphere
        (0.72, 0.66, 0.50, 0.45, 0.75, 4.0, (0.12, 0.05), 0.60),  # 6 violet sphere
        (0.50, 0.47, 0.55, 0.40, 0.70, 2.5, (0.20, 0.08), 0.60),  # 7 teal cabinet
        (0.92, 0.97, 0.70, 0.50, 0.85, 3.5, (0.14, 0.06), 0.65),  # 8 magenta hidden box
        (0.18, 0.25, 0.80, 0.55, 0.90, 4.0, (0.12, 0.05), 0.65),  # 9 lime hidden sphere
    ]
    out = []
    for i, (ha, hb, s, va, vb, f, cells, p) in enumerate(spec):
        out.append(Material(_hsv(ha, s, va), _hsv(hb, s * 0.8, vb), f, cells, p, salt=101 + 37 * i))
    return out


@dataclass
class SceneDef:
    """Primitives of the sample scene. Primitive id = index into :attr:`prim_names`."""

    seed: int
    hidden_region: bool
    boxes: list[Box]
    spheres: list[Sphere]
    materials: list[Material] = field(default_factory=_materials)
    table: np.ndarray = None  # type: ignore[assignment]  # [2**TABLE_BITS, 8] random values in [0,1)

    def __post_init__(self) -> None:
        if self.table is None:
            self.table = np.random.default_rng(self.seed).random((1 << TABLE_BITS, 8))
        self.noise_table = np.ascontiguousarray(self.table[:, :2], dtype=np.float32)

    @property
    def objects(self) -> list[Box | Sphere]:
        return [*self.boxes, *self.spheres]

    @property
    def prim_names(self) -> list[str]:
        return ROOM_NAMES + [o.name for o in self.objects]

    def prim_material(self) -> np.ndarray:
        room = [0, 1, 2, 2, 2, 2]
        return np.array(room + [o.material for o in self.objects], dtype=np.int64)

    def hidden_ids(self) -> list[int]:
        return [len(ROOM_NAMES) + i for i, o in enumerate(self.objects) if o.hidden]

    def objects_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (lo, hi) of all objects (not the room), metres."""
        lo, hi = [], []
        for o in self.objects:
            if isinstance(o, Sphere):
                c = np.array(o.center)
                lo.append(c - o.radius)
                hi.append(c + o.radius)
            else:
                corners = _box_corners(o)
                lo.append(corners.min(0))
                hi.append(corners.max(0))
        return np.min(lo, 0), np.max(hi, 0)

    def describe(self) -> list[dict]:
        out = []
        for i, o in enumerate(self.objects):
            d = {"id": len(ROOM_NAMES) + i, "name": o.name, "hidden": o.hidden, "center": list(o.center)}
            if isinstance(o, Sphere):
                d.update(type="sphere", radius=o.radius)
            else:
                d.update(type="box", size=list(o.size), yaw_deg=o.yaw_deg)
            out.append(d)
        return out


def build_scene(seed: int = 0, hidden_region: bool = False) -> SceneDef:
    """The fixed layout; ``hidden_region`` adds two objects behind the cabinet that the video never sees."""
    boxes = [
        Box("cabinet", (0.0, 1.25, 0.675), (2.4, 0.35, 1.35), 0.0, 7),
        Box("red_box", (-0.75, -0.25, 0.25), (0.6, 0.5, 0.5), 25.0, 3),
        Box("green_tower", (0.8, 0.3, 0.45), (0.4, 0.4, 0.9), -15.0, 4),
    ]
    spheres = [
        Sphere("yellow_ball", (0.2, -0.6, 0.3), 0.3, 5),
        Sphere("violet_ball", (-0.75, -0.25, 0.72), 0.22, 6),
    ]
    if hidden_region:
        boxes.append(Box("hidden_box", (0.4, 2.1, 0.25), (0.5, 0.4, 0.5), 20.0, 8, hidden=True))
        spheres.append(Sphere("hidden_ball", (-0.4, 2.0, 0.27), 0.27, 9, hidden=True))
    return SceneDef(seed=seed, hidden_region=hidden_region, boxes=boxes, spheres=spheres)


def _box_corners(b: Box) -> np.ndarray:
    h = np.array(b.size) / 2
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    return (signs * h) @ b.rot.T + np.array(b.center)


# ---------------------------------------------------------------------------------------------------
# Ray casting
# ---------------------------------------------------------------------------------------------------
def mat3(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for points x [...,3] and a 3x3 matrix m."""
    return x @ m


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def cast_rays(scene: SceneDef, origins: np.ndarray, dirs: np.ndarray, candidates: list | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of rays ``origins + t * dirs`` (dirs [M,3]; origins [M,3] or one origin [3]).

    ``candidates`` (optional, one per object): indices of the only rays that may hit that object (a
    conservative screen-space bound), or None for all rays.

    Returns ``t`` [M] (in units of ``|dirs|``), primitive id [M] int32, and unit normal [M,3] facing the ray.
    Origins must lie inside the room, so every ray hits something.
    """
    d = _safe(np.asarray(dirs, dtype=np.float64))
    o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)  # [1,3] or [M,3]
    m = d.shape[0]
    rows = np.arange(m)
    lo, hi = np.array(ROOM_LO), np.array(ROOM_HI)
    # room from the inside: the exit distance of its box
    positive3 = d > 0
    t_axis = (np.where(positive3, hi, lo) - o) / d  # [M,3]
    axis = np.argmin(t_axis, axis=1)
    t = t_axis[rows, axis]
    positive = positive3[rows, axis]
    room_ids = np.array([[WALL_XN, WALL_XP], [WALL_YN, WALL_YP], [FLOOR, CEILING]], dtype=np.int32)
    prim = room_ids[axis, positive.astype(np.int64)]
    normal = np.zeros((m, 3))
    normal[rows, axis] = np.where(positive, -1.0, 1.0)
    for j, obj in enumerate(scene.objects):
        idx = None if candidates is None else candidates[j]
        if idx is not None and len(idx) == 0:
            continue
        dj = d if idx is None else d[idx]
        oj = o if (idx is None or o.shape[0] == 1) else o[idx]
        tj = t if idx is None else t[idx]
        if isinstance(obj, Box):
            th, nrm = _hit_box(obj, oj, dj)
        else:
            th, nrm = _hit_sphere(obj, oj, dj)
        hit = th < tj
        if hit.any():
            where = np.flatnonzero(hit) if idx is None else idx[hit]
            t[where] = th[hit]
            prim[where] = len(ROOM_NAMES) + j
            normal[where] = nrm(hit)
    return t, prim.astype(np.int32), normal


def _hit_box(b: Box, o: np.ndarray, d: np.ndarray):
    """Entry distance [M] (inf on a miss) and a function mask -> unit normals of the hit rays."""
    rot = b.rot
    ol = mat3(o - np.array(b.center), rot)  # world -> local (rot^T applied on the right)
    dl = _safe(mat3(d, rot))
    half = np.array(b.size) / 2
    inv = 1.0 / dl
    t1 = (-half - ol) * inv
    t2 = (half - ol) * inv
    tmin = np.minimum(t1, t2)
    tnear = tmin.max(1)
    tfar = np.maximum(t1, t2).min(1)
    th = np.where((tnear <= tfar) & (tnear > EPS), tnear, np.inf)

    def normals(hit):
        ax = np.argmax(tmin[hit], 1)
        k = np.arange(len(ax))
        nl = np.zeros((len(ax), 3))
        nl[k, ax] = -np.sign(dl[hit][k, ax])
        return mat3(nl, rot.T)

    return th, normals


def _hit_sphere(s: Sphere, o: np.ndarray, d: np.ndarray):
    c = np.array(s.center)
    oc = o - c
    dd = (d * d).sum(1)
    bq = (d * oc).sum(1)
    cq = (oc * oc).sum(1) - s.radius**2
    disc = bq * bq - dd * cq
    ok = disc >= 0
    th = np.full(len(d), np.inf)
    th[ok] = (-bq[ok] - np.sqrt(disc[ok])) / dd[ok]
    th[th <= EPS] = np.inf

    def normals(hit):
        oh = o[hit] if o.shape[0] == len(d) else o
        return (oh + th[hit, None] * d[hit] - c) / s.radius

    return th, normals


def _object_corners(obj: Box | Sphere) -> np.ndarray:
    if isinstance(obj, Box):
        return _box_corners(obj)
    c, r = np.array(obj.center), obj.radius
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    return c + r * signs


def screen_candidates(scene: SceneDef, c2w: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                      width: int, height: int) -> list:
    """Per object: flat pixel indices inside its projected bounding box (None = test every pixel)."""
    out = []
    for obj in scene.objects:
        pc = (_object_corners(obj) - c2w[:3, 3]) @ c2w[:3, :3]
        if (pc[:, 2] < 0.05).any():
            out.append(None)
            continue
        u = fx * pc[:, 0] / pc[:, 2] + cx
        v = fy * pc[:, 1] / pc[:, 2] + cy
        u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 1, width)
        v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 1, height)
        if u0 >= u1 or v0 >= v1:
            out.append(np.zeros(0, dtype=np.int64))
            continue
        vv, uu = np.meshgrid(np.arange(v0, v1), np.arange(u0, u1), indexing="ij")
        out.append((vv * width + uu).ravel())
    return out


def inside_solids(scene: SceneDef, points: np.ndarray, prim: np.ndarray | None = None,
                  margin: float = 1e-3) -> np.ndarray:
    """[P] bool: the point lies inside an object other than its own primitive ``prim`` [P].

    Boxes are grown and spheres shrunk by ``margin``, so floor points under a box count as inside.
    """
    out = np.zeros(len(points), dtype=bool)
    own = np.full(len(points), -1) if prim is None else prim
    pid = len(ROOM_NAMES)
    for b in scene.boxes:
        pl = mat3(points - np.array(b.center), b.rot)
        out |= ((np.abs(pl) - (np.array(b.size) / 2 + margin)).max(1) < 0) & (own != pid)
        pid += 1
    for s in scene.spheres:
        out |= (np.linalg.norm(points - np.array(s.center), axis=1) < s.radius - margin) & (own != pid)
        pid += 1
    return out


# ---------------------------------------------------------------------------------------------------
# Textures and shading
# ---------------------------------------------------------------------------------------------------
_P1, _P2, _P3, _P4 = (np.uint64(x) for x in (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                            0xD6E8FEB86659FD93))


def _rot_xyz(a: float, b: float, c: float) -> np.ndarray:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


# Texture lattices are rotated so that no lattice plane lines up with the axis-aligned faces of the scene.
_LATTICE_ROT = _rot_xyz(0.61, -0.43, 0.29)


def _mix(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(29))
        h = h * _P2
        h ^= h >> np.uint64(32)
    return (h & np.uint64((1 << TABLE_BITS) - 1)).astype(np.int64)


def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, salt: int) -> np.ndarray:
    """Integer lattice coordinates -> row index into the random table (deterministic, non-periodic)."""
    with np.errstate(over="ignore"):
        h = (ix.astype(np.uint64) * _P1) ^ (iy.astype(np.uint64) * _P2) ^ (
            iz.astype(np.uint64) * _P3 ^ np.uint64(salt) * _P4)
    return _mix(h)


def _value_noise(table: np.ndarray, p: np.ndarray, salt: int) -> np.ndarray:
    """Smooth value noise in [0,1] at points p [M,3] (lattice spacing 1): [M,C] float32 for a table [N,C]."""
    i = np.floor(p)
    f = (p - i).astype(np.float32)
    w = f * f * (3 - 2 * f)
    w1 = 1 - w
    i = i.astype(np.int64).astype(np.uint64)
    one = np.uint64(1)
    with np.errstate(over="ignore"):
        s4 = np.uint64(salt) * _P4
        hx = (i[:, 0] * _P1, (i[:, 0] + one) * _P1)
        hy = (i[:, 1] * _P2, (i[:, 1] + one) * _P2)
        hz = (i[:, 2] * _P3 ^ s4, (i[:, 2] + one) * _P3 ^ s4)
    out = 0.0
    for dx in (0, 1):
        wx = w[:, 0] if dx else w1[:, 0]
        for dy in (0, 1):
            wxy = wx * (w[:, 1] if dy else w1[:, 1])
            hxy = hx[dx] ^ hy[dy]
            for dz in (0, 1):
                wz = wxy * (w[:, 2] if dz else w1[:, 2])
                out = out + wz[:, None] * table[_mix(hxy ^ hz[dz])]
    return out


def _fbm(table: np.ndarray, p: np.ndarray, freq: float, octaves: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Two fractal noises in [0,1] from the same lattice: a smooth one (octaves 0..2) and a fine one (2..3)."""
    low, high, amp, nlow, nhigh = 0.0, 0.0, 1.0, 0.0, 0.0
    q = mat3(p, _LATTICE_ROT)
    for k in range(octaves):
        offset = np.array([17.13, 31.7, 5.91]) * (k + 1)
        v = _value_noise(table, q * freq + offset, salt + 7 * k)
        if k <= 2:
            low, nlow = low + amp * v[:, 0], nlow + amp
        if k >= 2:
            high, nhigh = high + v[:, 1], nhigh + 1
        amp *= 0.55
        freq *= 2.07
    return low / nlow, high / nhigh


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    u = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _dots(table: np.ndarray, p: np.ndarray, cell: float, prob: float, salt: int):
    """Randomly placed, randomly coloured balls, one per lattice cell at most (solid texture).

    Returns (alpha [M], rgb [M,3]). Edges are soft over ~1.2 cm so renders at 320x240 do not alias badly.
    """
    q = mat3(p, _LATTICE_ROT) / cell + np.array([0.37, 0.61, 0.53])  # lattice oblique to the flat faces
    i = np.floor(q)
    f = q - i
    i = i.astype(np.int64)
    r = table[_hash(i[:, 0], i[:, 1], i[:, 2], salt)]  # [M,8]
    radius = 0.18 + 0.2 * r[:, 1]
    centre = radius[:, None] + (1 - 2 * radius[:, None]) * r[:, 2:5]
    dist = np.linalg.norm(f - centre, axis=1)
    soft = max(0.012 / cell, 0.06)
    alpha = (r[:, 0] < prob) * _smoothstep(0.0, soft, radius - dist)
    # colour: any hue, strong saturation, light or dark -> high local contrast
    h, s, v = r[:, 5], 0.45 + 0.55 * r[:, 6], np.where(r[:, 7] < 0.5, 0.12 + 0.3 * r[:, 7], 0.55 + 0.45 * r[:, 7])
    rgb = _hsv_to_rgb(h, s, v)
    return alpha, rgb


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    h6 = (h % 1.0) * 6.0
    k = np.stack([(5 + h6) % 6, (3 + h6) % 6, (1 + h6) % 6], 1)
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def texture(scene: SceneDef, points: np.ndarray, material: np.ndarray) -> np.ndarray:
    """Albedo [M,3] in 0..1 of world points [M,3] with material ids [M]."""
    out = np.zeros((len(points), 3))
    for mid in np.unique(material):
        sel = material == mid
        p = points[sel]
        mat = scene.materials[int(mid)]
        n1, n2 = _fbm(scene.noise_table, p, mat.noise_freq, 4, mat.salt)
        mix = _smoothstep(0.3, 0.7, n1)[:, None]
        base = (1 - mix) * np.array(mat.color_a) + mix * np.array(mat.color_b)
        base = base * (0.8 + 0.4 * n2)[:, None]
        for j, cell in enumerate(mat.dot_cells):
            a, rgb = _dots(scene.table, p, cell, mat.dot_prob, mat.salt + 11 + j)
            base = base * (1 - a[:, None]) + rgb * a[:, None]
        out[sel] = base
    return np.clip(out, 0.0, 1.0)


def shade(albedo: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Lambertian + ambient, fixed light: view independent. Returns linear-ish display RGB in 0..1."""
    lam = np.clip((normals * LIGHT_DIR).sum(1), 0.0, None)
    return np.clip(albedo * (AMBIENT + (1 - AMBIENT) * lam)[:, None], 0.0, 1.0)


def radiance(scene: SceneDef, points: np.ndarray, prim: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Shaded colour [M,3] of surface points (what a camera sees there, from any direction)."""
    return shade(texture(scene, points, scene.prim_material()[prim]), normals)


# ---------------------------------------------------------------------------------------------------
# Cameras
# ---------------------------------------------------------------------------------------------------
def look_at_c2w(eye, target, roll_deg: float = 0.0) -> np.ndarray:
    """4x4 camera-to-world, OpenCV axes (x right, y down, z forward), world up = +z."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    r = np.radians(roll_deg)
    x, y = np.cos(r) * x + np.sin(r) * y, -np.sin(r) * x + np.cos(r) * y
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


@functools.lru_cache(maxsize=4)
def _pixel_dirs(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> np.ndarray:
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dc = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1).reshape(-1, 3)
    dc.setflags(write=False)
    return dc


def camera_rays(c2w: np.ndarray, fx: float, fy: float, cx: float, cy: float, width: int, height: int):
    """Rays through pixel centres ((u+0.5, v+0.5) in pixels). Directions have camera z = 1, so t = depth."""
    dc = _pixel_dirs(float(fx), float(fy), float(cx), float(cy), int(width), int(height))
    return c2w[:3, 3], mat3(dc, c2w[:3, :3].T)


def render(scene: SceneDef, c2w: np.ndarray, fx: float, fy: float, cx: float, cy: float, width: int,
           height: int, need_rgb: bool = True):
    """Ray cast one view. Returns (rgb float [H,W,3] 0..1 or None, z-depth [H,W] metres, prim id [H,W])."""
    o, d = camera_rays(c2w, fx, fy, cx, cy, width, height)
    t, prim, n = cast_rays(scene, o, d, screen_candidates(scene, c2w, fx, fy, cx, cy, width, height))
    rgb = None
    if need_rgb:
        rgb = radiance(scene, o + t[:, None] * d, prim, n).reshape(height, width, 3)
    return rgb, t.reshape(height, width).astype(np.float32), prim.reshape(height, width)
