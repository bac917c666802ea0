"""The "Camera path" tab: keyframes from the current view, preview, nerfstudio camera_path.json, video.

Keyframes are :class:`spatialvid.paths.Keyframe` (OpenGL camera-to-world, vertical fov in degrees), the
same as nerfstudio's viewer, so an exported ``camera_path.json`` renders in nerfstudio and in
``spatialvid render --path``. Files are only read or written inside the scene folder.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import viser

from spatialvid.cameras import GL_FROM_CV
from spatialvid.errors import SpatialvidError
from spatialvid.paths import CameraPath, Keyframe, path_from_keyframes, read_camera_path, write_camera_path
from viewer import convert
from viewer.security import PATHS_DIR, resolve_inside, resolve_path_file

if TYPE_CHECKING:
    from viewer.app import View, ViewerApp

_GL = GL_FROM_CV.numpy()
NONE = "(none)"


def view_to_keyframe(view: View) -> Keyframe:
    """A keyframe (OpenGL c2w, fov degrees, aspect) from a viewer view (OpenCV quaternion + centre)."""
    c2w = np.eye(4)
    c2w[:3, :3] = convert.vtf.SO3(np.asarray(view.wxyz, dtype=np.float64)).as_matrix()
    c2w[:3, 3] = view.position
    return Keyframe(c2w=c2w @ _GL, fov=math.degrees(view.fov), aspect=float(view.aspect))


def keyframe_pose(kf_c2w_gl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) in viser's OpenCV convention from an OpenGL camera-to-world matrix."""
    c2w = np.asarray(kf_c2w_gl, dtype=np.float64) @ _GL
    u, _, vt = np.linalg.svd(c2w[:3, :3])
    return convert.vtf.SO3.from_matrix(u @ vt).wxyz, c2w[:3, 3]


class CameraPathPanel:
    def __init__(self, app: ViewerApp):
        self.app = app
        self.keyframes: list[Keyframe] = []
        self._kf_handles: list = []
        self._spline = None
        self._preview_stop = threading.Event()
        self._preview_thread: threading.Thread | None = None
        cams = app.scene.cameras
        w0, h0 = (int(cams.width[0]), int(cams.height[0])) if len(cams) else (640, 480)
        scale = 640 / max(w0, h0)
        w0, h0 = 2 * round(w0 * scale / 2), 2 * round(h0 * scale / 2)

        gui = app.server.gui
        self.info = gui.add_markdown("No keyframes yet: move the view and press **Add keyframe**.")
        self.gui_selected = gui.add_dropdown("Keyframe", [NONE], initial_value=NONE)
        self.button_add = gui.add_button("Add keyframe (this view)")
        self.button_move = gui.add_button("Move keyframe here", hint="set the selected keyframe to this view")
        self.button_delete = gui.add_button("Delete keyframe")
        self.button_clear = gui.add_button("Clear keyframes")
        self.gui_duration = gui.add_number("Duration (s)", 4.0, min=0.1, max=600.0, step=0.1)
        self.gui_fps = gui.add_number("FPS", 30, min=1, max=120, step=1)
        self.gui_width = gui.add_number("Width (px)", int(w0), min=16, max=4096, step=2)
        self.gui_height = gui.add_number("Height (px)", int(h0), min=16, max=4096, step=2)
        self.gui_loop = gui.add_checkbox("Loop", False)
        self.button_preview = gui.add_button("Preview", hint="play the path in this browser tab")
        self.gui_file = gui.add_text("Path file", "camera_path.json", hint=f"a file name in the scene's {PATHS_DIR}/ folder")
        self.button_export = gui.add_button("Export camera_path.json", disabled=app.scene_dir is None)
        self.button_import = gui.add_button("Import camera_path.json", disabled=app.scene_dir is None)
        self.gui_video = gui.add_text("Video file", "camera_path.mp4", hint="inside the scene folder")
        self.button_render = gui.add_button("Render video", disabled=app.scene_dir is None)
        self.progress = gui.add_progress_bar(0.0, visible=False)
        self.status = gui.add_markdown("")

        self.button_add.on_click(lambda e: self._guard(e.client, lambda: self.add_keyframe(e.client)))
        self.button_move.on_click(lambda e: self._guard(e.client, lambda: self.move_keyframe(
            self.selected_index(), e.client)))
        self.button_delete.on_click(lambda e: self._guard(e.client, lambda: self.delete_keyframe(
            self.selected_index())))
        self.button_clear.on_click(lambda e: self._guard(e.client, self.clear))
        self.button_preview.on_click(lambda e: self._guard(e.client, lambda: self.toggle_preview(e.client)))
        self.button_export.on_click(lambda e: self._guard(e.client, lambda: self._exported(
            e.client, self.export(self.gui_file.value))))
        self.button_import.on_click(lambda e: self._guard(e.client, lambda: self._imported(
            e.client, self.import_path(self.gui_file.value))))
        self.button_render.on_click(lambda e: self._start_render(e.client))
        for h in (self.gui_duration, self.gui_fps, self.gui_loop):
            h.on_update(lambda _e: self._redraw())

    # ---- helpers ------------------------------------------------------------------------------
    def _guard(self, client: viser.ClientHandle | None, fn) -> None:
        """Run a quick GUI action; a refused or bad request becomes a notification, not a crash."""
        try:
            fn()
        except SpatialvidError as e:
            self.status.content = f"**Error:** {e}"
            self.app.notify(client, "Camera path", str(e), error=True)

    def selected_index(self) -> int:
        v = self.gui_selected.value
        if v == NONE:
            raise SpatialvidError("select a keyframe first")
        return int(v)

    # ---- keyframe editing ----------------------------------------------------------------------
    def add_keyframe(self, client: viser.ClientHandle | None = None) -> int:
        """Append a keyframe at ``client``'s view (or the last view seen); returns its index."""
        self.keyframes.append(view_to_keyframe(self.app.current_view(client)))
        self._redraw(select=len(self.keyframes) - 1)
        return len(self.keyframes) - 1

    def move_keyframe(self, index: int, client: viser.ClientHandle | None = None) -> None:
        self._check_index(index)
        self.keyframes[index] = view_to_keyframe(self.app.current_view(client))
        self._redraw(select=index)

    def delete_keyframe(self, index: int) -> None:
        self._check_index(index)
        del self.keyframes[index]
        self._redraw(select=min(index, len(self.keyframes) - 1))

    def clear(self) -> None:
        self.keyframes = []
        self._redraw()

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.keyframes):
            raise SpatialvidError(f"no keyframe {index} (there are {len(self.keyframes)})")

    def camera_path(self) -> CameraPath:
        """The dense path: duration x fps frames at the chosen size, interpolated through the keyframes."""
        if len(self.keyframes) < 2:
            raise SpatialvidError("a camera path needs at least 2 keyframes")
        w, h = int(self.gui_width.value), int(self.gui_height.value)
        kfs = [Keyframe(k.c2w, k.fov, w / h, dict(k.extra)) for k in self.keyframes]
        return path_from_keyframes(kfs, w, h, fps=float(self.gui_fps.value), seconds=float(self.gui_duration.value),
                                   is_cycle=bool(self.gui_loop.value))

    def _redraw(self, select: int | None = None) -> None:
        app = self.app
        for hnd in self._kf_handles:
            hnd.remove()
        self._kf_handles = []
        if self._spline is not None:
            self._spline.remove()
            self._spline = None
        for i, kf in enumerate(self.keyframes):
            wxyz, pos = keyframe_pose(kf.c2w)
            hnd = app.server.scene.add_camera_frustum(
                f"/camera_path/keyframe_{i:03d}", fov=math.radians(kf.fov), aspect=kf.aspect,
                scale=0.1 * app.extent, thickness=0.005 * app.extent, color=(240, 120, 20), wxyz=wxyz,
                position=pos)
            hnd.on_click(lambda _e, i=i: setattr(self.gui_selected, "value", str(i)))
            self._kf_handles.append(hnd)
        if len(self.keyframes) >= 2:
            try:
                dense = self.camera_path()
                pts = dense.c2w[:, :3, 3]
                if len(pts) >= 2:
                    self._spline = app.server.scene.add_spline_catmull_rom(
                        "/camera_path/spline", points=pts, thickness=0.004 * app.extent, color=(240, 120, 20))
            except SpatialvidError:
                pass
        options = [str(i) for i in range(len(self.keyframes))] or [NONE]
        self.gui_selected.options = options
        if select is not None and 0 <= select < len(self.keyframes):
            self.gui_selected.value = str(select)
        elif self.gui_selected.value not in options:
            self.gui_selected.value = options[0]
        n = len(self.keyframes)
        self.info.content = (f"**{n}** keyframes; {float(self.gui_duration.value):g} s at "
                             f"{float(self.gui_fps.value):g} fps." if n else
                             "No keyframes yet: move the view and press **Add keyframe**.")

    # ---- files (inside the scene folder only) ---------------------------------------------------
    def export(self, name: str = "camera_path.json"):
        """Write the nerfstudio camera_path.json into the scene's ``paths/`` folder; returns its path.
        Folder parts, ``..`` and the scene's own file names are refused."""
        target = resolve_path_file(self.app.scene_dir, name, (".json",))
        target.parent.mkdir(exist_ok=True)
        return write_camera_path(target, self.camera_path())

    def _exported(self, client, path) -> None:
        self.status.content = f"Exported `{path.name}` ({len(self.camera_path())} frames)."
        self.app.notify(client, "Camera path exported", path.name)

    def import_path(self, name: str = "camera_path.json") -> int:
        """Load keyframes (and duration, fps, size) from a camera_path.json in the scene's ``paths/`` folder."""
        target = resolve_path_file(self.app.scene_dir, name, (".json",))
        cp = read_camera_path(target)
        kfs = list(cp.keyframes)
        if len(kfs) < 2:  # no viewer keyframes stored: take up to 12 frames of the dense path
            idx = np.unique(np.linspace(0, len(cp) - 1, min(len(cp), 12)).round().astype(int))
            kfs = [Keyframe(cp.c2w[i], float(cp.fov[i]), float(cp.aspect[i])) for i in idx]
        self.keyframes = kfs
        self.gui_width.value = int(cp.width)
        self.gui_height.value = int(cp.height)
        self.gui_fps.value = float(cp.fps)
        self.gui_duration.value = max(0.1, float(cp.seconds))
        self.gui_loop.value = bool(cp.is_cycle)
        self._redraw(select=0)
        return len(kfs)

    def _imported(self, client, n: int) -> None:
        self.status.content = f"Imported {n} keyframes."
        self.app.notify(client, "Camera path imported", f"{n} keyframes")

    # ---- preview ------------------------------------------------------------------------------
    def toggle_preview(self, client: viser.ClientHandle | None) -> None:
        if self._preview_thread is not None and self._preview_thread.is_alive():
            self._preview_stop.set()
            return
        path = self.camera_path()
        targets = [client] if client is not None else list(self.app.server.get_clients().values())
        self._preview_stop.clear()
        self._preview_thread = threading.Thread(target=self._play, args=(path, targets), daemon=True,
                                                name="viewer-preview")
        self._preview_thread.start()

    def _play(self, path: CameraPath, clients: list) -> None:
        self.button_preview.label = "Stop preview"
        try:
            t0 = time.perf_counter()
            for i in range(len(path)):
                if self._preview_stop.is_set():
                    break
                wxyz, pos = keyframe_pose(path.c2w[i])
                for c in clients:
                    try:
                        self.app.set_client_view(c, wxyz, pos, math.radians(float(path.fov[i])))
                    except Exception:  # a tab closed during playback
                        clients = [x for x in clients if x is not c]
                delay = t0 + (i + 1) / path.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        finally:
            self.button_preview.label = "Preview"

    # ---- video --------------------------------------------------------------------------------
    def render_video(self, name: str = "camera_path.mp4", progress=None):
        """Render the path with the exact renderer into the scene folder (mp4); returns the path."""
        target = resolve_inside(self.app.scene_dir, name, (".mp4",))
        path = self.camera_path()
        path.validate(name)
        cams = path.cameras()
        with self.app.operation("render video"):
            from spatialvid.render.video import VideoWriter

            with VideoWriter(target, fps=path.fps) as writer:
                for i in range(len(cams)):
                    img, _ = self.app.render_image(cams[i], "exact rgb")
                    writer.write(img)
                    if progress is not None:
                        progress(i + 1, len(cams))
        return target

    def _start_render(self, client: viser.ClientHandle | None) -> None:
        name = str(self.gui_video.value)
        try:  # refuse bad names at once, before any thread
            resolve_inside(self.app.scene_dir, name, (".mp4",))
            self.camera_path()
        except SpatialvidError as e:
            self.status.content = f"**Error:** {e}"
            self.app.notify(client, "Render video", str(e), error=True)
            return

        def prog(done: int, total: int) -> None:
            self.progress.value = 100.0 * done / total
            self.status.content = f"Rendering frame {done}/{total}..."

        def run():
            self.button_render.disabled = True
            self.progress.value = 0.0
            self.progress.visible = True
            try:
                return self.render_video(name, prog)
            finally:
                self.button_render.disabled = self.app.scene_dir is None
                self.progress.visible = False

        def done(path):
            self.status.content = f"Rendered `{path.name}`."
            self.app.notify(client, "Video rendered", path.name)

        self.app.run_job("render video", run, client, done)
