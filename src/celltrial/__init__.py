"""celltrial: run and analyse early-phase cell-therapy studies in critically ill patients."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("celltrial")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
