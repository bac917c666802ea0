"""A background render queue where the newest request per client wins.

Camera updates from the browser arrive much faster than a CPU render finishes. Each client has at most one
pending request: a newer one replaces (drops) the older one, so a slow render never queues up lag, and the
websocket thread that submits never waits for a render.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)


class RenderWorker:
    """One daemon thread that runs ``job(key, request)`` for the latest request of each key, in FIFO order
    of keys. ``stats`` counts submitted, rendered, dropped (replaced before running) and failed requests."""

    def __init__(self, job: Callable[[Hashable, Any], None], name: str = "viewer-render"):
        self._job = job
        self._pending: OrderedDict[Hashable, Any] = OrderedDict()
        self._cv = threading.Condition()
        self._stop = False
        self._busy = False
        self.stats = {"submitted": 0, "rendered": 0, "dropped": 0, "failed": 0}
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, request: Any) -> None:
        """Queue ``request`` for ``key``, replacing (dropping) any request still pending for it. Never blocks
        on a render."""
        with self._cv:
            self.stats["submitted"] += 1
            if key in self._pending:
                self.stats["dropped"] += 1
                del self._pending[key]
            self._pending[key] = request
            self._cv.notify()

    def discard(self, key: Hashable) -> None:
        """Forget a key's pending request (e.g. its client disconnected)."""
        with self._cv:
            if self._pending.pop(key, None) is not None:
                self.stats["dropped"] += 1

    def has_pending(self, key: Hashable) -> bool:
        with self._cv:
            return key in self._pending

    def idle(self) -> bool:
        with self._cv:
            return not self._pending and not self._busy

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is pending or running (for tests and scripts); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: (not self._pending and not self._busy) or self._stop, timeout)

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._pending.clear()
            self._cv.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending or self._stop)
                if self._stop:
                    return
                key, request = self._pending.popitem(last=False)
                self._busy = True
            try:
                self._job(key, request)
                ok = True
            except Exception:  # a failed render must not kill the worker
                log.exception("viewer render failed")
                ok = False
            with self._cv:
                self._busy = False
                self.stats["rendered" if ok else "failed"] += 1
                self._cv.notify_all()
