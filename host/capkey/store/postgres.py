"""PostgreSQL back end (psycopg 3), for several backend nodes sharing one state.

Transactions run at READ COMMITTED. A verification first locks the user's row
(``SELECT … FOR UPDATE``), so verifications for one user are serialised across nodes while different
users proceed in parallel; every state change is still a conditional ``UPDATE`` whose row count
decides (PostgreSQL re-checks the ``WHERE`` of a waiting ``UPDATE`` against the committed row), so a
double accept would need both guards to fail. Audit chain heads are locked last, in chain order.

Group commit is off by default here: PostgreSQL already groups the commits of concurrent
sessions, and a batch holding several users' row locks in one process can deadlock with another
process's batch (measured: `capkey serve` with two workers, 64 callers). Turn it on only for a
single process.

Durability follows the server's ``synchronous_commit`` (on by default: a reported commit survives a
power cut). Challenge issuance sets ``synchronous_commit = off`` for its own transaction only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .base import Store
from .keys import AuditKey
from .rows import ChallengeRow
from .tx import Tx
from .tx.core import TxCore

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x6361706B6579  # "capkey"


def _conninfo(dsn: str, *options: str, **params: Any) -> str:
    """`dsn` with `options` (``-c name=value`` settings) appended to its own and `params` set.
    A keyword ``options=`` given to ``psycopg.connect`` would replace the DSN's instead (a
    ``search_path`` in the URL lost on a second connection: issue 12, break 6)."""
    merged = " ".join(filter(None, (str(conninfo_to_dict(dsn).get("options") or ""), *options)))
    return make_conninfo(dsn, options=merged or None, **params)


class PostgresStore(Store):
    dialect = "postgres"
    _for_update = " FOR UPDATE OF u"
    _for_update_plain = " FOR UPDATE"

    def __init__(self, dsn: str, *, audit_key: AuditKey, schema: str | None = None,
                 connect_timeout: int = 5, group_commit: bool = False):
        super().__init__(audit_key, group_commit=group_commit)
        self.schema = schema
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError("schema name must be a lower-case SQL identifier")
        # Every connection opens with this (the DSN's own options kept, the schema's added).
        self._conninfo = _conninfo(dsn, *([f"-c search_path={schema}"] if schema else []),
                                   connect_timeout=connect_timeout)
        self._conn = psycopg.connect(self._conninfo, autocommit=True)
        self._fast: psycopg.Connection | None = None
        if schema is not None:
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self._sql_cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"  # the DSN may hold a password

    def _connection(self, durable: bool = True) -> psycopg.Connection:
        return self._conn

    def _begin(self, conn: psycopg.Connection, durable: bool) -> None:
        conn.execute("BEGIN")
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")

    def _begin_read(self, conn: psycopg.Connection) -> None:
        conn.execute("BEGIN READ ONLY")

    def _rollback(self, conn: psycopg.Connection) -> None:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")

    def _execute(self, conn: psycopg.Connection, sql: str, params: Sequence[Any]) -> Any:
        converted = self._sql_cache.get(sql)
        if converted is None:
            # All capkey SQL uses ? placeholders and never a literal ? or %.
            converted = sql.replace("%", "%%").replace("?", "%s")
            self._sql_cache[sql] = converted
        return conn.execute(converted, params, prepare=True)

    def _append_if_head(self, tx: TxCore, chain: int, head: tuple[int, bytes], rows: list[tuple]
                        ) -> bool:
        """One statement: the head moves and the rows are inserted only if the head matched."""
        values = ", ".join(["(?::bigint, ?::bigint, ?::text, ?::text, ?::text, ?::text, ?::text, "
                            "?::bytea, ?::bytea)"] * len(rows))
        params: list[Any] = [rows[-1][1], rows[-1][9], chain, head[0], head[1]]
        for row in rows:
            params.extend(row[1:])
        inserted = tx._changed(
            "WITH h AS (UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ? AND seq = ? "
            "AND hash = ? RETURNING chain) "
            "INSERT INTO audit (chain, seq, at, actor, subject, method, result, reason, prev, hash) "
            f"SELECT h.chain, v.* FROM h, (VALUES {values}) AS v",
            params,
        )
        return inserted == len(rows)

    def insert_challenge(self, row: ChallengeRow, now: int) -> None:
        """One autocommitted INSERT on a second connection with synchronous_commit off: one
        network round trip instead of four."""
        with self._lock:
            if self._fast is None:
                self._fast = psycopg.connect(
                    _conninfo(self._conninfo, "-c synchronous_commit=off"), autocommit=True)
            self._fast.execute(
                "INSERT INTO challenges (id, nonce, subscription, user_no, user_id, session_id, "
                "purpose, digest, expires_at, used, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s)",
                (row.id, row.nonce, row.subscription, row.user_no, row.user_id, row.session_id,
                 row.purpose, row.digest, row.expires_at, now), prepare=True)

    def _has_table(self, tx: Tx, name: str) -> bool:
        return tx._one(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = ?",
            (name,),
        ) is not None

    def _migration_lock(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def drop_schema(self) -> None:
        """Drops this store's schema (tests)."""
        if self.schema is None:
            raise ValueError("no private schema to drop")
        self._conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        self._conn.close()
