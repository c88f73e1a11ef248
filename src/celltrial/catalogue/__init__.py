"""The test catalogue: which laboratory tests and vital signs celltrial knows, in which units.

The facts live in ``tests.yaml`` shipped with the package; :func:`load_catalogue` validates it once
and returns an immutable :class:`Catalogue`.
"""

from celltrial.catalogue.model import Catalogue, TestDefinition, load_catalogue

__all__ = ["Catalogue", "TestDefinition", "load_catalogue"]
