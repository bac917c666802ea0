"""PLY / .splat / nerfstudio transforms.json / COLMAP: round trips, foreign files, bad inputs."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from spatialvid.cameras import Cameras
from spatialvid.errors import FormatError, SpatialvidError
from spatialvid.formats.colmap import read_colmap, rotmat_to_quat, write_colmap_text
from spatialvid.formats.nerfstudio import read_transforms, read_transforms_extra, write_transforms
from spatialvid.formats.ply import read_ply, write_ply
from spatialvid.formats.splat import read_splat, write_splat
from spatialvid.gaussians import C0, GENERATED, Gaussians


def random_gaussians(n: int = 200, degree: int = 3, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 3, log_scales=torch.randn(n, 3, generator=gen) - 3,
        quats=quats, opacity_logits=torch.randn(n, generator=gen) * 2, sh0=torch.randn(n, 3, generator=gen),
        shN=torch.randn(n, k, 3, generator=gen) * 0.1, origin=torch.randint(0, 2, (n,), generator=gen).to(torch.uint8),
        step=torch.randint(0, 50, (n,), generator=gen).to(torch.int32))


def assert_gaussians_equal(a: Gaussians, b: Gaussians) -> None:
    for f in fields(Gaussians):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype, f.name
        assert torch.equal(x, y), f.name


def assert_cameras_equal(a: Cameras, b: Cameras) -> None:
    for f in fields(Cameras):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if torch.is_tensor(x):
            assert x.dtype == y.dtype and torch.equal(x, y), f.name
        else:
            assert x == y, f.name


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    from scipy.spatial.transform import Rotation

    return torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix()).float()


# ------------------------------------------------------------------------------------------------ PLY
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_ply_roundtrip_exact(tmp_path, degree):
    g = random_gaussians(degree=degree)
    write_ply(tmp_path / "g.ply", g)
    assert_gaussians_equal(read_ply(tmp_path / "g.ply"), g)
    assert [p.name for p in tmp_path.iterdir()] == ["g.ply"]  # no temporary left behind


def test_ply_layout_matches_3dgs_reference_reader(tmp_path):
    """plyfile (an independent reader) sees the standard 3DGS property order and channel-major f_rest."""
    g = random_gaussians(n=50, degree=3)
    write_ply(tmp_path / "g.ply", g)
    ply = PlyData.read(str(tmp_path / "g.ply"))
    assert ply.text is False and ply.byte_order == "<"
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "origin", "step"])
    assert names == expected
    assert all(v[n].dtype == np.float32 for n in expected[:-2])
    assert v["origin"].dtype == np.uint8 and v["step"].dtype == np.int32
    # channel-major: f_rest_{c*15 + j} is coefficient j of channel c
    for c in range(3):
        for j in (0, 7, 14):
            np.testing.assert_array_equal(v[f"f_rest_{c * 15 + j}"], g.shN[:, j, c].numpy())
    np.testing.assert_array_equal(v["opacity"], g.opacity_logits.numpy())
    np.testing.assert_array_equal(v["rot_0"], g.quats[:, 0].numpy())
    np.testing.assert_array_equal(v["nx"], np.zeros(50, np.float32))


def _foreign_ply(path: Path, n: int, num_rest: int, extra: bool = True, text: bool = False, byte_order: str = "<",
                 quats: np.ndarray | None = None, values: dict | None = None) -> dict:
    rng = np.random.default_rng(1)
    names = (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(num_rest)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    data = {name: rng.normal(size=n).astype(np.float32) for name in names}
    if quats is not None:
        for i in range(4):
            data[f"rot_{i}"] = quats[:, i].astype(np.float32)
    data.update(values or {})
    dtype = [(name, "f4") for name in names]
    if extra:
        dtype += [("red", "u1"), ("confidence", "f8")]
    arr = np.zeros(n, dtype=dtype)
    for name in names:
        arr[name] = data[name]
    if extra:
        arr["red"] = 7
    PlyData([PlyElement.describe(arr, "vertex")], text=text, byte_order=byte_order).write(str(path))
    return data


@pytest.mark.parametrize("mode", ["binary", "ascii", "big_endian"])
def test_read_foreign_ply(tmp_path, mode):
    """A PLY from another tool: no origin/step, extra properties, any property order, quats not unit."""
    n = 30
    q = np.random.default_rng(2).normal(size=(n, 4)) * 3
    kw = {"binary": {}, "ascii": {"text": True}, "big_endian": {"byte_order": ">"}}[mode]
    data = _foreign_ply(tmp_path / "f.ply", n, 9, quats=q, **kw)
    g = read_ply(tmp_path / "f.ply")
    assert len(g) == n and g.sh_degree == 1
    assert torch.equal(g.origin, torch.zeros(n, dtype=torch.uint8))
    assert torch.equal(g.step, torch.zeros(n, dtype=torch.int32))
    np.testing.assert_array_equal(g.means[:, 1].numpy(), data["y"])
    np.testing.assert_array_equal(g.shN[:, 2, 1].numpy(), data["f_rest_5"])  # G channel, coeff 2
    qn = q.astype(np.float32) / np.linalg.norm(q.astype(np.float32), axis=1, keepdims=True)
    np.testing.assert_allclose(g.quats.numpy(), qn, atol=1e-6)
    np.testing.assert_allclose(g.quats.norm(dim=1).numpy(), 1.0, atol=1e-6)


def test_read_ply_without_f_rest_is_degree_0(tmp_path):
    _foreign_ply(tmp_path / "d0.ply", 5, 0, extra=False)
    g = read_ply(tmp_path / "d0.ply")
    assert g.sh_degree == 0 and g.shN.shape == (5, 0, 3)


def test_ply_bad_inputs_name_the_file(tmp_path):
    g = random_gaussians(n=20, degree=1)
    good = tmp_path / "good.ply"
    write_ply(good, g)
    raw = good.read_bytes()
    header_end = raw.index(b"end_header\n") + len(b"end_header\n")

    cases: dict[str, tuple[bytes, str]] = {}
    cases["truncated.ply"] = (raw[: len(raw) - 100], "truncated")
    cases["header_only.ply"] = (raw[:header_end], "truncated")
    cases["garbage.ply"] = (b"\x00\x01garbage" * 50, "not a PLY")
    cases["no_end.ply"] = (raw[:header_end - 12], "end_header")
    cases["bad_line.ply"] = (raw.replace(b"element vertex 20", b"element vertex twenty"), "header")
    # NaN in an opacity value (first vertex, property index 9 + 9 = 18 -> byte offset 18*4)
    nan_raw = bytearray(raw)
    struct.pack_into("<f", nan_raw, header_end + 18 * 4, float("nan"))
    cases["nan.ply"] = (bytes(nan_raw), "NaN")
    inf_raw = bytearray(raw)
    struct.pack_into("<f", inf_raw, header_end + 4, float("inf"))
    cases["inf.ply"] = (bytes(inf_raw), "x/y/z")
    for name, (content, expect) in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(FormatError) as ei:
            read_ply(p)
        assert str(p) in str(ei.value), name
        assert expect.lower() in str(ei.value).lower(), (name, str(ei.value))

    _foreign_ply(tmp_path / "sh10.ply", 4, 10)
    with pytest.raises(FormatError, match="wrong SH count: 10 f_rest") as ei:
        read_ply(tmp_path / "sh10.ply")
    assert "sh10.ply" in str(ei.value)

    arr = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(FormatError, match="missing required vertex properties: f_dc_0"):
        read_ply(tmp_path / "points.ply")
    with pytest.raises(FormatError, match="not found"):
        read_ply(tmp_path / "absent.ply")
    zero_q = np.zeros((4, 4))
    _foreign_ply(tmp_path / "zeroq.ply", 4, 0, quats=zero_q)
    with pytest.raises(FormatError, match="zero quaternion"):
        read_ply(tmp_path / "zeroq.ply")


def test_write_ply_is_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous file untouched and no temporary behind."""
    import spatialvid.formats.ply as ply_mod

    path = tmp_path / "g.ply"
    g = random_gaussians(n=10, degree=0)
    write_ply(path, g)
    before = path.read_bytes()

    orig = ply_mod.gaussians_to_records

    class Exploding(np.ndarray):
        def tobytes(self, *a, **k):
            raise OSError("disk full")

    monkeypatch.setattr(ply_mod, "gaussians_to_records", lambda *a, **k: orig(*a, **k).view(Exploding))
    with pytest.raises(OSError, match="disk full"):
        write_ply(path, random_gaussians(n=99, degree=0))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.ply"]


# ------------------------------------------------------------------------------------------------ .splat
def test_splat_layout_and_order(tmp_path):
    g = random_gaussians(n=64, degree=2)
    g.origin[:] = GENERATED
    path = write_splat(tmp_path / "g.splat", g)
    raw = path.read_bytes()
    assert len(raw) == 32 * len(g)
    importance = torch.exp(g.log_scales.double().sum(1)) * torch.sigmoid(g.opacity_logits.double())
    order = torch.argsort(-importance, stable=True)
    # decode the first two records by hand with struct (independent of the writer's numpy dtype)
    for rank in (0, 1, 63):
        i = int(order[rank])
        rec = struct.unpack_from("<3f3f4B4B", raw, 32 * rank)
        np.testing.assert_array_equal(rec[0:3], g.means[i].numpy())
        np.testing.assert_allclose(rec[3:6], np.exp(g.log_scales[i].numpy()), rtol=1e-6)
        rgb = np.clip(np.round((0.5 + C0 * g.sh0[i].numpy()) * 255), 0, 255)
        assert list(rec[6:9]) == rgb.astype(int).tolist()
        assert rec[9] == round(float(torch.sigmoid(g.opacity_logits[i])) * 255)
        q = g.quats[i].numpy() / np.linalg.norm(g.quats[i].numpy())
        assert list(rec[10:14]) == np.clip(np.round(q * 128 + 128), 0, 255).astype(int).tolist()
    back = read_splat(path)
    gi = g[order]
    np.testing.assert_array_equal(back.means.numpy(), gi.means.numpy())
    np.testing.assert_allclose(back.scales.numpy(), gi.scales.numpy(), rtol=1e-6)
    np.testing.assert_allclose(back.opacities.numpy(), gi.opacities.numpy(), atol=1 / 255 + 1e-6)
    rgb_in = (0.5 + C0 * gi.sh0).clamp(0, 1)
    np.testing.assert_allclose(back.colors.numpy(), rgb_in.numpy(), atol=0.5 / 255 + 1e-6)
    dots = (back.rotations * gi.rotations).sum(1).abs()
    assert float(dots.min()) > 0.999
    (tmp_path / "bad.splat").write_bytes(raw[:-5])
    with pytest.raises(FormatError, match="multiple of 32") as ei:
        read_splat(tmp_path / "bad.splat")
    assert "bad.splat" in str(ei.value)


# ------------------------------------------------------------------------------------------------ nerfstudio
def test_fox_import(fox_dir):
    cams, extra = read_transforms_extra(fox_dir / "transforms.json")
    raw = json.loads((fox_dir / "transforms.json").read_text())
    assert len(cams) == len(raw["frames"]) == 67
    assert cams.names[0] == "0001.jpg"
    assert Path(cams.image_paths[0]) == fox_dir / "images" / "0001.jpg"
    assert all(Path(p).is_file() for p in cams.image_paths)
    assert int(cams.width[0]) == 1080 and int(cams.height[0]) == 1920
    assert float(cams.fx[5]) == pytest.approx(1375.52) and float(cams.cy[5]) == pytest.approx(965.268)
    np.testing.assert_allclose(cams.dist[0].numpy(), [0.0578421, -0.0805099, -0.000980296, 0.00015575, 0],
                               rtol=1e-6)
    assert extra == {"aabb_scale": 4}
    # back to nerfstudio's matrices: c2w_gl = inverse(w2c) @ diag(1,-1,-1,1)
    gl = np.array([f["transform_matrix"] for f in raw["frames"]])
    np.testing.assert_allclose(cams.c2w(opengl=True).numpy(), gl, atol=2e-6)
    cams.validate()


def test_fox_import_export_import(fox_dir, tmp_path):
    cams, extra = read_transforms_extra(fox_dir / "transforms.json")
    extra = {**extra, "applied_transform": [[0, 1, 0, 0.5], [1, 0, 0, 0], [0, 0, -1, 2.0]]}
    out = tmp_path / "out" / "transforms.json"
    write_transforms(out, cams, relative_to=out.parent, extra=extra)
    again, extra2 = read_transforms_extra(out)
    assert_cameras_equal(again, cams)
    assert extra2 == extra
    # the written file is plain nerfstudio: shared intrinsics at the top, OpenGL matrices in the frames
    data = json.loads(out.read_text())
    assert data["fl_x"] == pytest.approx(1375.52) and data["w"] == 1080 and "fl_x" not in data["frames"][0]
    src = json.loads((fox_dir / "transforms.json").read_text())
    np.testing.assert_allclose(np.array(data["frames"][3]["transform_matrix"]),
                               np.array(src["frames"][3]["transform_matrix"]), atol=1e-6)
    # the images are outside the output folder: absolute paths; inside: relative paths
    assert data["frames"][0]["file_path"] == str(fox_dir / "images" / "0001.jpg")
    out2 = fox_dir.parent.parent / "never_written.json"  # not written: only check the relative form
    from spatialvid.formats.nerfstudio import transforms_dict

    rel = transforms_dict(cams, relative_to=fox_dir)
    assert rel["frames"][0]["file_path"] == "images/0001.jpg" and not out2.exists()
    # and a second round trip is a fixed point
    write_transforms(tmp_path / "t2.json", again, extra=extra2)
    assert json.loads((tmp_path / "t2.json").read_text()) == data


def test_per_frame_intrinsics_and_overrides(tmp_path):
    cams = Cameras.cat([Cameras.look_at((2, 0, 1), (0, 0, 0), fov_deg=50, width=320, height=240, name="a.png"),
                        Cameras.look_at((0, 2, 1), (0, 0, 0), fov_deg=70, width=320, height=240, name="b.png")])
    cams.dist[1, 0] = 0.1
    cams.image_paths = [str(tmp_path / "imgs" / "a.png"), ""]
    write_transforms(tmp_path / "t.json", cams)
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["w"] == 320 and "fl_x" not in data and data["frames"][1]["fl_y"] == pytest.approx(float(cams.fy[1]))
    assert data["frames"][0]["file_path"] == "imgs/a.png" and data["k2"] == 0.0
    assert data["frames"][1]["k1"] == pytest.approx(0.1) and data["frames"][0]["k1"] == 0.0
    assert_cameras_equal(read_transforms(tmp_path / "t.json"), cams)

    # hand-written file: shared intrinsics, one frame overriding, camera_angle_x instead of fl_x, no cx/cy
    c2w = np.eye(4).tolist()
    doc = {"camera_angle_x": 2 * math.atan(0.5), "w": 200, "h": 100, "k1": 0.01, "camera_model": "OPENCV",
           "applied_transform": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]],
           "frames": [{"file_path": "x/0.png", "transform_matrix": c2w},
                      {"file_path": "x/1.png", "transform_matrix": c2w, "fl_x": 150, "fl_y": 160, "cx": 90,
                       "cy": 40, "w": 180, "h": 90, "k1": -0.2, "p2": 0.003}]}
    (tmp_path / "h.json").write_text(json.dumps(doc))
    c, extra = read_transforms_extra(tmp_path / "h.json")
    assert extra == {"applied_transform": doc["applied_transform"]}
    assert c.fx.tolist() == [pytest.approx(200.0), 150.0] and c.fy.tolist() == [pytest.approx(200.0), 160.0]
    assert c.cx.tolist() == [100.0, 90.0] and c.cy.tolist() == [50.0, 40.0]
    assert c.width.tolist() == [200, 180] and c.height.tolist() == [100, 90]
    np.testing.assert_allclose(c.dist.numpy(), [[0.01, 0, 0, 0, 0], [-0.2, 0, 0, 0.003, 0]], rtol=1e-6)
    assert c.names == ["0.png", "1.png"] and c.image_paths[1] == str(tmp_path / "x" / "1.png")
    # identity OpenGL c2w: camera at origin looking down world -z with y up -> OpenCV R = diag(1,-1,-1)
    assert torch.equal(c.R[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])))


def test_missing_w_h_read_from_image(fox_dir, tmp_path):
    doc = json.loads((fox_dir / "transforms.json").read_text())
    del doc["w"], doc["h"]
    doc["frames"] = [{**f, "file_path": str(fox_dir / f["file_path"])} for f in doc["frames"][:2]]
    (tmp_path / "t.json").write_text(json.dumps(doc))
    c = read_transforms(tmp_path / "t.json")
    assert c.width.tolist() == [1080, 1080] and c.height.tolist() == [1920, 1920]


def _bad_json_cases() -> dict[str, tuple[str, str]]:
    good_frame = {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}
    base = {"fl_x": 100, "fl_y": 100, "cx": 50, "cy": 50, "w": 100, "h": 100}
    nan_m = np.eye(4).tolist()
    nan_m[0][3] = float("nan")
    skew = np.eye(4).tolist()
    skew[0][1] = 0.5
    mirror = np.diag([1.0, 1.0, -1.0, 1.0]).tolist()
    return {
        "invalid.json": ('{"frames": [', "not valid JSON"),
        "list.json": ("[]", "JSON object"),
        "no_frames.json": (json.dumps(base), "missing field 'frames'"),
        "empty_frames.json": (json.dumps({**base, "frames": []}), "empty"),
        "no_matrix.json": (json.dumps({**base, "frames": [{"file_path": "a.png"}]}), "missing field 'transform_matrix'"),
        "no_path.json": (json.dumps({**base, "frames": [{"transform_matrix": np.eye(4).tolist()}]}),
                         "missing field 'file_path'"),
        "no_focal.json": (json.dumps({"w": 10, "h": 10, "frames": [good_frame]}), "missing field 'fl_x'"),
        "nan_matrix.json": (json.dumps({**base, "frames": [{**good_frame, "transform_matrix": nan_m}]}), "NaN"),
        "inf_focal.json": (json.dumps({**base, "fl_x": float("inf"), "frames": [good_frame]}), "not finite"),
        "str_focal.json": (json.dumps({**base, "fl_x": "100", "frames": [good_frame]}), "must be a number"),
        "skew.json": (json.dumps({**base, "frames": [{**good_frame, "transform_matrix": skew}]}), "not a rotation"),
        "mirror.json": (json.dumps({**base, "frames": [{**good_frame, "transform_matrix": mirror}]}), "not a rotation"),
        "shape.json": (json.dumps({**base, "frames": [{**good_frame, "transform_matrix": [[1, 0], [0, 1]]}]}), "4x4"),
        "fisheye.json": (json.dumps({**base, "camera_model": "OPENCV_FISHEYE", "frames": [good_frame]}),
                         "not supported"),
        "neg_size.json": (json.dumps({**base, "w": -5, "frames": [good_frame]}), "positive"),
    }


def test_transforms_bad_inputs_name_the_file(tmp_path):
    for name, (text, expect) in _bad_json_cases().items():
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(FormatError) as ei:
            read_transforms(p)
        msg = str(ei.value)
        assert msg.startswith(str(p)), (name, msg)
        assert expect in msg, (name, msg)
    with pytest.raises(FormatError, match="not found"):
        read_transforms(tmp_path / "absent.json")


# ------------------------------------------------------------------------------------------------ COLMAP
def test_rotmat_to_quat_matches_scipy():
    from scipy.spatial.transform import Rotation

    R = random_rotations(200, seed=3).double().numpy()
    R[0] = np.diag([1.0, -1.0, -1.0])  # w = 0 edge cases
    R[1] = np.diag([-1.0, -1.0, 1.0])
    q = rotmat_to_quat(R)
    ref = Rotation.from_matrix(R).as_quat()[:, [3, 0, 1, 2]]
    ref *= np.where(ref[:, :1] < 0, -1, 1)
    dots = np.abs((q * ref).sum(1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-12)


def _test_cameras(n: int = 5) -> Cameras:
    R = random_rotations(n, seed=5)
    t = torch.randn(n, 3, generator=torch.Generator().manual_seed(5))
    dist = torch.zeros(n, 5)
    dist[1] = torch.tensor([0.1, -0.05, 0.001, -0.002, 0.0])
    dist[2] = torch.tensor([0.1, -0.05, 0.001, -0.002, 0.01])
    return Cameras(fx=[500.0, 510, 520, 500, 500], fy=[500.0, 505, 520, 500, 500], cx=160.5, cy=120.25,
                   width=320, height=240, R=R, t=t, dist=dist, names=[f"im_{i}.png" for i in range(n)])


def test_colmap_text_roundtrip_through_pycolmap(tmp_path):
    import pycolmap

    cams = _test_cameras()
    xyz = torch.randn(40, 3)
    rgb = torch.rand(40, 3)
    write_colmap_text(tmp_path / "sparse", cams, xyz, rgb)
    assert sorted(p.name for p in (tmp_path / "sparse").iterdir()) == ["cameras.txt", "images.txt", "points3D.txt"]
    rec = pycolmap.Reconstruction(str(tmp_path / "sparse"))
    assert rec.num_images() == 5 and rec.num_points3D() == 40 and rec.num_cameras() == 3  # cams 0, 3, 4 share one
    models = {rec.cameras[rec.images[i].camera_id].model.name for i in rec.images}
    assert models == {"PINHOLE", "OPENCV", "FULL_OPENCV"}
    # pycolmap's projection of a point agrees with ours (same OpenCV convention, with distortion)
    im = rec.find_image_with_name("im_1.png")
    p_world = (cams.centers()[1] + 2.0 * cams.R[1, 2]).double()  # 2 units in front of camera 1
    p_world = p_world + 0.3 * cams.R[1, 0].double() - 0.2 * cams.R[1, 1].double()
    uv_colmap = np.asarray(im.project_point(p_world.numpy()))
    uv_ours, z = cams[1].project(p_world.float()[None], distort=True)
    np.testing.assert_allclose(uv_ours[0, 0].numpy(), uv_colmap, atol=1e-3)
    assert float(z[0, 0]) == pytest.approx(2.0, abs=1e-5)

    back, xyz2, rgb2 = read_colmap(tmp_path / "sparse")
    assert back.names == cams.names
    for k in ("fx", "fy", "cx", "cy", "width", "height", "dist", "t"):
        assert torch.equal(getattr(back, k), getattr(cams, k)), k
    torch.testing.assert_close(back.R, cams.R, atol=1e-6, rtol=0)
    torch.testing.assert_close(xyz2, xyz, atol=0, rtol=0)
    torch.testing.assert_close(rgb2, torch.round(rgb * 255) / 255, atol=1e-7, rtol=0)

    # binary: write with pycolmap, read with ours
    (tmp_path / "bin").mkdir()
    rec.write_binary(str(tmp_path / "bin"))
    back_bin, xyz3, _ = read_colmap(tmp_path / "bin")
    assert torch.equal(back_bin.R, back.R) and torch.equal(back_bin.t, back.t) and torch.equal(xyz3, xyz2)


def test_colmap_camera_models_and_layout(tmp_path):
    model = tmp_path / "proj" / "sparse" / "0"
    model.mkdir(parents=True)
    (tmp_path / "proj" / "images").mkdir()
    (tmp_path / "proj" / "images" / "a.jpg").write_bytes(b"")
    (model / "cameras.txt").write_text(
        "# comment\n1 SIMPLE_PINHOLE 100 80 90 50 40\n2 SIMPLE_RADIAL 100 80 91 51 41 0.02\n"
        "3 RADIAL 100 80 92 52 42 0.03 -0.01\n4 OPENCV 100 80 93 94 53 43 0.1 0.2 0.003 0.004\n"
        "5 PINHOLE 100 80 95 96 54 44\n")
    lines = []
    for i, name in enumerate(["e.jpg", "d.jpg", "c.jpg", "b.jpg", "a.jpg"]):
        lines += [f"{i + 1} 1 0 0 0 {i} 0 0 {i + 1} {name}", ""]
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "points3D.txt").write_text("1 0.5 0.25 2 255 0 128 0.1\n")
    cams, xyz, rgb = read_colmap(tmp_path / "proj")  # finds sparse/0 by itself
    assert cams.names == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]  # sorted by name
    assert cams.image_paths[0] == str(tmp_path / "proj" / "images" / "a.jpg")
    # a.jpg is image 5 -> camera 5 PINHOLE; e.jpg is camera 1 SIMPLE_PINHOLE
    assert cams.fx.tolist() == [95, 93, 92, 91, 90] and cams.fy.tolist() == [96, 94, 92, 91, 90]
    assert cams.cx.tolist() == [54, 53, 52, 51, 50] and cams.cy.tolist() == [44, 43, 42, 41, 40]
    np.testing.assert_allclose(cams.dist.numpy(), [[0, 0, 0, 0, 0], [0.1, 0.2, 0.003, 0.004, 0],
                                                   [0.03, -0.01, 0, 0, 0], [0.02, 0, 0, 0, 0], [0] * 5], rtol=1e-6)
    assert cams.t[:, 0].tolist() == [4, 3, 2, 1, 0]
    assert xyz.tolist() == [[0.5, 0.25, 2.0]] and rgb.tolist() == [[1.0, 0.0, pytest.approx(128 / 255)]]

    (model / "cameras.txt").write_text("1 OPENCV_FISHEYE 100 80 90 90 50 40 0.1 0 0 0\n"
                                       "2 PINHOLE 100 80 95 96 54 44\n3 PINHOLE 100 80 95 96 54 44\n"
                                       "4 PINHOLE 100 80 95 96 54 44\n5 PINHOLE 100 80 95 96 54 44\n")
    with pytest.raises(FormatError, match="OPENCV_FISHEYE.*not supported"):
        read_colmap(model)
    with pytest.raises(FormatError, match="no COLMAP sparse model"):
        read_colmap(tmp_path / "proj" / "images")
    (model / "images.txt").write_text("1 1 0 0 garbage\n")
    with pytest.raises(FormatError) as ei:
        read_colmap(model)
    assert str(model) in str(ei.value)


# ------------------------------------------------------------------------------------------------ helpers
def test_export_scene_and_generic_readers(tmp_path):
    from spatialvid.formats import export_scene, read_cameras, read_gaussians
    from spatialvid.scene import Scene

    g = random_gaussians(n=30, degree=1)
    cams = _test_cameras()
    scene = Scene(g, cams, metadata={"applied_transform": [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]]})
    assert_gaussians_equal(read_gaussians(export_scene(scene, tmp_path / "a.ply")), g)
    assert len(read_gaussians(export_scene(scene, tmp_path / "a.splat"))) == 30
    export_scene(scene, tmp_path / "t" / "transforms.json")
    c, xyz, rgb = read_cameras(tmp_path / "t")  # a folder holding transforms.json
    assert_cameras_equal(c, cams)
    assert xyz is None and rgb is None
    assert read_transforms_extra(tmp_path / "t" / "transforms.json")[1] == {
        "applied_transform": scene.metadata["applied_transform"]}
    export_scene(scene, tmp_path / "colmap")
    c2, xyz2, rgb2 = read_cameras(tmp_path / "colmap")
    assert c2.names == cams.names and torch.equal(xyz2, g.means)
    with pytest.raises(SpatialvidError, match="unknown export format"):
        export_scene(scene, tmp_path / "x", fmt="obj")
