"""Scene persistence: save -> load is exact; bad scene folders give clear errors naming the file."""

from __future__ import annotations

import json

import pytest
import torch
from test_formats import assert_cameras_equal, assert_gaussians_equal, random_gaussians

from spatialvid.cameras import Cameras
from spatialvid.errors import FormatError, SpatialvidError
from spatialvid.gaussians import GENERATED
from spatialvid.scene import Scene


def make_scene(tmp_path, degree: int = 3) -> Scene:
    g = random_gaussians(n=300, degree=degree, seed=4)
    g.origin[:100] = GENERATED
    g.step[:] = 1  # the reconstruct step below
    g.step[:100] = 2  # the fill step
    cams = Cameras.cat([Cameras.look_at((3 * torch.cos(torch.tensor(a)).item(), 3 * torch.sin(torch.tensor(a)).item(),
                                         1.0), (0, 0, 0), name=f"frame_{i:05d}.png", width=320, height=240)
                        for i, a in enumerate([0.0, 0.7, 1.9, 2.5])])
    cams.dist[2] = torch.tensor([0.01, -0.002, 0.0003, 0.0, 0.0001])
    images = tmp_path / "imgs"
    cams.image_paths = [str(images / n) for n in cams.names[:3]] + [""]
    scene = Scene(g, cams, metadata={"units": "m", "up": [0.0, 0.0, 1.0], "source": "video.mp4",
                                     "normalization": [[1.0, 0, 0, 0.5], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]})
    scene.add_history("reconstruct", step_id=1, preset="fast", iterations=7000)
    scene.add_history("fill", step_id=2, camera="look_at", added=100)
    return scene


def test_scene_save_load_exact(tmp_path):
    scene = make_scene(tmp_path)
    out = scene.save(tmp_path / "scene")
    assert sorted(p.name for p in out.iterdir()) == ["gaussians.ply", "scene.json", "transforms.json"]
    back = Scene.load(out)
    assert_gaussians_equal(back.gaussians, scene.gaussians)
    assert_cameras_equal(back.cameras, scene.cameras)
    assert back.history == scene.history and [h["step"] for h in back.history] == [1, 2]
    assert back.metadata == scene.metadata
    # the scene's transforms.json is plain nerfstudio; images outside the scene folder get absolute paths
    tj = json.loads((out / "transforms.json").read_text())
    assert tj["frames"][0]["file_path"] == str(tmp_path / "imgs" / "frame_00000.png")
    assert tj["frames"][3]["file_path"] == "frame_00003.png" and tj["frames"][3]["spatialvid_no_image"] is True
    # saving again over it and reloading is a fixed point
    back.save(out)
    assert_gaussians_equal(Scene.load(out).gaussians, scene.gaussians)


def test_scene_degree0_and_empty_history(tmp_path):
    g = random_gaussians(n=10, degree=0)
    cam = Cameras.look_at((1, 1, 1), (0, 0, 0), name="0001.jpg")
    cam.image_paths = [str(tmp_path / "s" / "images" / "0001.jpg")]  # images inside the scene: relative path
    scene = Scene(g, cam)
    back = Scene.load(scene.save(tmp_path / "s"))
    assert_gaussians_equal(back.gaussians, g)
    assert_cameras_equal(back.cameras, cam)
    assert back.history == [] and back.gaussians.sh_degree == 0
    assert json.loads((tmp_path / "s" / "transforms.json").read_text())["frames"][0]["file_path"] == "images/0001.jpg"


def test_load_bad_scene_folders(tmp_path):
    with pytest.raises(SpatialvidError, match="not a scene folder"):
        Scene.load(tmp_path / "does_not_exist")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(FormatError) as ei:
        Scene.load(tmp_path / "plain")
    assert str(tmp_path / "plain" / "scene.json") in str(ei.value) and "not a spatialvid scene" in str(ei.value)

    good = make_scene(tmp_path).save(tmp_path / "good")
    sj = (good / "scene.json").read_text()
    (good / "scene.json").write_text(sj[: len(sj) // 2])
    with pytest.raises(FormatError, match="not valid JSON") as ei:
        Scene.load(good)
    assert "scene.json" in str(ei.value)
    (good / "scene.json").write_text(sj)

    ply = (good / "gaussians.ply").read_bytes()
    (good / "gaussians.ply").write_bytes(ply[:-1000])
    with pytest.raises(FormatError, match="truncated") as ei:
        Scene.load(good)
    assert str(good / "gaussians.ply") in str(ei.value)
    (good / "gaussians.ply").write_bytes(ply)

    tj = json.loads((good / "transforms.json").read_text())
    del tj["frames"][1]["transform_matrix"]
    (good / "transforms.json").write_text(json.dumps(tj))
    with pytest.raises(FormatError, match="frame 1.*missing field 'transform_matrix'") as ei:
        Scene.load(good)
    assert str(good / "transforms.json") in str(ei.value)


def test_save_refuses_invalid_gaussians(tmp_path):
    scene = make_scene(tmp_path, degree=1)
    scene.gaussians.means[3, 1] = float("inf")
    with pytest.raises(SpatialvidError, match="non-finite"):
        scene.save(tmp_path / "s")
    assert not (tmp_path / "s" / "scene.json").exists()


def test_save_records_generation_and_hashes(tmp_path):
    scene = make_scene(tmp_path)
    out = scene.save(tmp_path / "s")
    meta = json.loads((out / "scene.json").read_text())
    assert meta["generation"] == 1
    assert meta["files"]["gaussians.ply"]["size"] == (out / "gaussians.ply").stat().st_size
    assert len(meta["files"]["transforms.json"]["sha256"]) == 64
    scene.save(out)
    assert json.loads((out / "scene.json").read_text())["generation"] == 2
    assert not (out / ".prev").exists()  # the previous version is dropped once the new one is complete


def test_interrupted_save_rolls_back_to_previous_version(tmp_path, monkeypatch):
    """A save that dies after the new gaussians.ply (old scene.json) loads as the previous version."""
    import spatialvid.formats.nerfstudio as ns

    scene = make_scene(tmp_path)
    out = scene.save(tmp_path / "s")
    first = Scene.load(out)
    scene.gaussians = scene.gaussians[:50]
    scene.add_history("fill", added=0)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ns, "write_transforms", boom)
    with pytest.raises(KeyboardInterrupt):
        scene.save(out)
    monkeypatch.undo()
    assert (out / ".prev" / "gaussians.ply").is_file()
    with pytest.warns(UserWarning, match="rolled back"):
        back = Scene.load(out)
    assert_gaussians_equal(back.gaussians, first.gaussians)
    assert back.history == first.history and not back.missing_history_steps()
    assert not (out / ".prev").exists()
    Scene.load(out)  # consistent now: no warning, no repair
    with pytest.raises(FormatError, match="does not match scene.json"):  # repair=False refuses instead
        monkeypatch.setattr(ns, "write_transforms", boom)
        with pytest.raises(KeyboardInterrupt):
            scene.save(out)
        monkeypatch.undo()
        Scene.load(out, repair=False)


def test_outside_edit_is_refused(tmp_path):
    out = make_scene(tmp_path).save(tmp_path / "s")
    tj = json.loads((out / "transforms.json").read_text())
    tj["frames"][0]["fl_x"] = 123.0  # a valid file, but not the one scene.json records
    (out / "transforms.json").write_text(json.dumps(tj))
    with pytest.raises(FormatError, match="transforms.json: does not match scene.json"):
        Scene.load(out)


def test_step_ids_never_reused(tmp_path):
    scene = make_scene(tmp_path)  # history steps 1, 2
    assert scene.next_step_id() == 3 and not scene.missing_history_steps()
    scene.gaussians.step[:7] = 40  # Gaussians tagged by a step whose history entry was lost (an old bug)
    assert scene.missing_history_steps() == [40]
    top = 40
    assert scene.next_step_id() == top + 1
    assert scene.add_history("fill") == top + 1
    with pytest.raises(SpatialvidError, match="already used"):
        scene.add_history("fill", step_id=1)
