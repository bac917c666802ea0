"""`spatialvid extend`: a sample split into clips A and B; A reconstructed, then extended with B."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spatialvid.cli import main
from spatialvid.scene import Scene
from spatialvid.sfm.pipeline import load_poses
from spatialvid.train.extend import new_camera_errors


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def split_sample(tmp_path_factory):
    from spatialvid.sample import make_sample

    base = tmp_path_factory.mktemp("extend")
    s = make_sample(base / "sample", num_frames=48, width=192, height=144, progress=False)
    ims = sorted(s.images_dir.glob("*.png"))
    dirs = {}
    for name, sel in (("A", ims[:28]), ("B", ims[28:])):
        d = base / name
        d.mkdir()
        for p in sel:
            shutil.copy(p, d / p.name)
        dirs[name] = d
    return base, s, dirs


@pytest.mark.slow
def test_extend_registers_in_scene_frame_and_undo_is_exact(split_sample, capsys):
    base, s, dirs = split_sample
    scene_dir = base / "scene"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # scene A: SfM (and Gaussians on its sparse points); the benchmark extends trained scenes
        assert main(["poses", str(dirs["A"]), "-o", str(scene_dir), "--camera-model", "SIMPLE_RADIAL",
                     "--no-progress"]) == 0
        before = _digest(scene_dir)
        old = Scene.load(scene_dir)
        capsys.readouterr()
        assert main(["extend", str(scene_dir), str(dirs["B"]), "--steps", "100", "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "20 new cameras" in capsys.readouterr().out
    ext = Scene.load(scene_dir)
    assert len(ext.cameras) == len(old.cameras) + 20
    assert ext.cameras.names[: len(old.cameras)] == old.cameras.names
    assert torch.equal(ext.cameras.R[: len(old.cameras)], old.cameras.R)  # old cameras untouched
    h = ext.history[-1]
    assert h["kind"] == "extend" and h["info"]["registered"] == 20 and h["info"]["dropped"] == {}
    assert h["info"]["added"] > 0 and len(ext.gaussians) > 0
    assert all((scene_dir / "images" / n).is_file() for n in ext.cameras.names)
    # the new cameras are posed in the scene's frame and scale: compared with ground truth mapped into the
    # scene by a similarity fitted on the *old* cameras only
    rot, cen, _ = new_camera_errors(ext.cameras, load_poses(s.transforms), set(old.cameras.names))
    # (at 192x144 the scene's own SfM is good to ~0.8 deg / 0.2%; the far end of B extrapolates A's frame)
    assert np.median(rot) < 0.5, rot
    assert np.median(cen) < 1.0 and cen.max() < 2.0, cen
    # undo restores the scene exactly (Gaussians, cameras, metadata; history records the undo)
    assert main(["extend", str(scene_dir), "--undo", "--quiet"]) == 0
    after = _digest(scene_dir)
    for name in ("gaussians.ply", "transforms.json"):
        assert after[name] == before[name]
    assert {k for k in after if k.startswith("images/")} == {k for k in before if k.startswith("images/")}
    back = Scene.load(scene_dir)
    assert back.metadata == old.metadata
    assert back.history[: len(old.history)] == old.history and back.history[-1]["kind"] == "undo"
    assert torch.equal(back.gaussians.means, old.gaussians.means)
    capsys.readouterr()
    assert main(["extend", str(scene_dir), "--undo"]) == 2  # nothing left to undo
    assert "nothing to undo" in capsys.readouterr().err


@pytest.mark.slow
def test_extend_errors_leave_scene_unchanged(split_sample, tmp_path, capsys):
    base, s, dirs = split_sample
    scene_dir = base / "scene"
    if not (scene_dir / "scene.json").exists():
        pytest.skip("needs the scene of the test above")
    before = _digest(scene_dir)
    # a clip of another place: random texture that matches nothing in the scene
    other = tmp_path / "other"
    other.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (144, 192, 3), dtype=np.uint8)).save(other / f"o_{i}.png")
    assert main(["extend", str(scene_dir), str(other), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "same place" in err
    # a damaged video
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    assert main(["extend", str(scene_dir), str(bad), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert _digest(scene_dir) == before
    assert not list(base.glob(".scene.extend.*"))  # no work folder left behind
    # a scene without its SfM model: says how to make one
    bare = tmp_path / "bare"
    bare.mkdir()
    for n in ("gaussians.ply", "transforms.json", "scene.json"):
        shutil.copy(scene_dir / n, bare / n)
    shutil.copytree(scene_dir / "images", bare / "images")
    b0 = _digest(bare)
    assert main(["extend", str(bare), str(dirs["B"]), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no SfM model" in err and "spatialvid poses" in err
    assert _digest(bare) == b0
