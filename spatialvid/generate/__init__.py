"""Generation: fill what the video never saw (coverage -> inpaint -> depth -> lift -> fit -> record).

Entry points: :func:`fill_view` (one camera), :func:`undo_last_fill`. Backends are pluggable through the
:class:`~spatialvid.generate.inpaint.Inpainter` and :class:`~spatialvid.generate.depth.DepthEstimator`
protocols. Layering: generate uses render, never the viewer or CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FillResult", "fill_view", "undo_last_fill"]


def __getattr__(name: str) -> Any:  # lazy: importing the package stays cheap
    if name in __all__:
        from spatialvid.generate import fill

        return getattr(fill, name)
    raise AttributeError(name)
