"""Shared fixtures. Real data lives in ../shared/data (never copied here); tests that need it skip when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (only the team's machines and CI have it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fox_dir(shared_data: Path) -> Path:
    fox = shared_data / "fox"
    if not (fox / "transforms.json").exists():
        pytest.skip(f"fox data set not present at {fox}")
    return fox
