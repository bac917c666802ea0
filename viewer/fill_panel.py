"""The "Fill & save" tab: fill unseen regions from the current view, undo the last fill, save the scene.

Fill and undo run on a private copy of the scene (:func:`viewer.app.copy_scene`) in a background thread; the
copy replaces the shown scene only when the operation finished, so a client that disconnects, an error or a
second tab never sees (or saves) a half-filled scene.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import viser

from spatialvid.cameras import Cameras
from spatialvid.gaussians import GENERATED

if TYPE_CHECKING:
    from viewer.app import ViewerApp


def _progress_kwarg(fn) -> str | None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    for name in ("progress", "progress_cb", "on_progress", "callback"):
        if name in params:
            return name
    return None


class FillPanel:
    def __init__(self, app: ViewerApp):
        self.app = app
        gui = app.server.gui
        self.button_fill = gui.add_button("Fill from here", hint="generate Gaussians for what this view sees "
                                          "but the scene does not cover (the magenta area in coverage mode)")
        self.progress = gui.add_progress_bar(0.0, visible=False, animated=True)
        self.button_undo = gui.add_button("Undo last fill")
        self.button_save = gui.add_button("Save scene", disabled=app.scene_dir is None,
                                          hint="write gaussians.ply, transforms.json, scene.json atomically")
        self.status = gui.add_markdown("")
        self.last_result: Any = None
        self.button_fill.on_click(lambda e: self._start_fill(e.client))
        self.button_undo.on_click(lambda e: self._start_undo(e.client))
        self.button_save.on_click(lambda e: self._start_save(e.client))

    # ---- operations (callable from Python too) --------------------------------------------------
    def fill(self, camera: Cameras, progress=None) -> Any:
        """Fill what ``camera`` sees but the scene does not cover; returns the :class:`FillResult`.

        Runs :func:`spatialvid.generate.fill_view` on a copy of the scene and swaps the copy in when done.
        """
        from spatialvid.generate import fill_view
        from viewer.app import copy_scene

        app = self.app
        with app.operation("fill"):
            work = copy_scene(app.scene)
            work.gaussians = work.gaussians.to(app.device)  # the fill runs on the viewer's device ...
            kwargs = dict(app.config.fill_kwargs)
            kwargs.setdefault("backend", app.config.backend)
            pk = _progress_kwarg(fill_view)
            if pk and progress is not None:
                kwargs[pk] = progress
            result = fill_view(work, camera, **kwargs)
            work.gaussians = work.gaussians.to("cpu")  # ... and the viewer keeps its scene on the CPU
            if getattr(result, "added", 1):
                app.set_scene(work, dirty=True)
            self.last_result = result
        return result

    def undo(self) -> int:
        """Remove the Gaussians of the last fill (:func:`spatialvid.generate.undo_last_fill` on a copy);
        returns how many were removed. Raises :class:`SpatialvidError` when there is nothing to undo."""
        from spatialvid.generate import undo_last_fill
        from viewer.app import copy_scene

        app = self.app
        with app.operation("undo"):
            work = copy_scene(app.scene)
            removed = int(undo_last_fill(work))
            app.set_scene(work, dirty=True)
        return removed

    # ---- GUI handlers -------------------------------------------------------------------------
    def _set_progress(self, value: float) -> None:
        self.progress.value = float(max(0.0, min(100.0, 100.0 * value)))

    def _start_fill(self, client: viser.ClientHandle | None) -> None:
        app = self.app
        camera = app.current_camera(client, max_side=self._fill_side())
        before = app.scene.gaussians

        def run():
            self.button_fill.disabled = True
            self.progress.visible = True
            self.progress.value = 5.0
            self.status.content = "Filling..."
            try:
                return self.fill(camera, progress=self._progress_cb)
            except Exception as e:
                self.status.content = f"**Fill failed:** {e}"
                raise
            finally:
                self.button_fill.disabled = False
                self.progress.visible = False

        def done(result):
            g = app.scene.gaussians
            added = int(getattr(result, "added", len(g) - len(before)))
            n_gen = int((g.origin == GENERATED).sum())
            if added == 0:
                msg = f"Nothing to fill from this view ({getattr(result, 'reason', '') or 'no unseen pixels'})."
            else:
                msg = f"Fill added **{added:,}** Gaussians ({n_gen:,} generated in total). Save to keep them."
            self.status.content = msg
            app.notify(client, "Fill done", msg.replace("**", ""))

        app.run_job("fill", run, client, done)

    def _progress_cb(self, *args, **kwargs) -> None:
        """Accept ``(fraction)``, ``(done, total)`` or ``(stage, fraction)`` style progress callbacks."""
        nums = [a for a in args if isinstance(a, (int, float))]
        frac = None
        if "fraction" in kwargs:
            frac = kwargs["fraction"]
        elif len(nums) >= 2 and nums[1]:
            frac = nums[0] / nums[1]
        elif len(nums) == 1:
            frac = nums[0] if nums[0] <= 1 else nums[0] / 100
        if frac is not None:
            self._set_progress(float(frac))
        texts = [a for a in args if isinstance(a, str)]
        if texts:
            self.status.content = f"Filling: {texts[0]}"

    def _fill_side(self) -> int:
        side = self.app.config.fill_max_side
        if side:
            return int(side)
        cams = self.app.scene.cameras
        return int(max(int(cams.width.max()), int(cams.height.max()))) if len(cams) else 512

    def _start_undo(self, client: viser.ClientHandle | None) -> None:
        def run():
            try:
                return self.undo()
            except Exception as e:
                self.status.content = f"**Undo:** {e}"
                raise

        def done(removed):
            msg = f"Last fill undone ({removed:,} Gaussians removed)."
            self.status.content = msg
            self.app.notify(client, "Undo", msg)

        self.app.run_job("undo", run, client, done)

    def _start_save(self, client: viser.ClientHandle | None) -> None:
        def done(path):
            self.status.content = f"Saved to `{path.name}`."
            self.app.notify(client, "Saved", f"scene written to {path.name}")

        def run():
            try:
                return self.app.save()
            except Exception as e:
                self.status.content = f"**Save failed:** {e}"
                raise

        self.app.run_job("save", run, client, done)
