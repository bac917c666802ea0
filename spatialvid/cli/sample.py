"""`spatialvid sample`: Make the bundled synthetic sample (video + ground truth)."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "sample", help="Make the bundled synthetic sample (video + ground truth)", description="Make the bundled synthetic sample (video + ground truth). (Not implemented yet: issue #2.)")
    p.set_defaults(func=not_yet(2, "spatialvid sample"))
