"""The portal's server-side records, one per browser (the cookie names it): the CSRF token, the
rules session once signed in, and what is pending between two pages. Nothing a browser sends is
trusted across pages: what a later page acts on is this record."""

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


class Records:
    """The portal's server-side records, by id, expiring after `ttl` seconds without use."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic,
                 limit: int = 10_000):
        self._ttl = ttl
        self._clock = clock
        self._limit = limit
        self._items: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def new(self) -> WebSession:
        now = self._clock()
        web = WebSession(secrets.token_urlsafe(24), secrets.token_urlsafe(24), now)
        with self._lock:
            for key in [k for k, v in self._items.items() if now - v.touched > self._ttl]:
                del self._items[key]
            if len(self._items) >= self._limit:  # the least recently used go first
                for key, _ in sorted(self._items.items(), key=lambda kv: kv[1].touched)[
                        : len(self._items) - self._limit + 1]:
                    del self._items[key]
            self._items[web.id] = web
        return web

    def get(self, sid: str) -> WebSession | None:
        now = self._clock()
        with self._lock:
            web = self._items.get(sid)
            if web is None:
                return None
            if now - web.touched > self._ttl:
                del self._items[sid]
                return None
            web.touched = now
            return web

    def drop(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)

    def __len__(self) -> int:
        return len(self._items)
