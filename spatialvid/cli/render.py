"""`spatialvid render`: Render a scene along a camera path to video or images."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "render", help="Render a scene along a camera path to video or images", description="Render a scene along a camera path to video or images. (Not implemented yet: issue #6.)")
    p.set_defaults(func=not_yet(6, "spatialvid render"))
