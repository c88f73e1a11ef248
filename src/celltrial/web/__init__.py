"""The study web app: server-rendered pages and a JSON API over the same service functions.

``create_app(study_dir)`` builds the FastAPI application; ``celltrial serve`` runs it. The app is
imported on first use (:mod:`celltrial.lazy`), so the CLI starts without loading FastAPI.
"""

from celltrial.lazy import lazy_exports

_WHERE = {"create_app": "app"}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())

__all__ = ["create_app"]
