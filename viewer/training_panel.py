"""The "Training" tab: live view of a running optimisation, with pause / resume.

Trainer-side API (thread-safe, cheap to call every step)::

    app = ViewerApp(scene, training=True)          # scene: initial Gaussians + training cameras
    for step in range(...):
        ...optimise...
        app.update_training(gaussians, {"step": step, "loss": loss, "psnr": psnr})
        app.wait_while_paused()                    # blocks while the user pressed "Pause"

Gaussians are copied (detached, to CPU) at most every ``refresh`` seconds and sent by a background thread,
so the trainer never waits for the network.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from spatialvid.gaussians import Gaussians
from spatialvid.scene import Scene

if TYPE_CHECKING:
    from viewer.app import ViewerApp


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


class TrainingPanel:
    def __init__(self, app: ViewerApp):
        self.app = app
        gui = app.server.gui
        self.stats_md = gui.add_markdown("Waiting for the trainer...")
        self.button_pause = gui.add_button("Pause training")
        self.refresh = gui.add_slider("Refresh (s)", 0.5, 30.0, 0.5, float(app.config.training_refresh_s))
        self.button_pause.on_click(lambda _e: self.toggle_pause())
        self._running = threading.Event()
        self._running.set()
        self._cv = threading.Condition()
        self._pending: Gaussians | None = None
        self._last_copy = 0.0
        self._last_stats = 0.0
        self.updates = 0  # splat refreshes sent
        self.stats: dict[str, Any] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="viewer-training", daemon=True)
        self._thread.start()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def toggle_pause(self) -> None:
        if self._running.is_set():
            self._running.clear()
            self.button_pause.label = "Resume training"
        else:
            self._running.set()
            self.button_pause.label = "Pause training"
        self._show_stats()

    def wait_while_paused(self, timeout: float | None = None) -> bool:
        return self._running.wait(timeout)

    def submit(self, gaussians: Gaussians, stats: dict[str, Any]) -> None:
        now = time.monotonic()
        self.stats = dict(stats)
        self.stats["gaussians"] = len(gaussians)
        if now - self._last_stats > 0.5:
            self._last_stats = now
            self._show_stats()
        if self._pending is None and now - self._last_copy >= float(self.refresh.value):
            self._last_copy = now
            copy = gaussians.detach().to("cpu").clone()
            with self._cv:
                self._pending = copy
                self._cv.notify()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the last submitted Gaussians were sent (for tests)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending is None, timeout)

    def close(self) -> None:
        self._closed = True
        self._running.set()
        with self._cv:
            self._cv.notify_all()

    def _show_stats(self) -> None:
        state = "**paused**" if self.paused else "running"
        rows = " | ".join(f"{k}: {_fmt(v)}" for k, v in self.stats.items())
        self.stats_md.content = f"Training {state}.\n\n{rows}"

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                g = self._pending
            app = self.app
            old = app.scene
            app.set_scene(Scene(gaussians=g, cameras=old.cameras, metadata=old.metadata, history=old.history),
                          dirty=False)
            self.updates += 1
            with self._cv:
                self._pending = None
                self._cv.notify_all()
