"""Sessions (idle expiry, R13) and the single-use step-up grants bound to them."""

from __future__ import annotations

from ..rows import SESSION_COLUMNS, SessionRow, read_session
from .core import TxCore


class SessionsTx(TxCore):
    def session_insert(self, s: SessionRow, now: int) -> None:
        self.execute(
            f"INSERT INTO sessions ({SESSION_COLUMNS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.user_id, s.method, s.auth_level, s.sca_at, s.last_activity,
             int(s.must_change), int(s.active), now),
        )

    def session_get(self, session_id: str) -> SessionRow | None:
        return read_session(self._one(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
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
