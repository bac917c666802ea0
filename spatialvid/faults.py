"""Fault injection for the crash tests: ``SPATIALVID_FAULT=<point>[@N]`` kills this process with SIGKILL
the N-th time (default: the first) execution reaches ``fault_point("<point>")``.

The points sit between the file writes of every multi-file update (``Scene.save``, ``reconstruct``, ``fill``),
so ``tests/test_faults.py`` can check that a process killed anywhere leaves a folder that loads. Without the
environment variable a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SPATIALVID_FAULT"
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill the process (SIGKILL: no cleanup, no atexit, like a power cut for this process) if asked to here."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
