"""`spatialvid reconstruct`: Video or images to a trained Gaussian-splat scene."""

from __future__ import annotations

from spatialvid.cli._common import add_parser, not_yet


def register(sub) -> None:
    p = add_parser(sub, "reconstruct", help="Video or images to a trained Gaussian-splat scene", description="Video or images to a trained Gaussian-splat scene. (Not implemented yet: issue #5.)")
    p.set_defaults(func=not_yet(5, "spatialvid reconstruct"))
