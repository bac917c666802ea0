"""`spatialvid view`: Open a scene in the interactive web viewer."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "view", help="Open a scene in the interactive web viewer", description="Open a scene in the interactive web viewer. (Not implemented yet: issue #8.)")
    p.set_defaults(func=not_yet(8, "spatialvid view"))
