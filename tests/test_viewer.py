"""The web viewer (issue 8): server, browser, GUI actions, exact modes, fill/undo/save, paths, security."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import C0, CAPTURED, GENERATED, Gaussians
from spatialvid.scene import Scene
from viewer import ViewerApp, ViewerConfig, convert
from viewer.render_worker import RenderWorker
from viewer.security import resolve_inside

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# ---- fixtures ------------------------------------------------------------------------------------
def _build_sample(root: Path) -> tuple[Path, Path]:
    """The hidden-region sample (small) as a scene folder built from its gt_gaussians.ply + cameras."""
    from spatialvid.formats.nerfstudio import read_transforms
    from spatialvid.formats.ply import read_ply
    from spatialvid.sample import make_sample

    info = make_sample(root / "sample", hidden_region=True, num_frames=16, width=160, height=120)
    scene = Scene(gaussians=read_ply(info.gt_gaussians), cameras=read_transforms(info.transforms),
                  metadata={"up": [0.0, 0.0, 1.0], "source": "sample"})
    scene.add_history("import", source="gt_gaussians.ply")
    scene_dir = root / "scene"
    scene.save(scene_dir)
    return scene_dir, Path(info.out_dir)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path]:
    """(scene folder, sample folder) from the bundled hidden-region sample."""
    return _build_sample(tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def app(sample):
    scene_dir, _ = sample
    a = ViewerApp(Scene.load(scene_dir), scene_dir=scene_dir,
                  config=ViewerConfig(port=0, exact_max_side=160, backend="auto"))
    yield a
    a.stop()


def _hidden_view(sample_dir: Path):
    """(held-out cameras, index of the one that sees most of the hidden region, its hidden mask)."""
    from spatialvid.formats.nerfstudio import read_transforms

    held = read_transforms(sample_dir / "heldout" / "transforms.json")
    masks = np.load(sample_dir / "heldout" / "hidden_masks.npz")["masks"]
    view = int(np.argmax(masks.reshape(len(masks), -1).mean(1)))
    return held, view, masks[view]


def _use_training_view(app: ViewerApp, i: int) -> None:
    """Make training camera ``i`` the view GUI actions use (as if a client looked through it)."""
    cams = app.scene.cameras
    wxyz, pos = convert.camera_pose(cams, i)
    from viewer.app import View

    app._last_view = View(np.asarray(wxyz), np.asarray(pos), math.radians(float(cams.fov_y()[i])),
                          float(cams.width[i]) / float(cams.height[i]))


# ---- pure units ----------------------------------------------------------------------------------
def test_resolve_inside_refuses_escapes(tmp_path):
    root = tmp_path / "scene"
    root.mkdir()
    (tmp_path / "secret.json").write_text("{}")
    os.symlink(tmp_path / "secret.json", root / "link.json")
    assert resolve_inside(root, "camera_path.json", (".json",)) == (root / "camera_path.json").resolve()
    assert resolve_inside(root, "paths/a.json", (".json",)).parent == (root / "paths").resolve()
    for bad in ("../secret.json", str(tmp_path / "secret.json"), "a/../../secret.json", "link.json", "",
                "/etc/passwd", ".", "x.json\x00.mp4"):
        with pytest.raises(SpatialvidError, match="refused"):
            resolve_inside(root, bad, (".json",))
    with pytest.raises(SpatialvidError, match="must end with"):
        resolve_inside(root, "gaussians.ply", (".json",))


def test_splat_arrays_match_activations():
    q = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]])  # 90 deg about z
    g = Gaussians.from_arrays(torch.tensor([[1.0, 2.0, 3.0]]), torch.log(torch.tensor([[0.1, 0.2, 0.3]])), q * 3,
                              torch.tensor([0.0]), torch.tensor([[0.4, -0.2, 0.0]]))
    a = convert.splat_arrays(g)
    # x -> y, y -> -x: the covariance is diag(0.2^2, 0.1^2, 0.3^2) in world axes
    np.testing.assert_allclose(a["covariances"][0], np.diag([0.04, 0.01, 0.09]), atol=1e-6)
    np.testing.assert_allclose(a["rgbs"][0], [0.5 + C0 * 0.4, 0.5 - C0 * 0.2, 0.5], atol=1e-6)
    np.testing.assert_allclose(a["opacities"], [[0.5]], atol=1e-6)
    np.testing.assert_allclose(a["centers"][0], [1, 2, 3])


def test_camera_pose_round_trip():
    cams = Cameras.look_at((2.0, -3.0, 1.0), (0.0, 0.5, 0.2), (0, 0, 1), fov_deg=47.0, width=320, height=200)
    wxyz, pos = convert.camera_pose(cams, 0)
    back = convert.pose_to_camera(wxyz, pos, math.radians(47.0), 320, 200)
    np.testing.assert_allclose(back.viewmats().numpy(), cams.viewmats().numpy(), atol=1e-5)
    np.testing.assert_allclose(back.fy.numpy(), cams.fy.numpy(), rtol=1e-5)
    assert convert.render_size(320 / 200, 160) == (160, 100)


def test_frustum_cull_never_changes_a_render():
    from spatialvid.render import render_gaussians

    gen = torch.Generator().manual_seed(3)
    n = 3000
    g = Gaussians.from_points(torch.randn(n, 3, generator=gen) * 1.5, torch.rand(n, 3, generator=gen),
                              scale=0.05, opacity=0.7)
    g.log_scales = g.log_scales + torch.randn(n, 3, generator=gen) * 0.5
    for eye, fov in (((4.0, 0.0, 0.5), 40.0), ((0.5, 0.3, 0.2), 90.0), ((-2.0, 3.0, 1.0), 25.0)):
        cam = Cameras.look_at(eye, (0.0, 0.0, 0.0), (0, 0, 1), fov_deg=fov, width=96, height=64)
        keep = convert.frustum_mask(g.means, 4.0 * g.scales.amax(-1), cam)
        assert 0 < int(keep.sum()) < n
        with torch.no_grad():
            full = render_gaussians(g, cam)
            culled = render_gaussians(g[keep], cam)
        assert not (full.visible & ~keep).any()
        torch.testing.assert_close(culled.rgb, full.rgb, atol=1e-5, rtol=0)


def test_render_worker_drops_stale_requests_without_blocking():
    gate = threading.Event()
    started = threading.Event()
    done: list[int] = []

    def job(key, req):
        started.set()
        gate.wait(10)
        done.append(req)

    w = RenderWorker(job)
    try:
        w.submit("tab", 0)
        assert started.wait(5)
        t0 = time.perf_counter()
        for i in range(1, 11):  # the worker is stuck in a slow render: submitting must not wait for it
            w.submit("tab", i)
        submit_s = time.perf_counter() - t0
        assert not gate.is_set() and submit_s < 5  # returned while the render was still blocked
        w.submit("other tab", 100)
        gate.set()
        assert w.wait_idle(10)
        assert done == [0, 10, 100]  # the 9 stale requests of "tab" were dropped, newest kept
        assert w.stats["dropped"] == 9 and w.stats["rendered"] == 3
    finally:
        gate.set()
        w.stop()


# ---- server and GUI --------------------------------------------------------------------------------
def test_server_answers_http_on_loopback(app):
    assert app.server.get_host() == "127.0.0.1"
    with urllib.request.urlopen(app.url, timeout=10) as r:
        body = r.read().decode("utf-8", "replace")
    assert r.status == 200 and "<html" in body.lower()


def test_non_loopback_host_warns(sample):
    from viewer.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.warns(UserWarning, match="anyone who can reach it"):
        a = ViewerApp(Scene.load(sample[0]), config=ViewerConfig(host="0.0.0.0", port=0, thumbnail_px=0))
    a.stop()


def test_exact_modes_render_the_scene(app, sample):
    from PIL import Image

    sample_dir = sample[1]
    cam = app.scene.cameras[0]
    img, depth = app.render_image(cam, "exact rgb")
    gt = np.asarray(Image.open(app.scene.cameras.image_paths[0]).convert("RGB")).astype(np.float32)
    mse = float(((img.astype(np.float32) - gt) ** 2).mean())
    psnr = 10 * math.log10(255.0**2 / max(mse, 1e-9))
    assert psnr > 18, f"exact render of training camera 0 is far from its image (PSNR {psnr:.1f} dB)"
    gt_depth = np.load(sample_dir / "depth.npz")["depth"][0]
    ok = depth < 100
    assert ok.mean() > 0.9 and np.median(np.abs(depth[ok] - gt_depth[ok]) / gt_depth[ok]) < 0.05
    dimg, _ = app.render_image(cam, "exact depth")
    assert dimg.shape == img.shape and dimg.std() > 20
    cimg, _ = app.render_image(cam, "exact coverage")
    magenta = (cimg[..., 0] > 200) & (cimg[..., 1] < 60) & (cimg[..., 2] > 200)
    assert magenta.mean() < 0.05  # the gt scene covers the training view
    app.gui_captured.value = False  # nothing visible: everything is unseen
    try:
        cimg, _ = app.render_image(cam, "exact coverage")
        assert ((cimg[..., 0] > 200) & (cimg[..., 1] < 60)).mean() > 0.99
    finally:
        app.gui_captured.value = True


def test_keyframes_export_import_and_path_traversal(app, sample):
    scene_dir, _ = sample
    pp = app.path_panel
    pp.clear()
    _use_training_view(app, 0)
    pp.button_add.value = True  # "click" through viser's API (no client: uses the last view)
    _use_training_view(app, 8)
    pp.button_add.value = True
    _use_training_view(app, 15)
    pp.button_add.value = True
    assert len(pp.keyframes) == 3 and pp.gui_selected.value == "2"
    pp.gui_selected.value = "1"
    _use_training_view(app, 5)
    pp.button_move.value = True
    np.testing.assert_allclose(pp.keyframes[1].c2w, app.scene.cameras[5].c2w(opengl=True)[0].numpy(), atol=1e-4)
    pp.button_add.value = True
    pp.gui_selected.value = "3"
    pp.button_delete.value = True
    assert len(pp.keyframes) == 3
    pp.gui_duration.value = 2.0
    pp.gui_fps.value = 12
    pp.gui_file.value = "camera_path.json"
    pp.button_export.value = True
    data = json.loads((scene_dir / "paths" / "camera_path.json").read_text())
    assert data["camera_type"] == "perspective" and data["fps"] == 12
    assert data["render_width"] == int(pp.gui_width.value) and data["render_height"] == int(pp.gui_height.value)
    assert len(data["camera_path"]) == 24 and len(data["keyframes"]) == 3
    first = np.asarray(data["camera_path"][0]["camera_to_world"]).reshape(4, 4)  # row-major, OpenGL c2w
    np.testing.assert_allclose(first, app.scene.cameras[0].c2w(opengl=True)[0].numpy(), atol=1e-4)
    fov0 = float(app.scene.cameras.fov_y()[0])
    assert abs(data["camera_path"][0]["fov"] - fov0) < 1e-3
    # import restores the keyframes
    saved = [k.c2w.copy() for k in pp.keyframes]
    pp.clear()
    pp.button_import.value = True
    assert len(pp.keyframes) == 3
    for a, b in zip(saved, pp.keyframes):
        np.testing.assert_allclose(a, b.c2w, atol=1e-9)
    # a client cannot make the server read or write outside the scene folder
    outside = scene_dir.parent / "outside.json"
    before = {p.name: p.read_bytes() for p in scene_dir.iterdir() if p.is_file()}
    for name in ("../outside.json", str(outside), "sub/../../outside.json", "paths/../outside.json", "..",
                 "scene.json", "transforms.json", "paths/Scene.JSON", "../scene.json", "metrics.json"):
        pp.gui_file.value = name
        pp.button_export.value = True
        assert not outside.exists()
        assert "refused" in pp.status.content, name
    assert {p.name: p.read_bytes() for p in scene_dir.iterdir() if p.is_file()} == before  # scene intact
    assert sorted(p.name for p in (scene_dir / "paths").iterdir()) == ["camera_path.json"]
    outside.write_text(json.dumps(data))
    os.symlink(outside, scene_dir / "paths" / "link.json")
    pp.gui_file.value = "link.json"
    pp.button_import.value = True
    assert "refused" in pp.status.content and len(pp.keyframes) == 3
    pp.gui_video.value = "../escape.mp4"
    pp.button_render.value = True
    assert "refused" in pp.status.content and not (scene_dir.parent / "escape.mp4").exists()
    (scene_dir / "paths" / "link.json").unlink()
    pp.gui_file.value = "camera_path.json"


def test_thumbnails_only_from_the_scene_or_its_images_folder(tmp_path):
    from PIL import Image

    scene_dir = tmp_path / "scene"
    (scene_dir / "images").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    declared = tmp_path / "declared"
    declared.mkdir()
    cams = Cameras.cat([Cameras.look_at((2.0, 0.1 * i, 1.0), (0, 0, 0), name=f"{i}.png", width=32, height=24)
                        for i in range(4)])
    where = [scene_dir / "images" / "0.png", tmp_path / "private" / "1.png", declared / "2.png",
             scene_dir / "images" / ".." / ".." / "private" / "3.png"]
    for p in where:
        Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(p)
    cams.image_paths = [str(p) for p in where]
    g = Gaussians.from_points(torch.zeros(4, 3), torch.full((4, 3), 0.5))
    app = ViewerApp(Scene(g, cams, {"images_dir": str(declared)}), scene_dir=scene_dir,
                    config=ViewerConfig(port=0, thumbnail_px=24))
    try:
        thumbs = app._thumbnails(cams)
        app.scene.metadata["background"] = [1.0, 1.0, 1.0]  # trained on white: exact views show white
        away = Cameras.look_at((0.0, 0.0, 0.0), (0.0, 5.0, 0.0), width=16, height=12)
        rgb, alpha, _ = app._rasterize(app.scene.gaussians, away)
    finally:
        app.stop()
    assert [t is not None for t in thumbs] == [True, False, True, False]
    assert alpha.max() == 0 and rgb.min() == 1.0


def test_render_video_into_scene_folder(app, sample):
    import av

    scene_dir, _ = sample
    pp = app.path_panel
    pp.clear()
    _use_training_view(app, 0)
    pp.add_keyframe()
    _use_training_view(app, 4)
    pp.add_keyframe()
    pp.gui_duration.value, pp.gui_fps.value = 0.5, 10
    pp.gui_width.value, pp.gui_height.value = 96, 64
    pp.gui_video.value = "clips/path.mp4"
    pp.button_render.value = True
    assert app.wait_for_jobs(120)
    out = scene_dir / "clips" / "path.mp4"
    assert out.exists(), pp.status.content
    with av.open(str(out)) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)
    ref, _ = app.render_image(pp.camera_path().cameras()[0], "exact rgb")  # first frame = keyframe 0 view
    assert np.abs(frames[0].astype(np.float32) - ref).mean() < 12  # H.264 at crf 18: close to the render
    assert not pp.progress.visible and "Rendered" in pp.status.content
    pp.clear()


def test_fill_from_here_then_undo_and_save(app, sample):
    scene_dir, sample_dir = sample
    held, view, mask = _hidden_view(sample_dir)  # the held-out view that sees most of the hidden region
    before = app.scene.gaussians.clone()
    n_hist = len(app.scene.history)
    # the view GUI actions use: that held-out camera
    from viewer.app import View

    wxyz, pos = convert.camera_pose(held, view)
    app._last_view = View(np.asarray(wxyz), np.asarray(pos), math.radians(float(held.fov_y()[view])),
                          float(held.width[view]) / float(held.height[view]))
    # hide the gt's hidden objects from the scene first (as if the video never saw them): drop the Gaussians
    # that project inside the hidden mask of that view
    uv, z = held[view].project(before.means)
    u, v = uv[0, :, 0].long(), uv[0, :, 1].long()
    h, w = mask.shape
    inside = (z[0] > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    hit = torch.zeros_like(inside)
    hit[inside] = torch.from_numpy(mask)[v[inside], u[inside]]
    app.set_scene(Scene(gaussians=before[~hit], cameras=app.scene.cameras, metadata=app.scene.metadata,
                        history=list(app.scene.history)), dirty=False)
    base = app.scene.gaussians.clone()
    app.fill_panel.button_fill.value = True
    assert app.wait_for_jobs(120)
    g = app.scene.gaussians
    assert len(g) > len(base), app.fill_panel.status.content
    cap = g[g.origin == CAPTURED]
    torch.testing.assert_close(cap.means, base.means)  # captured Gaussians untouched
    torch.testing.assert_close(cap.sh0, base.sh0)
    assert int((g.origin == GENERATED).sum()) == len(g) - len(base)
    assert len(app.scene.history) == n_hist + 1 and app.dirty
    app.fill_panel.button_undo.value = True
    assert app.wait_for_jobs(60)
    assert len(app.scene.gaussians) == len(base)
    app.fill_panel.button_save.value = True
    assert app.wait_for_jobs(60)
    again = Scene.load(scene_dir)
    assert len(again.gaussians) == len(base) and not app.dirty
    app.fill_panel.button_fill.value = True  # fill again: the browser test shows the result (coverage: cyan)
    assert app.wait_for_jobs(120) and len(app.scene.gaussians) > len(base)


def test_failed_fill_leaves_scene_intact(app, monkeypatch):
    import spatialvid.generate as gen

    scene_before = app.scene
    n = len(scene_before.gaussians)

    def broken_fill(scene, camera, **kw):  # changes its scene, then dies (like a client vanishing mid-fill)
        scene.gaussians = Gaussians.cat([scene.gaussians, scene.gaussians[:10]])
        scene.add_history("fill")
        raise RuntimeError("connection lost")

    monkeypatch.setattr(gen, "fill_view", broken_fill, raising=False)
    app.fill_panel.button_fill.value = True
    assert app.wait_for_jobs(30)
    assert app.scene is scene_before and len(app.scene.gaussians) == n
    assert app.busy is None  # the operation slot was released


def test_training_live_view_and_pause(sample):
    scene_dir, _ = sample
    scene = Scene.load(scene_dir)
    a = ViewerApp(scene, config=ViewerConfig(port=0, training_refresh_s=0.5), training=True)
    try:
        part = scene.gaussians[: len(scene.gaussians) // 2]
        a.update_training(part, {"step": 10, "loss": 0.25, "psnr": 21.5})
        assert a.training_panel.flush(10)
        assert len(a.scene.gaussians) == len(part) and a.training_panel.updates == 1
        assert "psnr: 21.5" in a.training_panel.stats_md.content
        a.update_training(scene.gaussians, {"step": 11})  # within the refresh interval: stats only
        assert a.training_panel.flush(10) and len(a.scene.gaussians) == len(part)
        assert not a.paused and a.wait_while_paused(0.01)
        a.training_panel.button_pause.value = True
        assert a.paused and not a.wait_while_paused(0.05)
        a.training_panel.button_pause.value = True
        assert not a.paused and a.wait_while_paused(0.01)
    finally:
        a.stop()


def test_cli_view_reports_bad_folder(tmp_path, capsys):
    from spatialvid.cli import main

    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "not a scene folder" in capsys.readouterr().err


# ---- a real browser ----------------------------------------------------------------------------------
def _save_png(img: np.ndarray, name: str) -> None:
    from PIL import Image

    ARTIFACTS.mkdir(exist_ok=True)
    tmp = ARTIFACTS / (name + ".tmp")
    im = Image.fromarray(img)
    im.reduce(2).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, ARTIFACTS / name)


def _shot(page) -> np.ndarray:
    import io

    from PIL import Image

    with contextlib.suppress(Exception):  # hide the "software WebGL" notice: it clutters the screenshots
        page.evaluate("() => { const n = document.getElementById('webgl-software-rendering');"
                      " if (n) n.style.visibility = 'hidden'; }")
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))


def _wait_for_view(page, prev: np.ndarray | None, timeout: float = 30.0) -> np.ndarray:
    """Screenshot once the 3D view shows a scene (not blank) that differs from ``prev`` (the last mode).

    Software WebGL on a busy CPU can take seconds per frame, so screenshots are few and checked at once."""
    end = time.time() + timeout
    while True:
        img = _shot(page)
        view = img[170:470, 10:300].astype(np.float32)  # left: the GUI panel floats on the right
        shows = view.std() > 12 and (view.min(-1) < 235).mean() > 0.2
        changed = prev is None or np.abs(view - prev[170:470, 10:300]).mean() > 3
        if (shows and changed) or time.time() > end:
            assert shows, f"the 3D view looks blank (std {view.std():.1f})"
            assert changed, "the view did not change with the mode"
            return img
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install chromium)")
def test_browser_loads_scene_in_every_mode(app, sample):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) missing")
    _use_training_view(app, 0)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 640, "height": 480})
            n0 = len(app.server.get_clients())
            page.goto(app.url)
            end = time.time() + 30
            while len(app.server.get_clients()) <= n0 and time.time() < end:
                time.sleep(0.1)
            clients = [c for c in app.server.get_clients().values()]
            assert len(clients) > n0, "the page never opened a websocket to the server"
            client = clients[-1]
            while client.camera.update_timestamp == 0.0 and time.time() < end:
                time.sleep(0.1)
            # clicking a training frustum jumps there (its click callback, as viser calls it); the browser
            # reports the new camera back
            from viser._scene_handles import SceneNodePointerEvent

            frustum = app._frustums[3]
            event = SceneNodePointerEvent(client=client, client_id=client.client_id, event="click", target=frustum,
                                          ray_origin=(0.0, 0.0, 0.0), ray_direction=(1.0, 0.0, 0.0),
                                          screen_pos=(0.5, 0.5), instance_index=None, modifier=None)
            for entry in frustum._impl.click_cb:
                entry.callback(event)
            want = app.scene.cameras.centers()[3].numpy()
            while time.time() < end and np.linalg.norm(client.camera.position - want) > 1e-3:
                time.sleep(0.1)
            np.testing.assert_allclose(client.camera.position, want, atol=1e-3)
            assert client.client_id in app._hidden_frustum  # its thumbnail would cover the view
            if sample[1] is not None:  # look where the video saw nothing (filled by the fill test, if it ran)
                held, view, _ = _hidden_view(sample[1])
                wxyz, pos = convert.camera_pose(held, view)
                app.set_client_view(client, wxyz, pos, math.radians(float(held.fov_y()[view])))
            # a second tab sees the same scene and gets its own exact renders
            page2 = browser.new_page(viewport={"width": 480, "height": 360})
            page2.goto(app.url)
            while len(app.server.get_clients()) <= n0 + 1 and time.time() < end + 20:
                time.sleep(0.1)
            assert len(app.server.get_clients()) >= n0 + 2
            rendered = app._worker.stats["rendered"]
            app.gui_mode.value = "exact rgb"
            assert app.wait_renders(60)
            assert app._worker.stats["rendered"] >= rendered + 2  # both tabs got a frame
            assert _shot(page2)[120:350, 10:150].std() > 12
            # a tab that closes while its render is queued or running breaks nothing
            app.request_renders()
            page2.close()  # (also spares the software WebGL renderer the second page)
            end = time.time() + 15
            while len(app.server.get_clients()) > n0 + 1 and time.time() < end:
                time.sleep(0.1)
            assert len(app.server.get_clients()) == n0 + 1
            app.request_renders()
            assert app.wait_renders(60) and app._worker.stats["failed"] == 0
            # every view mode, one screenshot each (kept in tests/artifacts for the README)
            prev = None
            # in this order each mode looks different from the one before (splats and exact rgb look alike)
            for mode in ("splats", "exact depth", "exact coverage", "exact rgb"):
                app.gui_mode.value = mode
                if mode != "splats":
                    assert app.wait_renders(60)
                img = _wait_for_view(page, prev)
                _save_png(img, f"viewer_{mode.replace(' ', '_')}.png")
                prev = img
            # preview playback moves the client's camera along the path, ending at the last keyframe
            pp = app.path_panel
            pp.clear()
            _use_training_view(app, 0)
            pp.add_keyframe()
            _use_training_view(app, 6)
            pp.add_keyframe()
            pp.gui_duration.value = 0.5
            pp.toggle_preview(client)
            pp._preview_thread.join(20)
            want = app.scene.cameras.centers()[6].numpy()
            end = time.time() + 10
            while time.time() < end and np.linalg.norm(client.camera.position - want) > 1e-3:
                time.sleep(0.1)
            np.testing.assert_allclose(client.camera.position, want, atol=1e-3)
            pp.clear()
        finally:
            app.gui_mode.value = "splats"
            browser.close()
