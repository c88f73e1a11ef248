"""Store tests run on every backend (see :mod:`tests.store.backends`)."""

from tests.store.backends import database_url  # noqa: F401  (a fixture)
