"""Where the real data sets are (read in place, never copied): ``../shared/data`` beside the
project, as the other tests find them."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def real(sub: str) -> Path | None:
    """A file or folder under ../shared/data, or None when the data set is absent."""
    path = SHARED_DATA / sub
    return path if path.exists() else None


def real_or_skip(sub: str) -> Path:
    """A file or folder under ../shared/data, or skip the test saying what is missing."""
    path = real(sub)
    if path is None:
        pytest.skip(f"real data set absent: {SHARED_DATA / sub} (see shared/data/README.md)")
    return path
