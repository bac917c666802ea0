"""`spatialvid export`: .spz round trip and bytes, crops, meshes against exact surfaces, the CLI."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import FormatError, SpatialvidError
from spatialvid.formats.crop import Crop, parse_crop
from spatialvid.formats.spz import pack_spz, read_spz, read_spz_info, write_spz
from spatialvid.gaussians import CAPTURED, GENERATED, Gaussians, quat_to_rotmat
from spatialvid.scene import Scene


def random_gaussians(n: int = 300, degree: int = 3, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 3, log_scales=torch.rand(n, 3, generator=gen) * 8 - 8,
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        opacity_logits=torch.randn(n, generator=gen) * 2, sh0=torch.rand(n, 3, generator=gen) * 5 - 2.5,
        shN=torch.rand(n, k, 3, generator=gen) * 1.6 - 0.8,
        origin=torch.randint(0, 2, (n,), generator=gen).to(torch.uint8),
        step=torch.zeros(n, dtype=torch.int32))


def _match(a: Gaussians, b: Gaussians) -> Gaussians:
    """``b`` reordered to ``a``'s order (the writer sorts along a Morton curve)."""
    d = torch.cdist(a.means.double(), b.means.double())
    idx = d.argmin(1)
    assert len(set(idx.tolist())) == len(a)
    return b[idx]


# ---------------------------------------------------------------------------------------------------
# .spz
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_spz_round_trip_within_quantisation(tmp_path, degree):
    g = random_gaussians(degree=degree)
    p = write_spz(tmp_path / "a.spz", g)
    r, info = read_spz_info(p)
    assert info == {"version": 2, "num_points": len(g), "sh_degree": degree, "fractional_bits": 12,
                    "antialiased": False}
    r = _match(g, r)
    assert (r.means - g.means).abs().max() <= 0.5 / 4096 + 1e-6
    assert (r.opacities - g.opacities).abs().max() <= 0.5 / 255 + 1e-6
    # the axes may come back in another order (see below), each scale within half a step of 1/16
    assert (r.log_scales.sort(1).values - g.log_scales.sort(1).values).abs().max() <= 0.5 / 16 + 1e-5
    assert (r.sh0 - g.sh0).abs().max() <= 0.5 / (0.15 * 255) + 1e-5
    # rotation + scales: the writer may pick any of the 24 equivalent (rotation, axis order) forms; the
    # covariance R S^2 R^T is what must survive (8-bit x, y, z with the largest |w| implied)
    def cov(x):
        R, S = quat_to_rotmat(x.quats).double(), x.scales.double()
        return R @ torch.diag_embed(S**2) @ R.transpose(1, 2)

    rel = (cov(r) - cov(g)).flatten(1).norm(dim=1) / cov(g).flatten(1).norm(dim=1)
    assert float(rel.median()) < 0.06 and float(rel.max()) < 0.3
    assert float(r.rotations[:, 0].min()) >= 0.5  # the largest-|w| form of any rotation has w >= 1/2
    if degree:
        err = (r.shN - g.shN).abs()
        assert err[:, :3].max() <= 4.5 / 128 + 1e-6  # 5 bits: round to 1/128, then buckets of 8
        assert err[:, 3:].numpy().max(initial=0) <= 8.5 / 128 + 1e-6  # 4 bits: buckets of 16
    assert (r.origin == CAPTURED).all()


def test_spz_bytes_follow_the_format(tmp_path):
    g = Gaussians.from_points(torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[0.5, 0.5, 0.5]]), scale=math.exp(-2),
                              opacity=0.5, sh_degree=1)
    g.shN[:] = torch.tensor([0.25, -0.25, 0.0])
    data = gzip.decompress(write_spz(tmp_path / "one.spz", g).read_bytes())
    assert data[:4] == b"NGSP"
    assert struct.unpack_from("<IIIBBBB", data) == (0x5053474E, 2, 1, 1, 12, 0, 0)
    body = data[16:]
    assert body[0:3] == bytes([0x00, 0x10, 0x00])  # x = 1.0 * 4096 = 0x001000, low byte first
    assert body[3:6] == (-2 * 4096 & 0xFFFFFF).to_bytes(3, "little")  # two's complement 24 bits
    assert body[6:9] == (2048).to_bytes(3, "little")
    assert body[9] == 128  # alpha: round(0.5 * 255) = 127.5 -> 128
    assert body[10:13] == bytes([128, 128, 128])  # colour 0.5 -> f_dc 0 -> 127.5 -> 128
    assert body[13:16] == bytes([128, 128, 128])  # (log scale -2 + 10) * 16
    assert body[16:19] == bytes([128, 128, 128])  # identity quaternion: x = y = z = 0
    assert body[19:28] == bytes([160, 96, 128] * 3)  # 0.25 * 128 + 128 = 160 (multiple of 8), -0.25 -> 96
    assert len(body) == 28


def test_spz_sh_rounding_error_is_moved_into_the_base_colour():
    from spatialvid.render._torch_impl import eval_sh

    g = random_gaussians(400, degree=1, seed=3)
    g.means = g.means * 0.1
    g.sh0 = g.sh0 * 0.3  # keep the colours inside the format's range
    centres = np.array([[3.0, 0.5, 1.0], [3.2, -0.5, 1.2], [2.8, 0.0, 0.8]])
    from spatialvid.formats.spz import unpack_spz

    plain = _match(g, unpack_spz(pack_spz(g))[0])
    comp = _match(g, unpack_spz(pack_spz(g, view_centres=centres))[0])

    def colour_err(x):
        errs = []
        for c in centres:
            d = g.means.double() - torch.from_numpy(c)
            errs.append((eval_sh(d, x.sh.double(), 1) - eval_sh(d, g.sh.double(), 1)).abs().mean())
        return float(torch.stack(errs).mean())

    assert colour_err(comp) < 0.6 * colour_err(plain)


def test_spz_fractional_bits_shrink_for_large_coordinates():
    g = random_gaussians(20, degree=0)
    g.means[0] = torch.tensor([5000.0, 0, 0])
    data = pack_spz(g)
    assert data[13] == 10  # 5000 * 2^11 overflows 2^23; 2^10 fits


def test_spz_bad_files(tmp_path):
    p = tmp_path / "x.spz"
    p.write_bytes(b"hello")
    with pytest.raises(FormatError, match="not gzip"):
        read_spz(p)
    p.write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x12345678, 2, 1, 0, 12, 0, 0)))
    with pytest.raises(FormatError, match="magic"):
        read_spz(p)
    p.write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 3, 1, 0, 12, 0, 0)))
    with pytest.raises(FormatError, match="version 3"):
        read_spz(p)
    p.write_bytes(gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 2, 10, 0, 12, 0, 0) + b"\0" * 50))
    with pytest.raises(FormatError, match="truncated"):
        read_spz(p)
    p.write_bytes(gzip.compress(pack_spz(random_gaussians(5)))[:-12])
    with pytest.raises(FormatError):
        read_spz(p)


# ---------------------------------------------------------------------------------------------------
# crops
# ---------------------------------------------------------------------------------------------------
def test_crop_box_and_sphere():
    pts = np.array([[0, 0, 0], [0.9, 0.9, 0.9], [1.1, 0, 0], [0, 0, -2]], float)
    assert Crop(box=(-1, -1, -1, 1, 1, 1)).contains(pts).tolist() == [True, True, False, False]
    assert Crop(sphere=(0, 0, 0, 1.2)).contains(pts).tolist() == [True, False, True, False]
    both = parse_crop("-1,-1,-1,1,1,1", "0,0,0,1.2")
    assert both.contains(pts).tolist() == [True, False, False, False]
    for bad in (("1,2,3", None), ("0,0,0,-1,1,1", None), (None, "0,0,0,0"), (None, "a,b,c,d")):
        with pytest.raises(SpatialvidError):
            parse_crop(*bad)


# ---------------------------------------------------------------------------------------------------
# meshes of a synthetic scene with exact surfaces: a ball of radius 0.5 above a 2.4 m square floor
# ---------------------------------------------------------------------------------------------------
BALL_R, FLOOR_Z, HALF = 0.5, -0.75, 1.2


def _disc_quats(normals: np.ndarray) -> torch.Tensor:
    """Quaternions (w,x,y,z) rotating +z onto ``normals``."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, normals)
    s = np.linalg.norm(axis, axis=1)
    c = normals @ z
    ang = np.arctan2(s, c)
    axis = np.where(s[:, None] > 1e-9, axis / np.maximum(s[:, None], 1e-12), np.array([1.0, 0, 0]))
    q = np.concatenate([np.cos(ang / 2)[:, None], axis * np.sin(ang / 2)[:, None]], 1)
    return torch.from_numpy(q).float()


def _discs(p: np.ndarray, n: np.ndarray, spacing: float) -> Gaussians:
    rgb = 0.5 + 0.4 * np.sin(6 * p[:, [0, 1, 2]])  # smooth colour
    ls = np.log(np.array([0.7 * spacing, 0.7 * spacing, 0.05 * spacing]))
    g = Gaussians.from_points(torch.from_numpy(p).float(), torch.from_numpy(rgb).float(), opacity=0.99)
    g.log_scales[:] = torch.from_numpy(ls).float()
    g.quats = _disc_quats(n)
    return g


def synthetic_scene() -> tuple[Scene, list]:
    """(scene, truth meshes) in metres; 16 cameras on a circle look at the ball."""
    import open3d as o3d

    k = 12000
    i = np.arange(k) + 0.5
    phi, th = np.arccos(1 - 2 * i / k), math.pi * (1 + 5**0.5) * i
    n = np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], 1)
    ball = _discs(BALL_R * n, n, math.sqrt(4 * math.pi * BALL_R**2 / k))
    sp = 0.02
    u = np.arange(-HALF + sp / 2, HALF, sp)
    xx, yy = np.meshgrid(u, u)
    fp = np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, FLOOR_Z)], 1)
    floor = _discs(fp, np.tile([0.0, 0, 1], (len(fp), 1)), sp)
    cams = Cameras.cat([Cameras.look_at((2.2 * math.cos(a), 2.2 * math.sin(a), 1.0), (0, 0, -0.2), (0, 0, 1),
                                        fov_deg=60, width=128, height=96)
                        for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)])
    sphere = o3d.geometry.TriangleMesh.create_sphere(BALL_R, resolution=80)
    plane = o3d.geometry.TriangleMesh.create_box(2 * HALF, 2 * HALF, 1e-6)
    plane.translate((-HALF, -HALF, FLOOR_Z))
    return Scene(Gaussians.cat([ball, floor]), cams, {"up": [0, 0, 1]}, []), [sphere, plane]


def seen_truth(truth, cams, n=30000, seed=0) -> np.ndarray:
    """Points on the truth surfaces that some camera sees: in its frustum, not occluded, and facing it at
    less than 75 degrees from the normal (grazing surfaces are out of reach of depth maps at 128x96 px)."""
    import open3d as o3d

    from spatialvid.mesh_eval import _sample_on

    rng = np.random.default_rng(seed)
    areas = np.array([m.get_surface_area() for m in truth])
    counts = rng.multinomial(n, areas / areas.sum())
    pts = np.concatenate([_sample_on(m, int(c), rng) for m, c in zip(truth, counts)])
    normals = np.where((pts[:, 2] > FLOOR_Z + 1e-3)[:, None], pts / np.linalg.norm(pts, axis=1, keepdims=True),
                       np.array([0.0, 0, 1]))
    rs = o3d.t.geometry.RaycastingScene()
    for m in truth:
        rs.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(m))
    seen = np.zeros(len(pts), bool)
    uv, z = cams.project(torch.from_numpy(pts).float())
    for j, c in enumerate(cams.centers().double().numpy()):
        inside = ((z[j] > 0.05) & (uv[j, :, 0] >= 0) & (uv[j, :, 0] < 128) & (uv[j, :, 1] >= 0)
                  & (uv[j, :, 1] < 96)).numpy()
        d = pts - c
        dist = np.linalg.norm(d, axis=1)
        rays = np.concatenate([np.tile(c, (len(pts), 1)), d / dist[:, None]], 1).astype(np.float32)
        hit = rs.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        facing = (normals * -d).sum(1) / dist > math.cos(math.radians(75))
        seen |= inside & facing & (hit > dist - 0.01)
    return pts[seen]


def _similarity(scene: Scene, T: np.ndarray) -> Scene:
    """The scene expressed in ``x' = T x`` (T a similarity), recording ``normalization = T``."""
    from scipy.spatial.transform import Rotation

    from spatialvid.sfm.align import decompose_sim3, transform_cameras

    s, R, t = decompose_sim3(T)
    g = scene.gaussians.clone()
    g.means = torch.from_numpy(g.means.double().numpy() @ (s * R).T + t).float()
    g.log_scales = g.log_scales + math.log(s)
    q = Rotation.from_matrix(R) * Rotation.from_quat(g.quats.numpy()[:, [1, 2, 3, 0]])
    g.quats = torch.from_numpy(q.as_quat()[:, [3, 0, 1, 2]]).float()
    return Scene(g, transform_cameras(scene.cameras, T), {"up": [0, 0, 1], "normalization": T.tolist()}, [])


@pytest.fixture(scope="module")
def synthetic():
    scene, truth = synthetic_scene()
    return scene, truth, seen_truth(truth, scene.cameras)


def _distance_to_truth(points, truth):
    from spatialvid.mesh_eval import _distance_to

    v = np.concatenate([np.asarray(m.vertices) for m in truth])
    f, off = [], 0
    for m in truth:
        f.append(np.asarray(m.triangles) + off)
        off += len(m.vertices)
    return _distance_to(v, np.concatenate(f), points)


def test_mesh_matches_the_exact_surfaces_in_the_original_frame(synthetic):
    from scipy.spatial.transform import Rotation

    from spatialvid.formats.mesh import MeshConfig, scene_to_mesh
    from spatialvid.mesh_eval import _distance_to, _sample_on
    from spatialvid.sfm.align import sim3_matrix

    scene, truth, seen = synthetic
    T = sim3_matrix(0.37, Rotation.from_euler("xyz", [20, -35, 110], degrees=True).as_matrix(), [0.3, -1.2, 2.0])
    norm = _similarity(scene, T)
    mesh = scene_to_mesh(norm, MeshConfig(progress=False, voxel_size=0.02, resolution=2.0))
    assert mesh.stats["frame"] == "original" and abs(mesh.stats["voxel_size"] - 0.02) < 1e-9
    extent = float(np.linalg.norm(seen.max(0) - seen.min(0)))
    acc = _distance_to_truth(_sample_on((mesh.vertices, mesh.faces), 30000, np.random.default_rng(1)), truth)
    comp = _distance_to(mesh.vertices, mesh.faces, seen)
    chamfer = 0.5 * (acc.mean() + comp.mean())
    assert chamfer < 0.01 * extent, (chamfer, extent)
    assert (comp < 0.005 * extent).mean() > 0.9, (comp < 0.005 * extent).mean()
    # vertex colours follow the Gaussians' colours (a smooth function of the position)
    expect = 0.5 + 0.4 * np.sin(6 * mesh.vertices)
    assert np.median(np.abs(mesh.colors / 255.0 - expect)) < 0.06
    # --frame scene keeps the normalised coordinates: the same surface mapped by T (an int truncation, as a
    # Python caller writes it, once made open3d refuse the call)
    flat = scene_to_mesh(norm, MeshConfig(progress=False, voxel_size=0.02 * 0.37, frame="scene", max_faces=4000,
                                          trunc_voxels=6))
    back = (flat.vertices - T[:3, 3]) @ np.linalg.inv(T[:3, :3]).T
    assert flat.stats["frame"] == "scene" and len(flat.faces) <= 4000
    assert np.median(_distance_to_truth(back, truth)) < 0.03  # a wrong frame would be metres off


def test_mesh_captured_only_and_crop(synthetic):
    from spatialvid.formats.mesh import MeshConfig, scene_to_mesh

    scene, _, _ = synthetic
    gen = torch.Generator().manual_seed(0)
    blob = Gaussians.from_points(torch.tensor([[0.0, 0.0, 1.0]]) + torch.randn(800, 3, generator=gen) * 0.05,
                                 torch.full((800, 3), 0.9), scale=0.05, opacity=0.95, origin=GENERATED, step=1)
    s2 = Scene(Gaussians.cat([scene.gaussians, blob]), scene.cameras, scene.metadata, [])
    near_blob = lambda m: int((np.linalg.norm(m.vertices - [0, 0, 1.0], axis=1) < 0.25).sum())  # noqa: E731
    cfg = dict(progress=False, voxel_size=0.04, resolution=1.0, min_component=0.0)
    assert near_blob(scene_to_mesh(s2, MeshConfig(**cfg))) > 0
    assert near_blob(scene_to_mesh(s2, MeshConfig(captured_only=True, **cfg))) == 0
    cropped = scene_to_mesh(s2, MeshConfig(crop=Crop(sphere=(0, 0, 0, 0.7)), **cfg))
    assert np.linalg.norm(cropped.vertices, axis=1).max() <= 0.7 + 1e-9
    assert np.linalg.norm(cropped.vertices, axis=1).max() > 0.45  # the ball is still there


def test_mesh_files_round_trip(tmp_path, synthetic):
    import trimesh

    from spatialvid.formats.mesh import Mesh, read_mesh, write_mesh

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    c = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    m = Mesh(v, f, c, v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9))
    for suffix in (".glb", ".ply", ".obj"):
        r = read_mesh(write_mesh(tmp_path / f"m{suffix}", m))
        assert np.allclose(r.vertices, v, atol=1e-6) and (r.faces == f).all(), suffix
        assert (r.colors == c).all(), suffix
    glb = trimesh.load(str(tmp_path / "m.glb"))
    prim = next(iter(glb.geometry.values()))
    assert "COLOR_0" in str(tmp_path.joinpath("m.glb").read_bytes()[:2000])  # vertex colours in the glTF
    assert len(prim.vertices) == 4


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def _scene_dir(tmp_path, synthetic):
    scene, _, _ = synthetic
    g = scene.gaussians.clone()
    g.origin[:100] = GENERATED
    g.opacity_logits[-50:] = -6.0  # opacity 0.0025: below the CLI's .spz default --min-opacity
    d = tmp_path / "scene"
    Scene(g, scene.cameras, {"up": [0, 0, 1]}, []).save(d)
    return d, g


def test_cli_export_formats_crop_and_errors(tmp_path, synthetic, capsys):
    from spatialvid.cli import main
    from spatialvid.formats import read_gaussians
    from spatialvid.formats.ply import read_ply

    d, g = _scene_dir(tmp_path, synthetic)
    o = tmp_path / "out"
    assert main(["export", str(d), "-o", str(o / "a.spz")]) == 0  # compact defaults: opacity >= 0.01, 11 bits
    a, info = read_spz_info(o / "a.spz")
    assert len(a) == int((g.opacities >= 0.01).sum()) == len(g) - 50 and info["fractional_bits"] == 11
    assert main(["export", str(d), "-o", str(o / "full.spz"), "--min-opacity", "0", "--fractional-bits", "12"]) == 0
    full, info = read_spz_info(o / "full.spz")
    assert len(full) == len(g) and info["fractional_bits"] == 12
    assert main(["export", str(d), "-o", str(o / "all.ply")]) == 0  # other formats keep every Gaussian
    assert len(read_gaussians(o / "all.ply")) == len(g)
    assert main(["export", str(d), "-o", str(o / "a.ply"), "--captured-only"]) == 0
    assert len(read_ply(o / "a.ply")) == len(g) - 100
    box = "-0.6,-0.6,-0.6,0.6,0.6,0.6"
    assert main(["export", str(d), "-o", str(o / "b.splat"), "--crop-box", box]) == 0
    inside = Crop(box=tuple(float(v) for v in box.split(","))).contains(g.means)
    assert len(read_gaussians(o / "b.splat")) == int(inside.sum()) > 0
    assert main(["export", str(d), "-o", str(o / "c.spz"), "--crop-sphere", "0,0,0,0.55", "--crop-box", box]) == 0
    both = inside & Crop(sphere=(0, 0, 0, 0.55)).contains(g.means)
    assert len(read_spz(o / "c.spz")) == int(both.sum())
    assert main(["export", str(d), "-o", str(o / "m.ply"), "--mesh", "--quiet", "--resolution", "0.5",
                 "--voxel-size", "0.05", "--max-faces", "3000", "--crop-sphere", "0,0,0,0.6"]) == 0
    head = (o / "m.ply").read_bytes()[:400]
    assert b"element face" in head and b"red" in head
    assert "mesh" in capsys.readouterr().out
    before = sorted(p.name for p in o.iterdir())
    for bad in (["-o", str(o / "t.json"), "--crop-sphere", "0,0,0,1"],  # cameras only: nothing to crop
                ["-o", str(o / "x.spz"), "--format", "ply"],  # the name disagrees
                ["-o", str(o / "x.splat"), "--mesh"],  # a mesh needs .glb/.ply/.obj
                ["-o", str(o / "x.ply"), "--crop-box", "1,2,3"],
                ["-o", str(o / "x.ply"), "--crop-sphere", "50,50,50,1"],  # nothing inside
                ["-o", str(o / "x.glb"), "--max-faces", "0"]):
        assert main(["export", str(d), *bad]) == 2, bad
    assert sorted(p.name for p in o.iterdir()) == before  # nothing written
    assert "error" in capsys.readouterr().err
