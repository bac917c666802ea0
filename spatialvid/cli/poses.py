"""`spatialvid poses`: Estimate camera poses (ingest + structure from motion) without training."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "poses", help="Estimate camera poses (ingest + structure from motion) without training", description="Estimate camera poses (ingest + structure from motion) without training. (Not implemented yet: issue #4.)")
    p.set_defaults(func=not_yet(4, "spatialvid poses"))
