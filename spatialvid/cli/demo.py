"""`spatialvid demo`: Run the whole pipeline on the bundled sample."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "demo", help="Run the whole pipeline on the bundled sample", description="Run the whole pipeline on the bundled sample. (Not implemented yet: issue #5.)")
    p.set_defaults(func=not_yet(5, "spatialvid demo"))
