"""`spatialvid fill`: Generate the parts of the scene the video never saw."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "fill", help="Generate the parts of the scene the video never saw", description="Generate the parts of the scene the video never saw. (Not implemented yet: issue #7.)")
    p.set_defaults(func=not_yet(7, "spatialvid fill"))
