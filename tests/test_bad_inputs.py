"""Bad-input corpus: every damaged or impossible input gets one plain error line, exit code 2, and nothing
is written (the command's output does not appear). Run through the real commands (``spatialvid.cli.main``)."""

from __future__ import annotations

import json
import math
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import _toy_folder

from spatialvid.cameras import Cameras
from spatialvid.cli import main
from spatialvid.formats.ply import write_ply
from spatialvid.gaussians import Gaussians
from spatialvid.render.video import VideoWriter
from spatialvid.scene import Scene


def assert_refused(capsys, argv: list[str], needle: str, not_written: list[Path]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (argv, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"spatialvid {argv[0]}: error: ") and needle in err, err
    for p in not_written:
        assert not p.exists(), p
    return err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad inputs ü")  # a path with a space and non-ASCII
    # a short textured video with camera motion
    rng = np.random.default_rng(0)
    tex = (rng.random((96, 160, 3)) * 255).astype(np.uint8)
    with VideoWriter(root / "good.mp4", fps=10) as w:
        for i in range(12):
            w.write(np.ascontiguousarray(tex[16:64, 4 * i:4 * i + 64]))
    data = (root / "good.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    flipped = bytearray(data)
    for k in range(len(flipped)):  # every byte of the stream's data inverted: nothing decodable remains
        flipped[k] ^= 0xFF
    (root / "flipped.mp4").write_bytes(bytes(flipped))
    (root / "empty.mp4").write_bytes(b"")
    # a scene to damage
    torch.manual_seed(0)
    g = Gaussians.from_points(torch.randn(200, 3) * 0.3, torch.rand(200, 3), scale=0.05, opacity=0.8)
    cams = Cameras.cat([Cameras.look_at([3 * math.cos(a), 3 * math.sin(a), 1.0], [0, 0, 0], up=(0, 0, 1),
                                        width=32, height=24, name=f"{i}.png") for i, a in enumerate([0, 2, 4])])
    Scene(g, cams, {"up": [0, 0, 1]}).save(root / "scene ok")
    return root


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width`` x ``height`` (with one tiny IDAT: decoding it would need GBs)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("name, needle", [("truncated.mp4", "damaged"), ("flipped.mp4", "damaged"),
                                          ("empty.mp4", "empty file")])
def test_damaged_videos(corpus, tmp_path, capsys, name, needle):
    out = tmp_path / "out"
    for cmd, quiet in (("poses", "--no-progress"), ("reconstruct", "--quiet")):
        err = assert_refused(capsys, [cmd, str(corpus / name), "-o", str(out), quiet], needle, [out])
        assert str(corpus / name) in err  # names the file, spaces and non-ASCII included


def test_image_folders(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    one = tmp_path / "one image"
    one.mkdir()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(one / "a.png")
    assert_refused(capsys, ["poses", str(one), "-o", str(out), "--no-progress"], "at least 3 usable frames", [out])
    zero = tmp_path / "zero"
    shutil.copytree(one, zero)
    shutil.copy(one / "a.png", zero / "b.png")
    (zero / "c.png").write_bytes(b"")
    assert_refused(capsys, ["poses", str(zero), "-o", str(out), "--no-progress"], "c.png: empty file", [out])
    huge = tmp_path / "huge"
    shutil.copytree(one, huge)
    shutil.copy(one / "a.png", huge / "b.png")
    _png_header(huge / "c.png", 20000, 20000)
    assert_refused(capsys, ["poses", str(huge), "-o", str(out), "--no-progress"], "too large to decode", [out])


def test_posed_folders(tmp_path, capsys):
    """transforms.json with a singular or non-finite matrix, images of the wrong shape, a 0-byte file."""
    src = _toy_folder(tmp_path / "posed folder é", n_cams=4, size=24)
    tj = json.loads((src / "transforms.json").read_text())
    out = tmp_path / "out"

    def bad(mutate, needle):
        d = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        shutil.copytree(src, d)
        t = json.loads(json.dumps(tj))
        mutate(t, d)
        (d / "transforms.json").write_text(json.dumps(t))
        assert_refused(capsys, ["reconstruct", str(d), "-o", str(out), "--steps", "2", "--init", "random",
                                "--quiet"], needle, [out])

    def singular(t, d):
        t["frames"][1]["transform_matrix"][0][:3] = [0.0, 0.0, 0.0]

    def nonfinite(t, d):
        t["frames"][2]["transform_matrix"][1][3] = float("nan")

    def mixed(t, d):
        name = t["frames"][0]["file_path"]
        Image.fromarray(np.zeros((24, 48, 3), np.uint8)).save(d / name)  # 48x24, its camera says 24x24

    def zero_image(t, d):
        (d / t["frames"][3]["file_path"]).write_bytes(b"")

    def huge_image(t, d):
        _png_header(d / t["frames"][3]["file_path"], 20000, 20000)

    bad(singular, "not a rotation")
    bad(nonfinite, "NaN/Inf")
    bad(mixed, "48x24")
    bad(zero_image, "empty file")
    bad(huge_image, "too large to decode")
    d = tmp_path / "zero transforms"
    shutil.copytree(src, d)
    (d / "transforms.json").write_bytes(b"")
    assert_refused(capsys, ["reconstruct", str(d), "-o", str(out)], "not valid JSON", [out])


def _bad_ply(path: Path, kind: str) -> None:
    g = Gaussians.from_points(torch.randn(50, 3), torch.rand(50, 3))
    write_ply(path, g)
    data = bytearray(path.read_bytes())
    head_end = data.index(b"end_header\n") + len(b"end_header\n")
    if kind in ("nan", "inf"):
        struct.pack_into("<f", data, head_end + 4, float(kind))  # y of the first Gaussian
    elif kind == "wrong count":
        data = data.replace(b"element vertex 50", b"element vertex 40")  # more data than declared
    elif kind == "1e9 vertices":
        data = data.replace(b"element vertex 50", b"element vertex 1000000000")
    elif kind == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind, needle", [("nan", "NaN/Inf"), ("inf", "NaN/Inf"), ("wrong count", "wrong vertex count"),
                                          ("1e9 vertices", "1000000000 vertices"), ("empty", "empty file")])
def test_damaged_ply_in_a_scene(corpus, tmp_path, capsys, kind, needle):
    scene = tmp_path / "scene ä"
    shutil.copytree(corpus / "scene ok", scene)
    _bad_ply(scene / "gaussians.ply", kind)
    before = {p.name: p.read_bytes() for p in scene.iterdir()}
    out = tmp_path / "o.mp4"
    assert_refused(capsys, ["render", str(scene), "--path", "orbit", "-o", str(out), "--frames", "2"], needle, [out])
    assert_refused(capsys, ["fill", str(scene), "--path", "orbit", "--steps", "1"], needle, [])
    assert {p.name: p.read_bytes() for p in scene.iterdir()} == before  # fill wrote nothing


@pytest.mark.parametrize("key", ["camera_path", "render_height", "fov"])
def test_camera_path_missing_keys(corpus, tmp_path, capsys, key):
    from spatialvid.paths import orbit, write_camera_path

    scene = Scene.load(corpus / "scene ok")
    p = tmp_path / "path ü.json"
    write_camera_path(p, orbit(scene.cameras, 3, up=(0, 0, 1), width=32, height=24))
    d = json.loads(p.read_text())
    if key == "fov":
        del d["camera_path"][1]["fov"]
    else:
        del d[key]
    p.write_text(json.dumps(d))
    out = tmp_path / "o.mp4"
    assert_refused(capsys, ["render", str(corpus / "scene ok"), "--path", str(p), "-o", str(out)], key, [out])


def test_paths_with_spaces_and_non_ascii_work(corpus, tmp_path, capsys):
    out = tmp_path / "rendu été" / "vidéo 1.mp4"
    out.parent.mkdir()
    assert main(["render", str(corpus / "scene ok"), "--path", "orbit", "-o", str(out), "--frames", "2",
                 "--resolution", "32x24", "--quiet"]) == 0
    assert out.stat().st_size > 0
