"""The portal's server-side records, one per browser (the cookie names it) once it has something
to remember: the CSRF token, the rules session once signed in, and what is pending between two
pages. Nothing a browser sends is trusted across pages: what a later page acts on is this record.
Also the rate limit of login forms per client address (`Throttle`)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..rules import Batch, LoginChallenge, Payment, Session, StepUpChallenge


@dataclass
class PendingLogin:
    method: str  # "cap" | "certificat"
    subscription: str
    user: str
    challenge: LoginChallenge
    payload: bytes | None = None  # certificate: the LOGIN payload to sign


@dataclass
class PendingOperation:
    slug: str
    operation: str
    summary: list[tuple[str, str]]
    transaction: Payment | Batch | None = None
    operation_id: str | None = None
    step_up: StepUpChallenge | None = None
    error: str = ""


@dataclass
class WebSession:
    id: str
    csrf: str
    touched: float
    auth: Session | None = None
    login: PendingLogin | None = None
    operation: PendingOperation | None = None
    done: dict[str, Any] | None = None
    history: list[str] = field(default_factory=list)
    notice: str = ""
    error: str = ""
    form: dict[str, str] = field(default_factory=dict)
    # the browser's own preferences, read from their cookies at each request (web.PREFERENCES)
    accessible: bool = False
    remembered: str = ""


class Records:
    """The portal's server-side records, by id, expiring after `ttl` seconds without use.

    Anonymous records (a visitor who posted a login form) are at most `limit`, the least recently
    used going first; signed-in ones do not count and go only at expiry or logout, so that no
    number of visitors pushes a customer out. Their number is that of the logins of the last
    `ttl` seconds, which `Throttle` slows down."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic,
                 limit: int = 10_000):
        self.ttl = ttl
        self._clock = clock
        self._limit = limit
        self._items: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock()

    def new(self, auth: Session | None = None) -> WebSession:
        """A new record, signed in with `auth` if given."""
        web = WebSession(secrets.token_urlsafe(24), secrets.token_urlsafe(24), 0.0, auth)
        self.keep(web)
        return web

    def keep(self, web: WebSession) -> None:
        """Keeps `web` from now on (nothing if it is kept already)."""
        now = self._clock()
        with self._lock:
            if web.id in self._items:
                return
            web.touched = now
            for key in [k for k, v in self._items.items() if now - v.touched > self.ttl]:
                del self._items[key]
            anonymous = [(k, v) for k, v in self._items.items() if v.auth is None]
            if web.auth is None and len(anonymous) >= self._limit:  # least recently used first
                for key, _ in sorted(anonymous, key=lambda kv: kv[1].touched)[
                        : len(anonymous) - self._limit + 1]:
                    del self._items[key]
            self._items[web.id] = web

    def get(self, sid: str) -> WebSession | None:
        now = self._clock()
        with self._lock:
            web = self._items.get(sid)
            if web is None:
                return None
            if now - web.touched > self.ttl:
                del self._items[sid]
                return None
            web.touched = now
            return web

    def drop(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)

    def __contains__(self, sid: str) -> bool:
        return sid in self._items

    def __len__(self) -> int:
        return len(self._items)


class Throttle:
    """Login forms per client address: a token bucket of `per_minute` attempts, refilled at
    `per_minute` a minute. The table holds at most `clients` addresses, the longest unseen going
    first: that only gives them their full budget back."""

    def __init__(self, per_minute: int = 30, clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self._size = float(per_minute)
        self._rate = per_minute / 60
        self._clients = clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when), oldest first
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Whether `client` may post one more login form now (which counts if so)."""
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self._size, now))
            tokens = min(self._size, tokens + (now - then) * self._rate)
            allowed = tokens >= 1
            self._buckets[client] = (tokens - 1 if allowed else tokens, now)
            if len(self._buckets) > self._clients:
                del self._buckets[next(iter(self._buckets))]
            return allowed

    def __len__(self) -> int:
        return len(self._buckets)
