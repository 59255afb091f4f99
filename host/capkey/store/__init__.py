"""capkey state: SQLite (embedded default) and PostgreSQL back ends, one versioned schema, an
append-only hash-chained audit trail.

    store = open_store("capkey.db")                      # or "postgresql://user:pw@host/db"
    store.migrate()
    with store.transaction() as tx:
        ...

The authentication rules live in `capkey.rules`; this package only knows rows and guards.
"""

from __future__ import annotations

import os

from .audit import AuditRecord, ChainProblem, ChainReport
from .base import Store
from .errors import Conflict, StoreError
from .migrations import LATEST as SCHEMA_VERSION
from .rows import CardRow, CertRow, ChallengeRow, SessionRow, UserRow
from .tx import Tx

__all__ = [
    "AuditRecord", "CardRow", "CertRow", "ChainProblem", "ChainReport", "ChallengeRow",
    "Conflict", "SCHEMA_VERSION", "SessionRow", "Store", "StoreError", "Tx", "UserRow",
    "open_store",
]

DEFAULT_PATH = "capkey.db"


def open_store(target: str | None = None, *, migrate: bool = True, schema: str | None = None,
               sqlite_synchronous: str = "FULL") -> Store:
    """Opens a store. `target` is a SQLite file path or a ``postgresql://`` DSN; when None, the
    environment variable ``CAPKEY_DB`` or ``capkey.db``. `schema` selects a PostgreSQL schema
    (created if missing). With `migrate`, missing migrations are applied. `sqlite_synchronous`
    ``"NORMAL"`` trades the durability of the last decisions before a power cut for speed
    (docs/rules.md, "Durability")."""
    target = target or os.environ.get("CAPKEY_DB") or DEFAULT_PATH
    store: Store
    if target.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        store = PostgresStore(target, schema=schema)
    else:
        if schema is not None:
            raise StoreError("schema applies to PostgreSQL only")
        from .sqlite import SqliteStore

        store = SqliteStore(target, synchronous=sqlite_synchronous)
    if migrate:
        store.migrate()
    return store
