"""The store's exceptions (raised by every engine alike)."""

from ..errors import Error


class StoreError(Error):
    """The database is unusable for capkey (unknown schema version, bad URL…)."""


class Conflict(StoreError):
    """A unique name (subscription, user number, certificate) already exists."""
