"""API keys of the HTTP service's callers.

A key is ``ck_<id>_<secret>``: a 12-hex-digit id and 64 hex digits (256 bits) of secret. The
database keeps the id, the SHA-256 digest of the secret (a random 256-bit secret needs no slow
hash: nobody can guess it from its digest), the scopes and a label; the key itself is shown once,
when it is made (``capkey api-key create``). A caller sends it as ``Authorization: Bearer <key>``.
Verified keys are remembered for `cache_seconds` (default 5 s): a revocation takes effect within
that time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ..errors import Error
from ..store import Store
from ..store.tx.service import ApiKeyRow


class Scope(StrEnum):
    """What a key may call (docs/service.md, "Callers")."""

    LOGIN = "login"  # login challenges, logins, authorisation checks, logout, code change
    STEPUP = "stepup"  # step-up begin and complete
    ADMIN = "admin"  # code reset, unblock
    AUDIT = "audit"  # audit trail verification
    METRICS = "metrics"  # Prometheus metrics


class ApiKeyError(Error):
    """A key that cannot be made or revoked (unknown id, bad scope)."""


_KEY = re.compile(r"^ck_([0-9a-f]{12})_([0-9a-f]{64})$")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the key's id (in logs and audit records) and its scopes."""

    key_id: str
    scopes: frozenset[Scope]


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    names = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    try:
        scopes = frozenset(Scope(n) for n in names)
    except ValueError:
        raise ApiKeyError(f"scopes are among: {', '.join(s.value for s in Scope)}") from None
    if not scopes:
        raise ApiKeyError("a key needs at least one scope")
    return scopes


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_key(store: Store, scopes: Iterable[str], label: str, *, now_us: int | None = None
               ) -> tuple[str, ApiKeyRow]:
    """Makes a key; returns it (to hand over once) and its row (what the database keeps)."""
    wanted = parse_scopes(scopes)
    if not 0 < len(label) <= 80:
        raise ApiKeyError("a key's label has 1 to 80 characters")
    key_id, secret = secrets.token_hex(6), secrets.token_hex(32)
    row = ApiKeyRow(key_id, _digest(secret), " ".join(sorted(s.value for s in wanted)), label,
                    now_us if now_us is not None else time.time_ns() // 1000, None)
    with store.transaction() as tx:
        tx.api_key_insert(row)
        tx.audit(at=row.created_at, actor="ops", subject=f"api-key/{key_id}", method="ADMIN",
                 result="API_KEY_CREATED", reason="")
    return f"ck_{key_id}_{secret}", row


def revoke_key(store: Store, key_id: str, *, now_us: int | None = None) -> None:
    now = now_us if now_us is not None else time.time_ns() // 1000
    with store.transaction() as tx:
        if not tx.api_key_revoke(key_id, now):
            raise ApiKeyError(f"no active key {key_id}")
        tx.audit(at=now, actor="ops", subject=f"api-key/{key_id}", method="ADMIN",
                 result="API_KEY_REVOKED", reason="")


class ApiKeys:
    """Checks the keys callers present against the store."""

    def __init__(self, store: Store, *, cache_seconds: float = 5.0) -> None:
        self._store = store
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, ApiKeyRow | None]] = {}
        self._lock = threading.Lock()

    def caller(self, token: str | None) -> Caller | None:
        """The caller a bearer token names, or None (unknown, malformed or revoked)."""
        m = _KEY.match(token or "")
        if m is None:
            return None
        key_id, secret = m.groups()
        row = self._row(key_id)
        # compared even for an unknown id, so that the answer takes the same time
        expected = row.digest if row is not None else bytes(32)
        if not hmac.compare_digest(_digest(secret), expected) or row is None or (
                row.revoked_at is not None):
            return None
        return Caller(key_id, parse_scopes(row.scopes))

    def cached(self, token: str | None) -> bool:
        """Whether `caller(token)` can answer without the database (the event loop may call it
        then, instead of a worker thread)."""
        m = _KEY.match(token or "")
        if m is None:
            return True
        with self._lock:
            hit = self._cache.get(m.group(1))
        return hit is not None and time.monotonic() - hit[0] < self._ttl

    def _row(self, key_id: str) -> ApiKeyRow | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        with self._store.read() as tx:
            row = tx.api_key_get(key_id)
        with self._lock:
            if len(self._cache) > 10_000:  # unknown ids from a scan: never grow without bound
                self._cache.clear()
            self._cache[key_id] = (now, row)
        return row
