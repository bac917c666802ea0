"""User-facing errors. The CLI prints these as one clear line (no traceback) and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class SpatialvidError(Exception):
    """An error the user can act on (bad input, missing file, impossible request)."""


class FormatError(SpatialvidError):
    """A file is malformed: names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CapacityError(SpatialvidError):
    """The Gaussian count would exceed the configured cap."""


class NotImplementedYet(SpatialvidError):
    """A subcommand whose issue is not done yet."""
