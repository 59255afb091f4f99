"""Subscriptions and users: creation, lookup under the user's row lock, failure counting,
blocks (R10), codes."""

from __future__ import annotations

from typing import Any

from ..errors import Conflict
from ..rows import USER_COLUMNS, UserRow, read_user
from .core import TxCore


class UsersTx(TxCore):
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
        return read_user(self._one(
            f"SELECT {USER_COLUMNS} FROM users u JOIN subscriptions s ON s.id = u.subscription_id "
            f"WHERE s.ident = ? AND u.user_no = ?{self._lock_clause if lock else ''}",
            (subscription, user_no),
        ))

    def user_get(self, user_id: int, *, lock: bool = False) -> UserRow | None:
        return read_user(self._one(
            f"SELECT {USER_COLUMNS} FROM users u JOIN subscriptions s ON s.id = u.subscription_id "
            f"WHERE u.id = ?{self._lock_clause if lock else ''}",
            (user_id,),
        ))

    def users_of(self, subscription: str) -> list[UserRow]:
        rows = self.execute(
            f"SELECT {USER_COLUMNS} FROM users u JOIN subscriptions s ON s.id = u.subscription_id "
            "WHERE s.ident = ? ORDER BY u.user_no",
            (subscription,),
        ).fetchall()
        return [read_user(r) for r in rows]  # type: ignore[misc]

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
