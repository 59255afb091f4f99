"""The store: one SQL vocabulary over SQLite and PostgreSQL.

`Store.transaction()` yields a `Tx`. Every state change a decision depends on is one conditional
``UPDATE … WHERE <guard>`` whose row count (or ``RETURNING`` row) decides; reads that a decision is
based on happen under the user's row lock (``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE``
on PostgreSQL), so the guards are a second, independent line of defence.

Times are integers: microseconds since the epoch, UTC.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import audit as _audit
from .migrations import LATEST, MIGRATIONS


class StoreError(Exception):
    """The database is unusable for capkey (unknown schema version, bad URL…)."""


class Conflict(StoreError):
    """A unique name (subscription, user number, certificate) already exists."""


@dataclass(frozen=True)
class UserRow:
    id: int
    subscription_id: int
    subscription: str
    subscription_active: bool
    user_no: str
    role: str
    active: bool
    failures: int
    blocked_until: int | None
    temp_blocks: int
    permanent_block: bool
    last_sca_at: int | None
    code_hash: str | None
    code_must_change: bool

    def blocked(self, now: int) -> bool:
        return self.permanent_block or (self.blocked_until is not None and self.blocked_until > now)


@dataclass(frozen=True)
class CardRow:
    id: int
    user_id: int
    label: str
    profile: str
    last_atc: int
    active: bool


@dataclass(frozen=True)
class CertRow:
    id: int
    user_id: int
    fingerprint: str
    serial: str
    active: bool


@dataclass(frozen=True)
class ChallengeRow:
    id: str
    nonce: bytes
    subscription: str
    user_no: str
    user_id: int | None
    session_id: str | None
    purpose: str
    digest: bytes
    expires_at: int


@dataclass(frozen=True)
class SessionRow:
    id: str
    user_id: int
    method: str
    auth_level: str
    sca_at: int | None
    last_activity: int
    must_change: bool
    active: bool


_USER_COLUMNS = (
    "u.id, u.subscription_id, s.ident, s.active, u.user_no, u.role, u.active, u.failures, "
    "u.blocked_until, u.temp_blocks, u.permanent_block, u.last_sca_at, u.code_hash, "
    "u.code_must_change"
)
_SESSION_COLUMNS = "id, user_id, method, auth_level, sca_at, last_activity, must_change, active"
_CHALLENGE_COLUMNS = (
    "id, nonce, subscription, user_no, user_id, session_id, purpose, digest, expires_at"
)


def _user(row: Sequence[Any] | None) -> UserRow | None:
    if row is None:
        return None
    return UserRow(
        row[0], row[1], row[2], bool(row[3]), row[4], row[5], bool(row[6]), row[7], row[8],
        row[9], bool(row[10]), row[11], row[12], bool(row[13]),
    )


def _challenge(row: Sequence[Any] | None) -> ChallengeRow | None:
    if row is None:
        return None
    return ChallengeRow(row[0], bytes(row[1]), row[2], row[3], row[4], row[5], row[6],
                        bytes(row[7]), row[8])


def _session(row: Sequence[Any] | None) -> SessionRow | None:
    if row is None:
        return None
    return SessionRow(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), bool(row[7]))


_AUDIT_INSERT = (
    "INSERT INTO audit (chain, seq, at, actor, subject, method, result, reason, prev, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _chain(chain: int, head: tuple[int, bytes], records: list[_audit.AuditRecord]) -> list[tuple]:
    """Audit rows for `records` following `head` = (seq, hash) of `chain`."""
    seq, prev = head
    rows = []
    for record in records:
        seq += 1
        chained = _audit.AuditRecord(record.at, record.actor, record.subject, record.method,
                                     record.result, record.reason, chain, seq)
        digest = _audit.record_hash(prev, chained)
        rows.append((chain, seq, chained.at, chained.actor, chained.subject, chained.method,
                     chained.result, chained.reason, prev, digest))
        prev = digest
    return rows


class Tx:
    """One open transaction. Obtained from `Store.transaction()`; do not keep it after the block."""

    def __init__(self, store: Store, conn: Any):
        self._store = store
        self._conn = conn
        self._lock_clause = store._for_update
        self._audit_queue: list[_audit.AuditRecord] = []

    # -- plumbing ---------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._store._execute(self._conn, sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def _changed(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._store._rowcount(self.execute(sql, params))

    # -- subscriptions and users --------------------------------------------------------------

    def subscription_create(self, ident: str, now: int) -> int:
        if self._one("SELECT id FROM subscriptions WHERE ident = ?", (ident,)) is not None:
            raise Conflict(f"subscription {ident} exists")
        return self._one(
            "INSERT INTO subscriptions (ident, active, created_at) VALUES (?, 1, ?) RETURNING id",
            (ident, now),
        )[0]

    def subscription_get(self, ident: str) -> tuple[int, bool] | None:
        row = self._one("SELECT id, active FROM subscriptions WHERE ident = ?", (ident,))
        return None if row is None else (row[0], bool(row[1]))

    def subscription_deactivate(self, subscription_id: int) -> bool:
        return self._changed(
            "UPDATE subscriptions SET active = 0 WHERE id = ? AND active = 1", (subscription_id,)
        ) == 1

    def user_create(self, subscription_id: int, user_no: str, role: str, now: int) -> int:
        if self._one(
            "SELECT id FROM users WHERE subscription_id = ? AND user_no = ?",
            (subscription_id, user_no),
        ) is not None:
            raise Conflict(f"user {user_no} exists")
        return self._one(
            "INSERT INTO users (subscription_id, user_no, role, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (subscription_id, user_no, role, now),
        )[0]

    def user_find(self, subscription: str, user_no: str, *, lock: bool = False) -> UserRow | None:
        """The user, with its row locked for this transaction when `lock`."""
        return _user(self._one(
            f"SELECT {_USER_COLUMNS} FROM users u JOIN subscriptions s ON s.id = u.subscription_id "
            f"WHERE s.ident = ? AND u.user_no = ?{self._lock_clause if lock else ''}",
            (subscription, user_no),
        ))

    def user_get(self, user_id: int, *, lock: bool = False) -> UserRow | None:
        return _user(self._one(
            f"SELECT {_USER_COLUMNS} FROM users u JOIN subscriptions s ON s.id = u.subscription_id "
            f"WHERE u.id = ?{self._lock_clause if lock else ''}",
            (user_id,),
        ))

    def users_of(self, subscription: str) -> list[UserRow]:
        rows = self.execute(
            f"SELECT {_USER_COLUMNS} FROM users u JOIN subscriptions s ON s.id = u.subscription_id "
            "WHERE s.ident = ? ORDER BY u.user_no",
            (subscription,),
        ).fetchall()
        return [_user(r) for r in rows]  # type: ignore[misc]

    def user_count_failure(self, user_id: int) -> int:
        """Adds one consecutive failure; returns the new count (the increment is atomic)."""
        return self._one(
            "UPDATE users SET failures = failures + 1 WHERE id = ? RETURNING failures", (user_id,)
        )[0]

    def user_set_block(self, user_id: int, *, threshold: int, now: int, until: int | None) -> bool:
        """Sets the block once: only the write that finds `threshold` failures and no current block
        succeeds. ``until=None`` sets a permanent block. Clears the failure count."""
        if until is None:
            return self._changed(
                "UPDATE users SET permanent_block = 1, failures = 0, temp_blocks = temp_blocks + 1 "
                "WHERE id = ? AND failures >= ? AND permanent_block = 0 "
                "AND (blocked_until IS NULL OR blocked_until <= ?)",
                (user_id, threshold, now),
            ) == 1
        return self._changed(
            "UPDATE users SET blocked_until = ?, failures = 0, temp_blocks = temp_blocks + 1 "
            "WHERE id = ? AND failures >= ? AND permanent_block = 0 "
            "AND (blocked_until IS NULL OR blocked_until <= ?)",
            (until, user_id, threshold, now),
        ) == 1

    def user_record_success(self, user_id: int, *, now: int, sca: bool) -> bool:
        """Resets the failure streak (and records the SCA time) unless the user is blocked or
        inactive; the guard means a success never lifts a block set concurrently (R10)."""
        sca_sql = ", last_sca_at = ?" if sca else ""
        params: tuple[Any, ...] = (now,) if sca else ()
        return self._changed(
            f"UPDATE users SET failures = 0, temp_blocks = 0{sca_sql} WHERE id = ? AND active = 1 "
            "AND permanent_block = 0 AND (blocked_until IS NULL OR blocked_until <= ?)",
            params + (user_id, now),
        ) == 1

    def user_record_sca(self, user_id: int, now: int) -> bool:
        return self._changed(
            "UPDATE users SET last_sca_at = ? WHERE id = ? AND active = 1", (now, user_id)
        ) == 1

    def user_set_code(self, user_id: int, code_hash: str, *, must_change: bool,
                      expected_hash: str | None = None, reset_counters: bool = False) -> bool:
        """Stores a new code hash; with `expected_hash`, only if the stored hash is still that one
        (so two concurrent changes cannot both win)."""
        counters = (", failures = 0, temp_blocks = 0, blocked_until = NULL, permanent_block = 0"
                    if reset_counters else "")
        guard = " AND code_hash = ?" if expected_hash is not None else ""
        params: tuple[Any, ...] = (code_hash, int(must_change), user_id)
        if expected_hash is not None:
            params += (expected_hash,)
        return self._changed(
            f"UPDATE users SET code_hash = ?, code_must_change = ?{counters} "
            f"WHERE id = ? AND active = 1{guard}",
            params,
        ) == 1

    def user_unblock(self, user_id: int) -> bool:
        return self._changed(
            "UPDATE users SET failures = 0, temp_blocks = 0, blocked_until = NULL, "
            "permanent_block = 0 WHERE id = ? AND (failures > 0 OR temp_blocks > 0 OR "
            "blocked_until IS NOT NULL OR permanent_block = 1)",
            (user_id,),
        ) == 1

    def user_deactivate(self, user_id: int) -> bool:
        return self._changed(
            "UPDATE users SET active = 0 WHERE id = ? AND active = 1", (user_id,)
        ) == 1

    # -- credentials --------------------------------------------------------------------------

    def card_add(self, user_id: int, label: str, profile: str, now: int) -> int:
        return self._one(
            "INSERT INTO cap_cards (user_id, label, profile, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            (user_id, label, profile, now),
        )[0]

    def cards_of(self, user_id: int, *, active_only: bool = True) -> list[CardRow]:
        where = " AND active = 1" if active_only else ""
        rows = self.execute(
            f"SELECT id, user_id, label, profile, last_atc, active FROM cap_cards "
            f"WHERE user_id = ?{where} ORDER BY id",
            (user_id,),
        ).fetchall()
        return [CardRow(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def card_raise_atc(self, card_id: int, atc: int) -> bool:
        """The ATC floor only moves up, and only one writer can move it to a given value (R9)."""
        return self._changed(
            "UPDATE cap_cards SET last_atc = ? WHERE id = ? AND active = 1 AND last_atc < ?",
            (atc, card_id, atc),
        ) == 1

    def card_deactivate(self, card_id: int) -> int | None:
        row = self._one(
            "UPDATE cap_cards SET active = 0 WHERE id = ? AND active = 1 RETURNING user_id",
            (card_id,),
        )
        return None if row is None else row[0]

    def cert_add(self, user_id: int, fingerprint: str, serial: str, now: int) -> int:
        if self._one("SELECT id FROM certificates WHERE fingerprint = ?", (fingerprint,)):
            raise Conflict("certificate already registered")
        return self._one(
            "INSERT INTO certificates (user_id, fingerprint, serial, created_at) "
            "VALUES (?, ?, ?, ?) RETURNING id",
            (user_id, fingerprint, serial, now),
        )[0]

    def cert_find(self, user_id: int, fingerprint: str) -> CertRow | None:
        row = self._one(
            "SELECT id, user_id, fingerprint, serial, active FROM certificates "
            "WHERE user_id = ? AND fingerprint = ? AND active = 1",
            (user_id, fingerprint),
        )
        return None if row is None else CertRow(row[0], row[1], row[2], row[3], bool(row[4]))

    def certs_of(self, user_id: int) -> list[CertRow]:
        rows = self.execute(
            "SELECT id, user_id, fingerprint, serial, active FROM certificates WHERE user_id = ? "
            "ORDER BY id",
            (user_id,),
        ).fetchall()
        return [CertRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def cert_deactivate(self, cert_id: int) -> int | None:
        row = self._one(
            "UPDATE certificates SET active = 0 WHERE id = ? AND active = 1 RETURNING user_id",
            (cert_id,),
        )
        return None if row is None else row[0]

    # -- challenges ---------------------------------------------------------------------------

    def challenge_insert(self, c: ChallengeRow, now: int) -> None:
        self.execute(
            f"INSERT INTO challenges ({_CHALLENGE_COLUMNS}, used, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (c.id, c.nonce, c.subscription, c.user_no, c.user_id, c.session_id, c.purpose,
             c.digest, c.expires_at, now),
        )

    def challenge_consume(self, challenge_id: str, now: int) -> ChallengeRow | None:
        """Marks the challenge used if it is unused and unexpired; returns it, or None. Exactly
        one of any number of concurrent consumers gets the row (R9). The caller checks the
        bindings (user, purpose, digest, session) on the returned row: a challenge is spent by any
        attempt, matching or not."""
        return _challenge(self._one(
            f"UPDATE challenges SET used = 1 WHERE id = ? AND used = 0 AND expires_at > ? "
            f"RETURNING {_CHALLENGE_COLUMNS}",
            (challenge_id, now),
        ))

    def challenges_void_user(self, user_id: int, subscription: str, user_no: str) -> int:
        return self._changed(
            "UPDATE challenges SET used = 1 WHERE used = 0 AND "
            "(user_id = ? OR (subscription = ? AND user_no = ?))",
            (user_id, subscription, user_no),
        )

    def challenges_void_subscription(self, subscription: str) -> int:
        return self._changed(
            "UPDATE challenges SET used = 1 WHERE used = 0 AND subscription = ?", (subscription,)
        )

    def challenges_purge(self, before: int) -> int:
        return self._changed("DELETE FROM challenges WHERE expires_at < ?", (before,))

    # -- sessions and step-up grants ------------------------------------------------------------

    def session_insert(self, s: SessionRow, now: int) -> None:
        self.execute(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.user_id, s.method, s.auth_level, s.sca_at, s.last_activity,
             int(s.must_change), int(s.active), now),
        )

    def session_get(self, session_id: str) -> SessionRow | None:
        return _session(self._one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        ))

    def session_touch(self, session_id: str, *, now: int, idle_limit: int) -> bool:
        """Records activity if the session is active and was not idle for more than `idle_limit`
        microseconds; False means it has expired (R13)."""
        return self._changed(
            "UPDATE sessions SET last_activity = CASE WHEN last_activity < ? THEN ? "
            "ELSE last_activity END WHERE id = ? AND active = 1 AND last_activity >= ?",
            (now, now, session_id, now - idle_limit),
        ) == 1

    def session_end(self, session_id: str) -> bool:
        return self._changed(
            "UPDATE sessions SET active = 0 WHERE id = ? AND active = 1", (session_id,)
        ) == 1

    def sessions_end_user(self, user_id: int) -> int:
        return self._changed(
            "UPDATE sessions SET active = 0 WHERE user_id = ? AND active = 1", (user_id,)
        )

    def sessions_end_subscription(self, subscription_id: int) -> int:
        return self._changed(
            "UPDATE sessions SET active = 0 WHERE active = 1 AND user_id IN "
            "(SELECT id FROM users WHERE subscription_id = ?)",
            (subscription_id,),
        )

    def session_code_changed(self, session_id: str) -> bool:
        return self._changed(
            "UPDATE sessions SET must_change = 0 WHERE id = ? AND active = 1 AND must_change = 1",
            (session_id,),
        ) == 1

    def session_record_sca(self, session_id: str, now: int) -> bool:
        return self._changed(
            "UPDATE sessions SET sca_at = ? WHERE id = ? AND active = 1", (now, session_id)
        ) == 1

    def grant_insert(self, session_id: str, operation: str, digest: bytes, *, expires_at: int,
                     now: int) -> None:
        self.execute(
            "INSERT INTO grants (session_id, operation, digest, expires_at, used, created_at) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            (session_id, operation, digest, expires_at, now),
        )

    def grant_consume(self, session_id: str, operation: str, digest: bytes, now: int) -> bool:
        """Uses one unexpired step-up grant for exactly this operation and digest."""
        row = self._one(
            "SELECT id FROM grants WHERE session_id = ? AND operation = ? AND digest = ? "
            "AND used = 0 AND expires_at > ? ORDER BY id LIMIT 1",
            (session_id, operation, digest, now),
        )
        if row is None:
            return False
        return self._changed(
            "UPDATE grants SET used = 1 WHERE id = ? AND used = 0", (row[0],)
        ) == 1

    def grant_pending_other(self, session_id: str, operation: str, digest: bytes, now: int) -> bool:
        """Whether an unused grant exists for `operation` over another digest."""
        return self._one(
            "SELECT 1 FROM grants WHERE session_id = ? AND operation = ? AND digest <> ? "
            "AND used = 0 AND expires_at > ?",
            (session_id, operation, digest, now),
        ) is not None

    # -- settings -----------------------------------------------------------------------------

    def setting_get(self, name: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE name = ?", (name,))
        return None if row is None else row[0]

    def setting_replace(self, name: str, old: str | None, new: str) -> bool:
        """Sets `name` to `new` if it is still `old` (None: absent)."""
        if old is None:
            if self._one("SELECT 1 FROM settings WHERE name = ?", (name,)) is not None:
                return False
            self.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (name, new))
            return True
        return self._changed(
            "UPDATE settings SET value = ? WHERE name = ? AND value = ?", (new, name, old)
        ) == 1

    # -- audit --------------------------------------------------------------------------------

    def audit(self, *, at: int, actor: str, subject: str, method: str, result: str,
              reason: str = "") -> None:
        """Queues an audit record; it is chained and written just before the commit."""
        for name, value in (("actor", actor), ("subject", subject), ("method", method),
                            ("result", result), ("reason", reason)):
            _audit.check_field(name, value)
        self._audit_queue.append(_audit.AuditRecord(at, actor, subject, method, result, reason))

    def _flush_audit(self) -> None:
        """Chains and writes the queued records, one chain at a time in chain order (a fixed lock
        order: no deadlock between two writers). Fast path: this store's last known head of the
        chain, advanced by a conditional write on (seq, hash) that fails if another writer moved
        it; slow path: read the head under lock."""
        if not self._audit_queue:
            return
        by_chain: dict[int, list[_audit.AuditRecord]] = {}
        for record in self._audit_queue:
            by_chain.setdefault(_audit.chain_of(record.subject), []).append(record)
        self._audit_queue = []
        heads = self._store._audit_heads
        for chain in sorted(by_chain):
            known = heads.pop(chain, None)
            if known is not None:
                rows = _chain(chain, known, by_chain[chain])
                if self._store._append_if_head(self, chain, known, rows):
                    heads[chain] = (rows[-1][1], rows[-1][9])
                    continue
            seq, prev = self._one(
                f"SELECT seq, hash FROM audit_heads WHERE chain = ?{self._store._for_update_plain}",
                (chain,),
            )
            rows = _chain(chain, (seq, bytes(prev)), by_chain[chain])
            if self._changed(
                "UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ? AND seq = ?",
                (rows[-1][1], rows[-1][9], chain, seq),
            ) != 1:
                raise StoreError("audit chain head moved under a locked transaction")
            for row in rows:
                self.execute(_AUDIT_INSERT, row)
            heads[chain] = (rows[-1][1], rows[-1][9])

    def audit_rows(self) -> list[tuple]:
        return self.execute(
            "SELECT chain, seq, at, actor, subject, method, result, reason, prev, hash "
            "FROM audit ORDER BY chain, seq"
        ).fetchall()

    def audit_heads(self) -> dict[int, tuple[int, bytes]]:
        return {r[0]: (r[1], bytes(r[2])) for r in
                self.execute("SELECT chain, seq, hash FROM audit_heads").fetchall()}


class Store(ABC):
    """A capkey database. Thread-safe (one connection, one transaction at a time); open one
    `Store` per process."""

    dialect: str
    _for_update = ""  # appended to a SELECT on users u … to lock the user row
    _for_update_plain = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Last audit chain heads this store wrote (a hint for `Tx._flush_audit`, never trusted:
        # the write that uses it is conditional on the head being unchanged).
        self._audit_heads: dict[int, tuple[int, bytes]] = {}

    def _append_if_head(self, tx: Tx, chain: int, head: tuple[int, bytes], rows: list[tuple]
                        ) -> bool:
        """Moves `chain`'s head from `head` to the last of `rows` and inserts `rows`, only if the
        head is still `head`. Engines may do it in one statement."""
        if tx._changed(
            "UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ? AND seq = ? AND hash = ?",
            (rows[-1][1], rows[-1][9], chain, head[0], head[1]),
        ) != 1:
            return False
        for row in rows:
            tx.execute(_AUDIT_INSERT, row)
        return True

    @abstractmethod
    def _connection(self, durable: bool = True) -> Any: ...

    @abstractmethod
    def _begin(self, conn: Any, durable: bool) -> None: ...

    def _commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    @abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    @abstractmethod
    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any: ...

    @abstractmethod
    def close(self) -> None: ...

    def _rowcount(self, cursor: Any) -> int:
        """The row count of `cursor`'s statement (waiting for it if the engine pipelines)."""
        return cursor.rowcount

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only transaction (takes no write lock; writes in it fail)."""
        with self._lock:
            conn = self._connection()
            self._begin_read(conn)
            tx = Tx(self, conn)
            try:
                yield tx
            finally:
                self._rollback(conn)

    @abstractmethod
    def _begin_read(self, conn: Any) -> None: ...

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Tx]:
        """A write transaction. `durable=False` allows the engine to skip the flush to disk at
        commit (used only for data whose loss at a power cut is harmless, e.g. issued challenges).
        Commits on normal exit, rolls back on an exception."""
        with self._lock:
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

    @abstractmethod
    def _has_table(self, tx: Tx, name: str) -> bool: ...

    @abstractmethod
    def _migration_lock(self, tx: Tx) -> None:
        """Serialises concurrent migrators."""

    def migrate(self, now_us: int = 0) -> int:
        """Applies missing migrations in order; returns the schema version. Safe to call from
        several processes at once."""
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
                tx.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.description, now_us),
                )
        return self.schema_version()

    def verify_audit(self) -> _audit.ChainReport:
        """Checks the whole audit trail (``capkey audit verify``)."""
        with self.transaction(durable=False) as tx:
            return _audit.verify_rows(tx.audit_rows(), tx.audit_heads())
