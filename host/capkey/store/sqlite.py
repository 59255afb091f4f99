"""SQLite back end: the embedded default.

One file, WAL journal, ``BEGIN IMMEDIATE`` for every transaction (a verification takes the write lock
before it reads the state it decides on, so two processes can never both decide on the same state).

Durability (``PRAGMA synchronous``): transactions that decide something — verifications, counters,
blocks, resets, audit — run with ``synchronous=FULL``: the WAL is flushed to disk at each commit, so a
power cut loses no accepted ATC, no failure count and no audit record that was reported. Challenge
issuance runs with ``synchronous=NORMAL``: a power cut may lose challenges issued since the last full
commit, which only means the person asks for a new one. docs/rules.md states the same.

``synchronous="NORMAL"`` for everything is an explicit opt-in (`open_store(...,
sqlite_synchronous="NORMAL")`): faster, but a power cut can then roll back the last decisions made
before the cut (a consumed challenge and its accepted ATC, counted failures, audit records); the
database stays consistent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .base import Store
from .keys import AuditKey
from .tx import Tx

_BUSY_TIMEOUT_MS = 30_000


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str, *, audit_key: AuditKey, busy_timeout_ms: int = _BUSY_TIMEOUT_MS,
                 synchronous: str = "FULL", group_commit: bool = True):
        super().__init__(audit_key, group_commit=group_commit)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL (default) or NORMAL (see docs/rules.md)")
        self.path = path
        self.synchronous = synchronous
        self._conn = self._open(path, busy_timeout_ms, synchronous)
        # A second connection for non-durable writes (challenge issuance), so that no PRAGMA
        # has to be switched back and forth on the hot path.
        self._fast = (self._open(path, busy_timeout_ms, "NORMAL") if path != ":memory:"
                      else self._conn)

    @staticmethod
    def _open(path: str, busy_timeout_ms: int, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal" and path != ":memory:":
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL (got {mode})")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        return conn

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _connection(self, durable: bool = True) -> sqlite3.Connection:
        return self._conn if durable else self._fast

    def _begin(self, conn: sqlite3.Connection, durable: bool) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _begin_read(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _execute(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
        return conn.execute(sql, params)

    def _has_table(self, tx: Tx, name: str) -> bool:
        return tx._one(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ) is not None

    def _migration_lock(self, tx: Tx) -> None:
        pass  # BEGIN IMMEDIATE already serialises writers

    def close(self) -> None:
        if self._fast is not self._conn:
            self._fast.close()
        self._conn.close()
