"""Fault injection: processes SIGKILLed between the files of a multi-file update leave folders that load.

``SPATIALVID_FAULT=<point>[@N]`` (spatialvid/faults.py) makes the process kill itself with SIGKILL at a named
point: between the data files and scene.json of ``Scene.save``, between fill steps, before an undo's save,
after a training checkpoint, before reconstruct --overwrite swaps its new folder in. After each kill the scene
folder loads, every ``step`` in its PLY is in its history, and a rerun / ``--resume`` reaches the result of
a run that was never killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_formats import assert_gaussians_equal
from test_train import _toy_folder

from spatialvid.cameras import Cameras
from spatialvid.cli import main
from spatialvid.errors import FormatError
from spatialvid.gaussians import Gaussians
from spatialvid.scene import Scene

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses run with one thread too: results are bit-comparable
    yield
    torch.set_num_threads(n)


def run_killed(args: list[str], point: str) -> subprocess.CompletedProcess:
    """Run ``python -m spatialvid ARGS`` with the fault ``point`` armed; assert SIGKILL ended it."""
    env = {**os.environ, "SPATIALVID_FAULT": point, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "spatialvid", *args], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-2000:])
    return r


def files_of(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in ("gaussians.ply", "transforms.json", "scene.json")}


def assert_consistent(folder: Path) -> Scene:
    """The folder loads and its history covers every step id its Gaussians carry."""
    scene = Scene.load(folder)
    assert scene.missing_history_steps() == [], folder
    return scene


def assert_same_scene(a: Scene, b: Scene) -> None:
    assert_gaussians_equal(a.gaussians, b.gaussians)
    strip = [{k: v for k, v in h.items() if k not in ("time", "info")} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k not in ("time", "info")} for h in b.history]


# ---- Scene.save -----------------------------------------------------------------------------------
def _scene(n: int, step: int) -> Scene:
    torch.manual_seed(n)
    g = Gaussians.from_points(torch.randn(n, 3), torch.rand(n, 3), scale=0.05, opacity=0.7, step=1)
    cams = Cameras.cat([Cameras.look_at((3.0, 0.5 * i, 1.0), (0, 0, 0), name=f"{i}.png", width=32, height=24)
                        for i in range(3)])
    s = Scene(g, cams, {"up": [0.0, 0.0, 1.0]})
    s.add_history("reconstruct", step_id=1)
    for k in range(2, step + 1):
        s.add_history("fill", step_id=k)
    s.gaussians.step[: n // 3] = step
    return s


SAVE_POINTS = ["save:before-ply", "save:after-ply", "save:after-transforms", "save:after-scene-json"]


@pytest.mark.parametrize("point", SAVE_POINTS)
def test_scene_save_killed_between_files(tmp_path, point):
    """A child process killed inside Scene.save leaves the old or the new version. The child is a fresh
    interpreter (a fork of a process whose torch thread pools are running can deadlock) that builds the same
    v2 scene from the same seeds."""
    v1, v2 = _scene(400, 1), _scene(250, 2)
    folder = v1.save(tmp_path / "s")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_faults as t; "
            "t._scene(250, 2).save(sys.argv[2]); sys.exit(3)")
    env = {**os.environ, "SPATIALVID_FAULT": point, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(folder)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-800:])
    rolled_back = point in ("save:after-ply", "save:after-transforms")  # new data files, old scene.json
    if rolled_back:
        with pytest.warns(UserWarning, match="rolled back"):
            back = assert_consistent(folder)
        assert not (folder / ".prev").exists()  # the backup was used up by the repair
    else:
        back = assert_consistent(folder)
    assert_same_scene(back, v2 if point == "save:after-scene-json" else v1)
    v2.save(folder)  # saving again works and gives v2
    assert_same_scene(assert_consistent(folder), v2)


# ---- fill and undo (the command, in a subprocess) -------------------------------------------------
@pytest.fixture(scope="module")
def small_scene(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    g = Gaussians.from_points(torch.randn(1500, 3) * 0.4, torch.rand(1500, 3), scale=0.07, opacity=0.8, step=1)
    cams = Cameras.cat([Cameras.look_at([3 * torch.cos(torch.tensor(a)).item(), 3 * torch.sin(torch.tensor(a)).item(),
                                         1.0], [0, 0, 0], up=(0, 0, 1), fov_deg=50, width=40, height=30,
                                        name=f"{i}.png") for i, a in enumerate([0.0, 1.5, 3.0, 4.5])])
    s = Scene(g, cams, {"up": [0, 0, 1]})
    s.add_history("import", step_id=1)
    return s.save(tmp_path_factory.mktemp("faults") / "scene")


FILL = ["--path", "orbit", "--steps", "2", "--resolution", "32x24", "--fit-iters", "2", "--quiet"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_fill_and_undo_killed_then_rerun(small_scene, tmp_path, one_thread):
    ref = _copy(small_scene, tmp_path / "ref")
    assert main(["fill", str(ref), *FILL]) == 0
    filled = assert_consistent(ref)
    assert [h["kind"] for h in filled.history] == ["import", "fill", "fill"]
    assert main(["fill", str(_copy(ref, tmp_path / "ref_undo")), "--undo"]) == 0
    undone = assert_consistent(tmp_path / "ref_undo")

    # killed after the first of two fill steps (nothing saved yet): the folder is exactly as it was
    a = _copy(small_scene, tmp_path / "a")
    run_killed(["fill", str(a), *FILL], "fill:after-step@1")
    assert files_of(a) == files_of(small_scene)
    # killed inside the final save, after the new gaussians.ply: rolls back to the scene before the fill,
    # and the rerun gets the same step ids and Gaussians as the run that was never killed
    b = _copy(small_scene, tmp_path / "b")
    run_killed(["fill", str(b), *FILL], "save:after-ply")
    with pytest.warns(UserWarning, match="rolled back"):
        assert_same_scene(assert_consistent(b), Scene.load(small_scene))
    assert main(["fill", str(b), *FILL]) == 0
    assert_same_scene(assert_consistent(b), filled)
    # undo killed between transforms.json and scene.json: still filled; undoing again matches
    c = _copy(ref, tmp_path / "c")
    run_killed(["fill", str(c), "--undo"], "save:after-transforms")
    with pytest.warns(UserWarning, match="rolled back"):
        assert_same_scene(assert_consistent(c), filled)
    assert main(["fill", str(c), "--undo"]) == 0
    assert_same_scene(assert_consistent(c), undone)
    # filling the undone view again gets a new step id, never the undone one
    assert main(["fill", str(c), *FILL]) == 0
    again = assert_consistent(c)
    assert [(h["kind"], h["step"]) for h in again.history] == [("import", 1), ("fill", 2), ("fill", 3), ("undo", 4),
                                                               ("fill", 5)]
    assert 5 in again.gaussians.step.tolist() and 3 not in again.gaussians.step.tolist()


# ---- reconstruct ----------------------------------------------------------------------------------
RECON = ["--preset", "fast", "--steps", "20", "--resolution", "0", "--init", "random", "--init-random-points", "300",
         "--densify-start", "5", "--densify-stop", "15", "--densify-every", "5", "--checkpoint-every", "5",
         "--backend", "cpu", "--quiet"]


@pytest.mark.slow
def test_reconstruct_killed_then_resume_or_rerun(tmp_path, one_thread):
    src = _toy_folder(tmp_path / "src", n_cams=8, size=24)
    ref = tmp_path / "ref"
    assert main(["reconstruct", str(src), "-o", str(ref), *RECON]) == 0
    want = assert_consistent(ref)
    assert want.metadata["background"] == [0.0, 0.0, 0.0] and want.metadata["antialiased"] is False

    # killed after the second checkpoint (step 10): no scene yet, a clear error; --resume finishes it
    a = tmp_path / "a"
    run_killed(["reconstruct", str(src), "-o", str(a), *RECON], "train:after-checkpoint@2")
    with pytest.raises(FormatError, match="not completely written"):
        Scene.load(a)
    assert main(["reconstruct", str(src), "-o", str(a), "--resume", *RECON]) == 0
    assert_same_scene(assert_consistent(a), want)

    # --overwrite killed while writing the new scene, then just before swapping it in: the old scene survives
    old = files_of(ref)
    for point in ("save:after-ply", "reconstruct:before-swap"):
        run_killed(["reconstruct", str(src), "-o", str(ref), "--overwrite", *RECON, "--steps", "12"], point)
        assert files_of(ref) == old and (ref / "metrics.json").is_file(), point
        assert_consistent(ref)
    assert main(["reconstruct", str(src), "-o", str(ref), "--overwrite", *RECON, "--steps", "12"]) == 0
    new = assert_consistent(ref)
    assert new.history[-1]["info"]["steps"] == 12 and files_of(ref) != old
    assert not list(tmp_path.glob(".ref*"))  # the leftover staging folder of the killed runs is gone
