"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse

from spatialvid.errors import NotImplementedYet


def add_parser(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def not_yet(issue: int, what: str):
    def run(args) -> int:
        raise NotImplementedYet(f"`{what}` is not implemented yet (tracked in issue #{issue})")

    return run
