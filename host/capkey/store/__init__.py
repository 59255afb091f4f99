"""capkey state: SQLite (embedded default) and PostgreSQL back ends, one versioned schema, an
append-only audit trail chained with an HMAC key kept outside the database.

    key = load_key_file(Path("audit-key.json"), read_kek(Path("kek.bin")))  # or an HSM's AuditKey
    store = open_store("capkey.db", audit_key=key)       # or "postgresql://user:pw@host/db"
    store.migrate()
    with store.transaction() as tx:
        ...

The authentication rules live in `capkey.rules`; this package only knows rows and guards.
"""

from __future__ import annotations

import os

from .audit import AuditRecord, ChainProblem, ChainReport, Checkpoint
from .base import Store
from .errors import Conflict, StoreError
from .keys import (
    KEK_FILE_ENV,
    KEY_FILE_ENV,
    TEST_KEY_ENV,
    AuditKey,
    AuditKeyError,
    SoftwareAuditKey,
    is_test_key,
    key_from_environment,
    load_key_file,
    read_kek,
)
from .migrations import LATEST as SCHEMA_VERSION
from .rows import CardRow, CertRow, ChallengeRow, SessionRow, UserRow
from .tx import Tx

__all__ = [
    "AuditKey", "AuditKeyError", "AuditRecord", "CardRow", "CertRow", "ChainProblem",
    "ChainReport", "ChallengeRow", "Checkpoint", "Conflict", "KEK_FILE_ENV", "KEY_FILE_ENV",
    "SCHEMA_VERSION", "SessionRow", "SoftwareAuditKey", "Store", "StoreError", "TEST_KEY_ENV", "Tx",
    "UserRow",
    "is_test_key", "load_key_file", "open_store", "read_kek",
]

DEFAULT_PATH = "capkey.db"


def open_store(target: str | None = None, *, migrate: bool = True, schema: str | None = None,
               sqlite_synchronous: str = "FULL", audit_key: AuditKey | None = None,
               group_commit: bool | None = None) -> Store:
    """Opens a store. `target` is a SQLite file path (or ``sqlite:///path``: ``sqlite:///bank.db``
    is ``bank.db``, ``sqlite:////var/lib/bank.db`` is ``/var/lib/bank.db``) or a
    ``postgresql://`` DSN; when None, the
    environment variable ``CAPKEY_DB`` or ``capkey.db``. `schema` selects a PostgreSQL schema
    (created if missing). With `migrate`, missing migrations are applied. `sqlite_synchronous`
    ``"NORMAL"`` trades the durability of the last decisions before a power cut for speed
    (docs/rules.md, "Durability").

    `audit_key` links the audit trail (rules.md R20); when None, the key file named by
    ``CAPKEY_AUDIT_KEY_FILE`` unwrapped with the KEK file named by ``CAPKEY_AUDIT_KEK_FILE``, or
    the published test key when ``CAPKEY_AUDIT_TEST_KEY=1`` (development only, with a warning;
    or pass ``SoftwareAuditKey.for_tests()``). Without any, `AuditKeyError`: a store never keys
    its trail under the test key on its own.

    `group_commit` commits the decisions of concurrent threads together, each answered once its
    batch is durable (`Store.transaction`); off, every decision has its own commit and flush.
    None: the engine's default (SQLite on; PostgreSQL off, see `capkey.store.postgres`)."""
    engine_options = {} if group_commit is None else {"group_commit": group_commit}
    target = target or os.environ.get("CAPKEY_DB") or DEFAULT_PATH
    if audit_key is None:
        audit_key = key_from_environment()
    if audit_key is None:
        raise AuditKeyError(f"no audit key: pass audit_key=, or set ${KEY_FILE_ENV} and "
                            f"${KEK_FILE_ENV} (capkey audit new-key), or ${TEST_KEY_ENV}=1 for "
                            f"development")
    store: Store
    if target.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        store = PostgresStore(target, audit_key=audit_key, schema=schema, **engine_options)
    else:
        if schema is not None:
            raise StoreError("schema applies to PostgreSQL only")
        from .sqlite import SqliteStore

        store = SqliteStore(target.removeprefix("sqlite:///"), audit_key=audit_key, synchronous=sqlite_synchronous,
                            **engine_options)
    if migrate:
        store.migrate()
    return store
