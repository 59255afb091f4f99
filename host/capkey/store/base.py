"""`Store`: the engine-independent half of a capkey database (transactions, migrations, audit
verification and checkpoints) and the small contract an engine fills in. The SQL lives in
`capkey.store.tx`, the row types in `capkey.store.rows`.

Times are integers: microseconds since the epoch, UTC.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from . import audit as _audit
from .errors import StoreError
from .keys import AuditKey
from .migrations import LATEST, MIGRATIONS
from .rows import ChallengeRow
from .tx import Tx
from .tx.audit import AUDIT_INSERT
from .tx.core import TxCore


class _Batch:
    """The decisions of several transactions in one database transaction (group commit)."""

    __slots__ = ("conn", "members", "done", "error")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.members = 0
        self.done = threading.Event()
        self.error: BaseException | None = None


class Store(ABC):
    """A capkey database. Thread-safe (one connection, one transaction at a time, several
    threads' decisions committed together: see `transaction`); open one `Store` per process.
    `group_commit=False` gives every transaction its own commit; `max_batch` bounds a batch.

    `audit_key` links the audit trail (`capkey.store.keys`); it is never written to the database.

    An engine is a subclass that calls ``Store.__init__(audit_key)`` and provides (see
    `sqlite.SqliteStore`, `postgres.PostgresStore`):

    ``dialect``
        the name `migrations` selects its DDL by (``"sqlite"``, ``"postgres"``).
    ``_connection(durable)``
        the connection for the next transaction; ``durable=False`` may pick one that skips the
        flush to disk at commit.
    ``_begin(conn, durable)``
        starts a write transaction that already holds (SQLite: ``BEGIN IMMEDIATE``) or can take
        (PostgreSQL: row locks) the locks the decisions need.
    ``_begin_read(conn)`` / ``_rollback(conn)``
        starts a read-only transaction / rolls back, a no-op when none is open.
    ``_execute(conn, sql, params)``
        runs one statement written with ``?`` placeholders (the engine translates them if its
        driver differs) and returns a cursor with ``fetchone``, ``fetchall`` and ``rowcount``.
        The SQL uses ``RETURNING``, so the engine must support it.
    ``_has_table(tx, name)`` / ``_migration_lock(tx)``
        whether a table exists / serialises concurrent migrators inside the transaction.
    ``close()``

    And may override: ``_for_update`` / ``_for_update_plain`` (the row-lock clause appended to a
    ``SELECT`` on ``users u`` / on a single table; empty when `_begin` already locks everything),
    ``_commit``, ``_rowcount``, ``_append_if_head`` and ``insert_challenge`` (faster paths).
    """

    dialect: str
    _for_update = ""
    _for_update_plain = ""

    def __init__(self, audit_key: AuditKey, *, group_commit: bool = True,
                 max_batch: int = 64) -> None:
        if not isinstance(audit_key, AuditKey):
            raise TypeError("audit_key must be an AuditKey")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.audit_key = audit_key
        self._audit_key_checked = False  # see `Tx._check_audit_key`
        self.group_commit = group_commit
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queued = 0  # threads waiting for `_lock` (see `_turn`)
        self._holder: int | None = None
        self._batch: _Batch | None = None
        # Last audit chain heads this store wrote (a hint for `Tx._flush_audit`, never trusted:
        # the write that uses it is conditional on the head being unchanged).
        self._audit_heads: dict[int, tuple[int, bytes]] = {}

    # -- the store's API ----------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only transaction (takes no write lock; writes in it fail). While a batch of
        decisions is open (group commit), it reads inside that batch, so it sees the decisions
        made before it, and writes nothing."""
        with self._turn():
            batch = self._batch
            if batch is None:
                conn = self._connection()
                self._begin_read(conn)
                try:
                    yield Tx(self, conn)
                finally:
                    self._rollback(conn)
                return
            with self._savepoint(batch.conn, release=False) as conn:
                yield Tx(self, conn)
            batch.members += 1
        self._await(batch)  # what it read is reported only once it is durable

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Tx]:
        """A write transaction. `durable=False` allows the engine to skip the flush to disk at
        commit (used only for data whose loss at a power cut is harmless, e.g. issued challenges).
        Commits on normal exit, rolls back on an exception.

        With group commit (the default), a transaction that starts while others are waiting
        for their turn joins one database transaction with them, each in its own savepoint (a
        failure rolls back only its own part); the last of the queue commits them all with one
        flush. The block returns only once its batch is durable, and raises `StoreError` if
        that commit failed (then none of the batch's decisions happened)."""
        if not self.group_commit:
            with self._turn():
                yield from self._single(durable)
            return
        with self._turn():
            batch = self._batch
            if batch is None and not durable:
                yield from self._single(False)  # alone: the fast path, no flush
                return
            if batch is None:
                conn = self._connection(True)
                self._begin(conn, True)
                batch = self._batch = _Batch(conn)
            with self._savepoint(batch.conn, release=True) as conn:
                tx = Tx(self, conn)
                yield tx
                tx._flush_audit()
            batch.members += 1
        self._await(batch)

    # -- group commit -------------------------------------------------------------------------

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Holds the store's lock for one transaction. On the way out, the open batch is
        committed unless another transaction is already queued for the lock (it will join the
        batch and commit it in turn) and the batch is below `max_batch`."""
        if self._holder == threading.get_ident():
            raise StoreError("a transaction is already open in this thread")
        with self._queue_lock:
            self._queued += 1
        with self._lock:
            with self._queue_lock:
                self._queued -= 1
            self._holder = threading.get_ident()
            try:
                yield
            finally:
                self._holder = None
                batch = self._batch
                if batch is not None and (self._queued == 0 or batch.members >= self.max_batch):
                    self._commit_batch(batch)

    @staticmethod
    def _await(batch: _Batch) -> None:
        batch.done.wait()
        if batch.error is not None:
            raise StoreError("the batch this transaction was in could not be committed: "
                             "none of its decisions happened") from batch.error

    def _commit_batch(self, batch: _Batch) -> None:
        self._batch = None
        try:
            self._commit(batch.conn)
        except BaseException as exc:
            self._audit_heads.clear()
            self._rollback(batch.conn)
            batch.error = exc
        batch.done.set()

    @contextmanager
    def _savepoint(self, conn: Any, *, release: bool) -> Iterator[Any]:
        """A savepoint on `conn`: released (`release`) or rolled back on normal exit; rolled
        back on an exception, which propagates."""
        run = self._execute
        run(conn, "SAVEPOINT member", ())
        try:
            yield conn
        except BaseException:
            self._audit_heads.clear()
            run(conn, "ROLLBACK TO SAVEPOINT member", ())
            run(conn, "RELEASE SAVEPOINT member", ())
            raise
        if not release:
            run(conn, "ROLLBACK TO SAVEPOINT member", ())
        run(conn, "RELEASE SAVEPOINT member", ())

    def _single(self, durable: bool) -> Iterator[Tx]:
        """One transaction, one commit (``group_commit=False``)."""
        conn = self._connection(durable)
        self._begin(conn, durable)
        tx = Tx(self, conn)
        try:
            yield tx
            tx._flush_audit()
        except BaseException:
            self._audit_heads.clear()
            self._rollback(conn)
            raise
        try:
            self._commit(conn)
        except BaseException:
            self._audit_heads.clear()
            raise

    def insert_challenge(self, row: ChallengeRow, now: int) -> None:
        """Stores an issued login challenge. Not a decision (losing it at a power cut only means
        asking for a new one), so engines may skip the flush to disk and the explicit
        transaction."""
        with self.transaction(durable=False) as tx:
            tx.challenge_insert(row, now)

    def schema_version(self) -> int:
        with self.transaction(durable=False) as tx:
            return self._current_version(tx)

    def _current_version(self, tx: Tx) -> int:
        if not self._has_table(tx, "schema_version"):
            return 0
        row = tx._one("SELECT MAX(version) FROM schema_version")
        return row[0] or 0

    def migrate(self, now_us: int | None = None) -> int:
        """Applies missing migrations in order; returns the schema version. Safe to call from
        several processes at once. Migration 2 writes records keyed under `audit_key`: migrate
        with the key the trail is to be kept under."""
        if now_us is None:
            now_us = time.time_ns() // 1000
        with self.transaction() as tx:
            self._migration_lock(tx)
            current = self._current_version(tx)
            if current > LATEST:
                raise StoreError(f"database schema {current} is newer than this capkey ({LATEST})")
            if current == 0:
                tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                           " description TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.sql(self.dialect):
                    tx.execute(statement)
                if migration.step is not None:
                    migration.step(tx, now_us)
                tx.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.description, now_us),
                )
        return self.schema_version()

    def verify_audit(self, checkpoints: Sequence[_audit.Checkpoint] = ()) -> _audit.ChainReport:
        """Checks the whole audit trail under `audit_key`, and that it still extends every one
        of `checkpoints` (``capkey audit verify``)."""
        with self.transaction(durable=False) as tx:
            rows, heads = tx.audit_rows(), tx.audit_heads()
        return _audit.verify_rows(rows, heads, self.audit_key, checkpoints)

    def export_audit_head(self) -> tuple[_audit.ChainReport, _audit.Checkpoint | None]:
        """Verifies the trail and, only if it is intact, signs a checkpoint of its heads
        (``capkey audit export-head``), to keep on write-once storage."""
        report = self.verify_audit()
        if not report.ok:
            return report, None
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return report, _audit.Checkpoint.sign(self.audit_key, report, now)

    # -- what an engine provides --------------------------------------------------------------

    @abstractmethod
    def _connection(self, durable: bool = True) -> Any: ...

    @abstractmethod
    def _begin(self, conn: Any, durable: bool) -> None: ...

    @abstractmethod
    def _begin_read(self, conn: Any) -> None: ...

    @abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    @abstractmethod
    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any: ...

    @abstractmethod
    def _has_table(self, tx: Tx, name: str) -> bool: ...

    @abstractmethod
    def _migration_lock(self, tx: Tx) -> None:
        """Serialises concurrent migrators."""

    @abstractmethod
    def close(self) -> None: ...

    # -- what an engine may override ----------------------------------------------------------

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def _rowcount(self, cursor: Any) -> int:
        """The row count of `cursor`'s statement (waiting for it if the engine pipelines)."""
        return cursor.rowcount

    def _append_if_head(self, tx: TxCore, chain: int, head: tuple[int, bytes], rows: list[tuple]
                        ) -> bool:
        """Moves `chain`'s head from `head` to the last of `rows` and inserts `rows`, only if the
        head is still `head`. Engines may do it in one statement."""
        if tx._changed(
            "UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ? AND seq = ? AND hash = ?",
            (rows[-1][1], rows[-1][9], chain, head[0], head[1]),
        ) != 1:
            return False
        for row in rows:
            tx.execute(AUDIT_INSERT, row)
        return True
