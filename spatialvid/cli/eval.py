"""`spatialvid eval`: Compare a scene's poses (and renders) to a reference."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "eval", help="Compare a scene's poses (and renders) to a reference", description="Compare a scene's poses (and renders) to a reference. (Not implemented yet: issue #4.)")
    p.set_defaults(func=not_yet(4, "spatialvid eval"))
