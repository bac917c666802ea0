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


@pytest.fixture(scope="session")
def trained_sample_scene(tmp_path_factory) -> Path:
    """A scene folder trained by `spatialvid reconstruct` (fast preset, 300 steps) on a small sample
    (32 frames, 80x60, known poses). Takes ~30 s once per session; treat it as read-only."""
    import torch

    from spatialvid.cli import main
    from spatialvid.sample import make_sample

    base = tmp_path_factory.mktemp("trained_sample")
    sample = make_sample(base / "sample", num_frames=32, width=80, height=60, progress=False)
    out = base / "scene"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: one thread is faster and immune to a busy machine
    try:
        rc = main(["reconstruct", str(sample.out_dir), "-o", str(out), "--preset", "fast", "--steps", "300",
                   "--resolution", "0", "--init", "random", "--init-random-points", "3000", "--lr-sh0", "0.01",
                   "--densify-start", "50", "--densify-stop", "250", "--densify-every", "50",
                   "--sh-degree-interval", "100", "--checkpoint-every", "0", "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, "reconstruct failed on the small sample"
    return out
