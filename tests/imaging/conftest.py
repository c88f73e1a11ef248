"""Fixtures for the imaging tests: small phantoms (cached per session) and real-data paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from celltrial.imaging.phantom import Phantom, make_chest_phantom

CT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ct"


def real_ct(sub: str) -> Path:
    """A folder or file under ../shared/data/ct, or skip the test with the reason."""
    path = CT_DATA / sub
    if not path.exists():
        pytest.skip(f"real CT data not available: {path} is absent")
    return path


_CACHE: dict[tuple, Phantom] = {}


def small_phantom(slice_mm: float = 5.0, noise_hu: float = 15.0, **options) -> Phantom:
    key = (slice_mm, noise_hu, tuple(sorted(options.items())))
    if key not in _CACHE:
        _CACHE[key] = make_chest_phantom(
            shape=(176, 176), pixel_mm=2.0, slice_mm=slice_mm, noise_hu=noise_hu, **options
        )
    return _CACHE[key]


@pytest.fixture(scope="session")
def phantom() -> Phantom:
    return small_phantom()
