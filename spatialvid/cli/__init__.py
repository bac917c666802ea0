"""The `spatialvid` command. Each subcommand lives in its own module here with ``register(subparsers)``.

A :class:`~spatialvid.errors.SpatialvidError` is printed as one plain line (no traceback), exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from spatialvid.errors import SpatialvidError

SUBCOMMANDS = ["sample", "poses", "reconstruct", "extend", "render", "fill", "view", "eval", "export", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spatialvid",
        description="Lift a video into a persistent 3D Gaussian-splat scene, render it from new viewpoints, "
        "and fill what the video never saw.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Typical use:\n"
        "  spatialvid sample data/sample               # make the bundled synthetic sample\n"
        "  spatialvid reconstruct data/sample/video.mp4 -o scenes/sample --preset fast\n"
        "  spatialvid render scenes/sample --path orbit -o orbit.mp4\n"
        "  spatialvid view scenes/sample\n"
        "Run `spatialvid COMMAND --help` for each command's inputs, outputs and defaults.",
    )
    parser.add_argument("--version", action="version", version="spatialvid 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"spatialvid.cli.{name}").register(sub)
    return parser


# options whose value is a comma-separated list that may start with a minus sign ("-1,-1,0,1,1,1"), which
# argparse would otherwise take for an option
_LIST_OPTIONS = ("--crop-box", "--crop-sphere")


def _join_list_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if a in _LIST_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] == "."):
            out.append(f"{a}={nxt}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_list_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        rc = args.func(args)
    except SpatialvidError as e:
        print(f"spatialvid {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spatialvid {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
