"""Login and step-up challenges: single use, consumed by exactly one attempt (R9)."""

from __future__ import annotations

from ..rows import CHALLENGE_COLUMNS, ChallengeRow, read_challenge
from .core import TxCore


class ChallengesTx(TxCore):
    def challenge_insert(self, c: ChallengeRow, now: int) -> None:
        self.execute(
            f"INSERT INTO challenges ({CHALLENGE_COLUMNS}, used, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (c.id, c.nonce, c.subscription, c.user_no, c.user_id, c.session_id, c.purpose,
             c.digest, c.expires_at, now),
        )

    def challenge_consume(self, challenge_id: str, now: int) -> ChallengeRow | None:
        """Marks the challenge used if it is unused and unexpired; returns it, or None. Exactly
        one of any number of concurrent consumers gets the row (R9). The caller checks the
        bindings (user, purpose, digest, session) on the returned row: a challenge is spent by any
        attempt, matching or not."""
        return read_challenge(self._one(
            f"UPDATE challenges SET used = 1 WHERE id = ? AND used = 0 AND expires_at > ? "
            f"RETURNING {CHALLENGE_COLUMNS}",
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
