"""The rows a transaction returns: frozen snapshots, read once, never written back.

Each column list below is in its dataclass's field order; the `read_*` helpers rely on that order
and turn the engines' integer booleans and memoryviews into `bool` and `bytes`. Times are integers:
microseconds since the epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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
    reader_family: str | None = None  # of the last accepted code (docs/cap.md §5.5)


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


# For ``FROM users u JOIN subscriptions s``: a user row always carries its subscription's state.
USER_COLUMNS = (
    "u.id, u.subscription_id, s.ident, s.active, u.user_no, u.role, u.active, u.failures, "
    "u.blocked_until, u.temp_blocks, u.permanent_block, u.last_sca_at, u.code_hash, "
    "u.code_must_change"
)
SESSION_COLUMNS = "id, user_id, method, auth_level, sca_at, last_activity, must_change, active"
CHALLENGE_COLUMNS = (
    "id, nonce, subscription, user_no, user_id, session_id, purpose, digest, expires_at"
)


def read_user(row: Sequence[Any] | None) -> UserRow | None:
    if row is None:
        return None
    return UserRow(
        row[0], row[1], row[2], bool(row[3]), row[4], row[5], bool(row[6]), row[7], row[8],
        row[9], bool(row[10]), row[11], row[12], bool(row[13]),
    )


def read_challenge(row: Sequence[Any] | None) -> ChallengeRow | None:
    if row is None:
        return None
    return ChallengeRow(row[0], bytes(row[1]), row[2], row[3], row[4], row[5], row[6],
                        bytes(row[7]), row[8])


def read_session(row: Sequence[Any] | None) -> SessionRow | None:
    if row is None:
        return None
    return SessionRow(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), bool(row[7]))
