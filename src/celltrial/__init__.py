"""celltrial: run and analyse early-phase cell-therapy studies in critically ill patients."""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    """``__version__`` read from the installed metadata on first use: ``importlib.metadata`` is
    slow to import, and a command's ``--help`` never needs it."""
    if name != "__version__":
        raise AttributeError(f"module 'celltrial' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("celltrial")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        value = "0.0.0"
    globals()["__version__"] = value
    return value
