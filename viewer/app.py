"""The spatialvid web viewer: a viser server that shows a :class:`~spatialvid.scene.Scene`.

* Smooth navigation with viser's client-side Gaussian splats (activations applied, colour from the SH DC
  term, covariances R S^2 R^T from scales and quaternions).
* Exact modes: the server renders each client's camera with spatialvid's rasterizer (view-dependent SH) in a
  worker thread (newest request per client wins, so navigation never waits) and sends it as the background
  image: ``rgb``, ``depth`` (turbo false colour) or ``coverage`` (unseen pixels magenta, generated cyan).
* Training cameras as frustums with thumbnails; click one to jump there. Captured / generated toggles.
* Fill from here, undo, save (atomic) - see :mod:`viewer.fill_panel`; camera path editor - see
  :mod:`viewer.path_panel`; live training view - :meth:`ViewerApp.update_training` and
  :meth:`ViewerApp.wait_while_paused` (see :mod:`viewer.training_panel`).

Security: binds 127.0.0.1 unless told otherwise (and warns when not loopback); files named by a client are
resolved and refused unless inside the scene folder (:func:`viewer.security.resolve_inside`); camera paths
are exported into ``SCENE/paths/`` only and never under a scene file's name
(:func:`viewer.security.resolve_path_file`); thumbnails are read only from the scene folder or its declared
``images_dir`` (:meth:`ViewerApp.image_roots`).
Long operations run on a private copy of the scene and are swapped in only when complete, so a client that
disconnects (or an error) mid-operation leaves the scene intact.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import viser

from spatialvid.cameras import Cameras
from spatialvid.errors import SpatialvidError
from spatialvid.gaussians import CAPTURED, GENERATED, Gaussians, rgb_to_sh0
from spatialvid.scene import Scene
from viewer import convert
from viewer.render_worker import RenderWorker
from viewer.security import allowed_image

log = logging.getLogger(__name__)

MODES = ("splats", "exact rgb", "exact depth", "exact coverage")
"""View modes: client-side splats, or server renders in rgb / depth / coverage."""


@dataclass
class ViewerConfig:
    """Viewer settings (all have CLI or GUI equivalents).

    host/port: where to listen (port 0 = any free port). exact_max_side: longer side in pixels of server
    renders. fill_max_side: longer side of the camera "Fill from here" uses (None = the training images'
    size). jpeg_quality: of the background images. thumbnail_px: height of frustum thumbnails (0 = none).
    max_thumbnails: frustums beyond this count get no image. training_refresh_s: least seconds between two
    splat refreshes during training. backend: rasterizer backend ("auto", "cpu", "cuda", "torch").
    device: where exact renders and fills run ("auto" = cuda when available, "cpu", "cuda"); the scene itself
    stays on the CPU (for the splats sent to the browser and for saving), with one cached copy on the device.
    fill_kwargs: extra keyword arguments for :func:`spatialvid.generate.fill_view`.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    exact_max_side: int = 512
    fill_max_side: int | None = None
    jpeg_quality: int = 85
    thumbnail_px: int = 96
    max_thumbnails: int = 300
    training_refresh_s: float = 2.0
    backend: str = "auto"
    device: str = "auto"
    fill_kwargs: dict[str, Any] = field(default_factory=dict)
    verbose: bool = False


def is_loopback(host: str) -> bool:
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _on_cpu(scene: Scene) -> Scene:
    """``scene`` itself, or a copy with its Gaussians on the CPU (the viewer's own copy; see ViewerConfig)."""
    if scene.gaussians.device.type == "cpu":
        return scene
    return Scene(gaussians=scene.gaussians.to("cpu"), cameras=scene.cameras, metadata=scene.metadata,
                 history=scene.history)


def copy_scene(scene: Scene) -> Scene:
    """A copy whose Gaussians, metadata and history can be changed without touching ``scene``."""
    import copy

    return Scene(gaussians=scene.gaussians.clone(), cameras=scene.cameras.clone(),
                 metadata=copy.deepcopy(scene.metadata), history=copy.deepcopy(scene.history))


@dataclass
class View:
    """A client's viewpoint in viser's convention (OpenCV camera-to-world quaternion + centre, vertical fov
    in radians, aspect = width / height)."""

    wxyz: np.ndarray
    position: np.ndarray
    fov: float
    aspect: float

    def camera(self, max_side: int, name: str = "view") -> Cameras:
        w, h = convert.render_size(self.aspect, max_side)
        return convert.pose_to_camera(self.wxyz, self.position, self.fov, w, h, name=name)


class ViewerApp:
    """The viewer. ``scene_dir`` is the folder the scene was loaded from (and the only folder a client may
    make the server read or write); ``None`` disables save, export, import and video rendering.
    ``training=True`` adds the training panel (see :meth:`update_training`) and hides fill.
    """

    def __init__(self, scene: Scene, scene_dir: str | Path | None = None, config: ViewerConfig | None = None,
                 training: bool = False):
        self.config = config or ViewerConfig()
        from spatialvid.device import check_backend, resolve_device

        self.device = resolve_device(self.config.device, self.config.backend)
        check_backend(self.config.backend, self.device)
        self._device_copy: tuple[Gaussians, Gaussians] | None = None  # (scene Gaussians, their device copy)
        self.scene_dir = Path(scene_dir).resolve() if scene_dir is not None else None
        self.training = training
        self._scene = _on_cpu(scene)
        self._lock = threading.RLock()  # guards self._scene and the splat handles
        self._op_lock = threading.Lock()  # one long operation (fill, undo, save, video) at a time
        self.busy: str | None = None
        self.dirty = False
        self.scene_version = 0
        self._jobs: list[threading.Thread] = []
        self._last_view: View | None = None
        self._splat_handles: dict[int, Any] = {}
        self._frustums: list[Any] = []
        self._hidden_frustum: dict[int, list[Any]] = {}
        self._stopped = False

        if not is_loopback(self.config.host):
            warnings.warn(f"the viewer listens on {self.config.host}, not only on this machine: anyone who can "
                          "reach it can view and edit the scene", stacklevel=2)
        self.server = viser.ViserServer(host=self.config.host, port=self.config.port, verbose=self.config.verbose)
        self.server.gui.configure_theme(control_width="medium")
        up = np.asarray(scene.metadata.get("up", [0.0, 0.0, 1.0]), dtype=np.float64)
        self.up = up / (np.linalg.norm(up) or 1.0)
        self.server.scene.set_up_direction(tuple(self.up))
        self.extent = convert.scene_extent(scene.cameras, scene.gaussians)
        self._set_initial_camera()

        self._worker = RenderWorker(self._render_job)
        self._build_gui()
        self._draw_splats()
        self._draw_frustums()
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)

    # ---- basic properties ---------------------------------------------------------------------
    @property
    def scene(self) -> Scene:
        with self._lock:
            return self._scene

    @property
    def port(self) -> int:
        return int(self.server.get_port())

    @property
    def url(self) -> str:
        host = self.server.get_host()
        host = "localhost" if host in ("0.0.0.0", "::") else host
        return f"http://{host}:{self.port}"

    @property
    def mode(self) -> str:
        return str(self.gui_mode.value)

    def stop(self) -> None:
        """Stop the render worker and the server (waits for running operations up to 60 s)."""
        self._stopped = True
        if self.training_panel is not None:
            self.training_panel.close()
        self.wait_for_jobs(60)
        self._worker.stop()
        self.server.stop()

    # ---- GUI ----------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        from viewer.fill_panel import FillPanel
        from viewer.path_panel import CameraPathPanel
        from viewer.training_panel import TrainingPanel

        gui = self.server.gui
        tabs = gui.add_tab_group()
        with tabs.add_tab("View", icon=None):
            self.gui_mode = gui.add_dropdown("Mode", MODES, initial_value=MODES[0],
                                             hint="splats: fast client-side preview; exact: the server renders "
                                                  "your view with spatialvid's rasterizer")
            self.gui_captured = gui.add_checkbox("Captured", True, hint="Gaussians fitted to the video")
            self.gui_generated = gui.add_checkbox("Generated", True, hint="Gaussians added by fill")
            self.gui_cameras = gui.add_checkbox("Training cameras", True)
            side = int(self.config.exact_max_side)
            self.gui_res = gui.add_slider("Exact size (px)", min(64, side), max(1536, side), 32, side,
                                          hint="longer side of server renders (smaller = faster)")
            self.gui_info = gui.add_markdown(self._info_text())
        self.gui_mode.on_update(lambda _e: self._on_mode_change())
        self.gui_captured.on_update(lambda _e: self._on_visibility_change())
        self.gui_generated.on_update(lambda _e: self._on_visibility_change())
        self.gui_cameras.on_update(lambda _e: self._on_cameras_toggle())
        self.gui_res.on_update(lambda _e: self.request_renders())

        self.fill_panel = None
        self.training_panel = None
        if self.training:
            with tabs.add_tab("Training"):
                self.training_panel = TrainingPanel(self)
        else:
            with tabs.add_tab("Fill & save"):
                self.fill_panel = FillPanel(self)
        with tabs.add_tab("Camera path"):
            self.path_panel = CameraPathPanel(self)

    def _info_text(self) -> str:
        g = self.scene.gaussians
        n_gen = int((g.origin == GENERATED).sum())
        s = self._worker.stats if hasattr(self, "_worker") else {}
        lines = [f"**{len(g):,}** Gaussians ({len(g) - n_gen:,} captured, {n_gen:,} generated), "
                 f"SH degree {g.sh_degree}, {len(self.scene.cameras)} training cameras."]
        if self.scene_dir is not None:
            lines.append(f"Scene folder: `{self.scene_dir.name}`" + (" (unsaved changes)" if self.dirty else ""))
        if s.get("rendered"):
            lines.append(f"Exact renders: {s['rendered']} sent, {s['dropped']} stale dropped, "
                         f"last {self.last_render_ms:.0f} ms.")
        return "\n\n".join(lines)

    def refresh_info(self) -> None:
        self.gui_info.content = self._info_text()

    def notify(self, client: viser.ClientHandle | None, title: str, body: str, error: bool = False) -> None:
        """Show a notification to ``client`` (or to every client when ``None``)."""
        clients = [client] if client is not None else list(self.server.get_clients().values())
        for c in clients:
            with contextlib.suppress(Exception):
                c.add_notification(title, body, auto_close_seconds=8.0 if not error else 15.0,
                                   color="red" if error else None)

    # ---- camera handling ------------------------------------------------------------------------
    def _set_initial_camera(self) -> None:
        cams = self.scene.cameras
        if len(cams):
            wxyz, pos = convert.camera_pose(cams, 0)
            fwd = cams[0].c2w()[0, :3, 2].double().numpy()
            pos = pos - fwd * 0.3 * self.extent  # a step behind camera 0, so its frustum is in view
            self.server.initial_camera.position = tuple(pos)
            self.server.initial_camera.look_at = tuple(pos + fwd * self.extent)
            self.server.initial_camera.up = tuple(self.up)
            self.server.initial_camera.fov = float(math.radians(float(cams.fov_y()[0])))
            self._last_view = View(wxyz=np.asarray(wxyz), position=np.asarray(pos),
                                   fov=math.radians(float(cams.fov_y()[0])),
                                   aspect=float(cams.width[0]) / float(cams.height[0]))

    @staticmethod
    def client_view(client: viser.ClientHandle) -> View | None:
        """The client's current viewpoint, or ``None`` before its camera reported once."""
        cam = client.camera
        if cam.update_timestamp == 0.0:
            return None
        aspect = float(cam.aspect) if cam.aspect else 1.0
        return View(wxyz=np.array(cam.wxyz, dtype=np.float64), position=np.array(cam.position, dtype=np.float64),
                    fov=float(cam.fov), aspect=aspect)

    def current_view(self, client: viser.ClientHandle | None = None) -> View:
        """The view of ``client``; else the last view any client reported; else the first training camera."""
        if client is not None:
            v = self.client_view(client)
            if v is not None:
                self._last_view = v
                return v
        if self._last_view is None:
            return View(np.array([1.0, 0, 0, 0]), np.array([0.0, -3.0, 0.0]), math.radians(60), 1.0)
        return self._last_view

    def current_camera(self, client: viser.ClientHandle | None = None, max_side: int | None = None) -> Cameras:
        """:class:`Cameras` (1 camera) of :meth:`current_view` with the longer side ``max_side`` px."""
        return self.current_view(client).camera(int(max_side or self.gui_res.value))

    def set_client_view(self, client: viser.ClientHandle, wxyz, position, fov: float | None = None) -> None:
        """Move a client's camera (OpenCV camera-to-world quaternion + centre, vertical fov in radians)."""
        cam = client.camera
        if cam.update_timestamp == 0.0:
            return
        pos = np.asarray(position, dtype=np.float64)
        fwd = convert.vtf.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix()[:, 2]
        with client.atomic():
            if fov is not None:
                cam.fov = float(fov)
            cam.position = pos
            cam.look_at = pos + fwd * max(self.extent, 1e-3)
            cam.up_direction = self.up
            cam.wxyz = np.asarray(wxyz, dtype=np.float64)
        self._last_view = View(np.asarray(wxyz, dtype=np.float64), pos, float(fov if fov else cam.fov),
                               float(cam.aspect or 1.0))

    def jump_to_camera(self, client: viser.ClientHandle | None, index: int) -> None:
        """Move ``client``'s camera (every client when ``None``) to training camera ``index``."""
        cams = self.scene.cameras
        wxyz, pos = convert.camera_pose(cams, index)
        fov = math.radians(float(cams.fov_y()[index]))
        targets = [client] if client is not None else list(self.server.get_clients().values())
        for c in targets:
            self.set_client_view(c, wxyz, pos, fov)
            self._hide_frustum_for(c, index, pos)

    def _hide_frustum_for(self, client: viser.ClientHandle, index: int | None, position=None) -> None:
        """Hide training frustum ``index`` for this client only (its thumbnail would cover the view when
        looking through that camera): a client-scoped node of the same name shadows the shared one."""
        old = self._hidden_frustum.pop(client.client_id, None)
        if old is not None:
            with contextlib.suppress(Exception):
                old[0].remove()
        if index is not None:
            with contextlib.suppress(Exception):
                node = client.scene.add_frame(f"/cameras/{index:04d}", show_axes=False, visible=False)
                # [node, camera centre, armed]: armed once the client reported being there, so a stale
                # camera update from before the jump does not show the frustum again
                self._hidden_frustum[client.client_id] = [node, np.asarray(position, dtype=np.float64), False]

    def _on_connect(self, client: viser.ClientHandle) -> None:
        client.camera.on_update(lambda _cam: self._on_camera(client))
        if self.mode != "splats":
            self.request_render(client)

    def _on_disconnect(self, client: viser.ClientHandle) -> None:
        self._worker.discard(client.client_id)
        self._hidden_frustum.pop(client.client_id, None)

    def _on_camera(self, client: viser.ClientHandle) -> None:
        v = self.client_view(client)
        if v is not None:
            self._last_view = v
            hidden = self._hidden_frustum.get(client.client_id)
            if hidden is not None:
                dist = float(np.linalg.norm(v.position - hidden[1]))
                if dist < 0.02 * self.extent:
                    hidden[2] = True
                elif hidden[2] and dist > 0.2 * self.extent:
                    self._hide_frustum_for(client, None)  # moved away: show that camera again
        if self.mode != "splats":
            self.request_render(client, preview=True)

    # ---- exact renders --------------------------------------------------------------------------
    last_render_ms: float = 0.0

    def request_render(self, client: viser.ClientHandle, preview: bool = False) -> None:
        """Queue an exact render of ``client``'s view (returns at once; a newer request replaces it).

        ``preview``: the camera is moving: render at half size first; the full size follows as soon as no
        newer request is waiting (so a moving camera gets more, cheaper frames)."""
        v = self.client_view(client)
        if v is None or self.mode == "splats":
            return
        full = int(self.gui_res.value)
        side = max(96, full // 2) if preview else full
        self._worker.submit(client.client_id, (v, self.mode, side, side < full))

    def request_renders(self) -> None:
        for c in list(self.server.get_clients().values()):
            self.request_render(c)

    def wait_renders(self, timeout: float = 60.0) -> bool:
        return self._worker.wait_idle(timeout)

    def scene_gaussians_on_device(self) -> Gaussians:
        """The scene's Gaussians on ``self.device`` (a copy made once per scene change; the scene itself
        stays on the CPU)."""
        g = self.scene.gaussians
        if g.device == self.device:
            return g
        with self._lock:
            if self._device_copy is None or self._device_copy[0] is not g:
                self._device_copy = (g, g.to(self.device))
            return self._device_copy[1]

    def visible_gaussians(self, on_device: bool = False) -> Gaussians:
        """The Gaussians the captured / generated toggles leave visible (on ``self.device`` with
        ``on_device``)."""
        g = self.scene_gaussians_on_device() if on_device else self.scene.gaussians
        keep = torch.zeros(len(g), dtype=torch.bool, device=g.device)
        if self.gui_captured.value:
            keep |= g.origin == CAPTURED
        if self.gui_generated.value:
            keep |= g.origin == GENERATED
        return g if bool(keep.all()) else g[keep]

    def render_image(self, camera: Cameras, mode: str = "exact rgb") -> tuple[np.ndarray, np.ndarray | None]:
        """Render ``camera`` in a view mode: (uint8 [H,W,3] image, z-depth [H,W] for compositing or None)."""
        g = self.visible_gaussians(on_device=True)
        h, w = int(camera.height[0]), int(camera.width[0])
        if len(g) == 0:
            img = np.zeros((h, w, 3), np.uint8)
            if mode == "exact coverage":
                img[:] = (convert.UNSEEN_COLOR * 255).astype(np.uint8)
            return img, None
        if mode == "exact coverage":
            # one pass with false colours: R = luminance of the base (DC) colour, G = 1 for generated Gaussians
            lum = g.colors @ torch.tensor([0.299, 0.587, 0.114], device=g.device)
            code = torch.stack([lum, (g.origin == GENERATED).float(), torch.zeros_like(lum)], -1)
            marker = Gaussians(**{**vars(g.detach()), "sh0": rgb_to_sh0(code), "shN": g.shN[:, :0]})
            c_rgb, alpha, _ = self._rasterize(marker, camera, background=(0.0, 0.0, 0.0))
            a = np.maximum(alpha, 1e-6)
            grey = np.repeat((c_rgb[..., 0] / a)[..., None], 3, -1)
            return convert.colorize_coverage(grey, alpha, c_rgb[..., 1] / a), None
        rgb, alpha, depth = self._rasterize(g, camera)
        if mode == "exact depth":
            return convert.colorize_depth(depth, alpha), None
        # rgb: composite scene elements (frustums, keyframes) against the render's depth; empty = far away
        comp = np.where(alpha > 0.5, depth, 160.0).astype(np.float32)
        return convert.to_uint8(rgb), comp

    def _rasterize(self, g: Gaussians, camera: Cameras, background=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """spatialvid's rasterizer (all SH degrees; the scene's trained background and antialiasing unless
        ``background`` is given): rgb [H,W,3], alpha, z-depth [H,W]."""
        from spatialvid.render import render_gaussians
        from spatialvid.render.api import render_settings

        look = render_settings(self.scene)
        bg = look["background"] if background is None else tuple(background)
        dev = self.device
        with torch.no_grad():
            # cull outside the view first (4 sigma spheres, 2 px margin): the rasterizer then projects and
            # evaluates SH only for what can show up, most of the cost when the view sees part of the scene
            keep = convert.frustum_mask(g.means, 4.0 * g.scales.amax(-1), camera)
            if not bool(keep.all()):
                g = g[keep]
            if len(g) == 0:
                h, w = int(camera.height[0]), int(camera.width[0])
                return (np.broadcast_to(np.asarray(bg, np.float32), (h, w, 3)).copy(), np.zeros((h, w), np.float32),
                        np.zeros((h, w), np.float32))
            out = render_gaussians(g.to(dev), camera, backend=self.config.backend,
                                   background=torch.tensor(bg, dtype=torch.float32, device=dev),
                                   antialiased=look["antialiased"])
        return tuple(t.detach().float().cpu().numpy() for t in (out.rgb, out.alpha, out.depth))

    def _render_job(self, client_id: int, request: tuple[View, str, int, bool]) -> None:
        view, mode, max_side, refine = request
        t0 = time.perf_counter()
        img, depth = self.render_image(view.camera(max_side), mode)
        self.last_render_ms = 1000 * (time.perf_counter() - t0)
        client = self.server.get_clients().get(client_id)
        if client is None or self.mode == "splats":  # disconnected or switched back meanwhile: drop quietly
            return
        with contextlib.suppress(Exception):  # the socket may close under us
            client.scene.set_background_image(img, format="jpeg", jpeg_quality=self.config.jpeg_quality,
                                              depth=depth)
        if refine and not self._worker.has_pending(client_id):  # the camera stopped: now the full size
            self._worker.submit(client_id, (view, mode, int(self.gui_res.value), False))
        self.refresh_info()

    # ---- scene drawing ------------------------------------------------------------------------
    def _draw_splats(self) -> None:
        """(Re)send the client-side splats, one node per origin (so the toggles are instant)."""
        with self._lock:
            g = self._scene.gaussians
            show = {CAPTURED: bool(self.gui_captured.value), GENERATED: bool(self.gui_generated.value)}
            for origin, name in ((CAPTURED, "/splats/captured"), (GENERATED, "/splats/generated")):
                part = g[g.origin == origin]
                handle = self._splat_handles.get(origin)
                if len(part) == 0:
                    if handle is not None:
                        handle.remove()
                        del self._splat_handles[origin]
                    continue
                arrays = convert.splat_arrays(part)
                visible = show[origin] and self.mode == "splats"
                if handle is None:
                    self._splat_handles[origin] = self.server.scene.add_gaussian_splats(
                        name, visible=visible, **arrays)
                else:
                    handle.set_gaussians(**arrays)
                    handle.visible = visible

    def _draw_frustums(self) -> None:
        for h in self._frustums:
            h.remove()
        self._frustums = []
        cams = self.scene.cameras
        fovs = cams.fov_y()
        thumbs = self._thumbnails(cams)
        for i in range(len(cams)):
            wxyz, pos = convert.camera_pose(cams, i)
            h = self.server.scene.add_camera_frustum(
                f"/cameras/{i:04d}", fov=math.radians(float(fovs[i])),
                aspect=float(cams.width[i]) / float(cams.height[i]), scale=0.12 * self.extent,
                thickness=0.004 * self.extent, image=thumbs[i], format="jpeg", wxyz=wxyz, position=pos,
                color=(60, 110, 230), visible=bool(self.gui_cameras.value))
            h.on_click(lambda e, i=i: self.jump_to_camera(e.client, i))
            self._frustums.append(h)

    def image_roots(self) -> list[Path] | None:
        """Folders the viewer reads camera images from: the scene folder and the images folder its metadata
        declares (``images_dir``, relative to the scene folder or absolute); ``None`` (no limit) for a scene
        handed over in memory without a folder (the live training view of the user's own input)."""
        if self.scene_dir is None:
            return None
        roots = [self.scene_dir]
        d = self.scene.metadata.get("images_dir")
        if isinstance(d, str) and d:
            roots.append(self.scene_dir / d)  # an absolute images_dir replaces the prefix
        return roots

    def _thumbnails(self, cams: Cameras) -> list[np.ndarray | None]:
        from PIL import Image

        from spatialvid.io.decode import image_size

        out: list[np.ndarray | None] = []
        px = int(self.config.thumbnail_px)
        roots = self.image_roots()
        for i, p in enumerate(cams.image_paths):
            img = None
            if roots is not None:
                p = allowed_image(roots, p)
            if px > 0 and p and i < self.config.max_thumbnails:
                try:
                    image_size(p)  # empty files and huge headers are refused before decoding
                    with Image.open(p) as im:
                        im.draft("RGB", (px * 4, px * 4))
                        im = im.convert("RGB")
                        im.thumbnail((px * 4, px))
                        img = np.asarray(im)
                except (OSError, ValueError, SpatialvidError):
                    img = None
            out.append(img)
        return out

    def _on_mode_change(self) -> None:
        exact = self.mode != "splats"
        with self._lock:
            for origin, handle in self._splat_handles.items():
                on = self.gui_captured.value if origin == CAPTURED else self.gui_generated.value
                handle.visible = bool(on) and not exact
        if exact:
            self.request_renders()
        else:
            for c in list(self.server.get_clients().values()):
                with contextlib.suppress(Exception):
                    c.scene.set_background_image(None)

    def _on_visibility_change(self) -> None:
        self._on_mode_change()

    def _on_cameras_toggle(self) -> None:
        for h in self._frustums:
            h.visible = bool(self.gui_cameras.value)

    def scene_changed(self) -> None:
        """Call after the scene's Gaussians changed: refresh splats, exact renders and the info text."""
        self.scene_version += 1
        self._draw_splats()
        self.request_renders()
        self.refresh_info()

    def set_scene(self, scene: Scene, dirty: bool = True) -> None:
        """Replace the scene shown (cameras are redrawn when they changed)."""
        with self._lock:
            cams_changed = len(scene.cameras) != len(self._scene.cameras) or not torch.equal(
                scene.cameras.viewmats(), self._scene.cameras.viewmats())
            self._scene = _on_cpu(scene)
            self.dirty = self.dirty or dirty
        if cams_changed:
            self._draw_frustums()
        self.scene_changed()

    # ---- long operations (fill, undo, save, video) ---------------------------------------------
    @contextlib.contextmanager
    def operation(self, name: str) -> Iterator[None]:
        """Hold the one-long-operation slot; raises :class:`SpatialvidError` when another one runs."""
        if not self._op_lock.acquire(blocking=False):
            raise SpatialvidError(f"busy with {self.busy}: try again when it is done")
        self.busy = name
        try:
            yield
        finally:
            self.busy = None
            self._op_lock.release()

    def run_job(self, name: str, fn: Callable[[], Any], client: viser.ClientHandle | None = None,
                on_done: Callable[[Any], None] | None = None) -> threading.Thread:
        """Run ``fn`` in a background thread (so GUI callbacks return at once); errors become notifications."""

        def target() -> None:
            try:
                result = fn()
            except SpatialvidError as e:
                self.notify(client, f"{name} failed", str(e), error=True)
                log.warning("%s failed: %s", name, e)
                return
            except Exception as e:  # keep the server alive; show the problem
                log.exception("%s failed", name)
                self.notify(client, f"{name} failed", f"{type(e).__name__}: {e}", error=True)
                return
            if on_done is not None:
                on_done(result)

        t = threading.Thread(target=target, name=f"viewer-{name}", daemon=True)
        self._jobs = [j for j in self._jobs if j.is_alive()] + [t]
        t.start()
        return t

    def wait_for_jobs(self, timeout: float = 300.0) -> bool:
        """Wait for background operations started by GUI actions; False on timeout."""
        end = time.time() + timeout
        for j in list(self._jobs):
            j.join(max(0.0, end - time.time()))
        return not any(j.is_alive() for j in self._jobs)

    def save(self) -> Path:
        """Write the scene to its folder (each file atomically; scene.json last)."""
        if self.scene_dir is None:
            raise SpatialvidError("this viewer has no scene folder to save to")
        with self.operation("save"):
            with self._lock:
                scene = self._scene
            scene.save(self.scene_dir)
            with self._lock:
                if self._scene is scene:
                    self.dirty = False
        self.refresh_info()
        return self.scene_dir

    # ---- training live view -------------------------------------------------------------------
    def update_training(self, gaussians: Gaussians, stats: dict[str, Any] | None = None) -> None:
        """Show the trainer's current Gaussians and stats (e.g. ``step``, ``loss``, ``psnr``). Thread-safe
        and cheap: the data is copied and sent by a background thread at most every
        ``config.training_refresh_s`` seconds. See :class:`viewer.training_panel.TrainingPanel`."""
        if self.training_panel is None:
            raise SpatialvidError("update_training needs a viewer started with training=True")
        self.training_panel.submit(gaussians, stats or {})

    @property
    def paused(self) -> bool:
        """True while the user has paused training in the GUI."""
        return self.training_panel is not None and self.training_panel.paused

    def wait_while_paused(self, timeout: float | None = None) -> bool:
        """Block the caller (the trainer) while training is paused; returns True when running again."""
        if self.training_panel is None:
            return True
        return self.training_panel.wait_while_paused(timeout)

    def serve_forever(self) -> None:
        """Block until Ctrl-C."""
        try:
            while not self._stopped:
                time.sleep(0.5)
        finally:
            self.stop()
