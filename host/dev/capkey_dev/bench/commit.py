"""Durable logins per second with one commit per login and with group commit (issue 11), at 1, 16
and 64 concurrent callers (threads of one process sharing one `AuthService`), on SQLite at
``synchronous=FULL`` and on PostgreSQL (``synchronous_commit`` as the server has it, on by
default). Each login is the guide's CAP login: a login challenge, then the card's Identify (CODE)
code; the codes are computed before the clock starts.

Every run is bounded in count and in time; the figure counts only accepted logins, and a run
with a lost or double accept (accepted + refused != attempted, or any refusal) says so.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import threading
import time

from capkey.rules import AuthService, LoginRequest, Outcome

from .rules import PG_DSN, make_service, pg_available, provision, user_cards

CALLERS = (1, 16, 64)
_USERS = 64
_LOGINS = 1200  # per run
_SECONDS = 6.0  # per run, at most
_DISK = "/var/tmp"  # a disk-backed folder (/tmp may be a tmpfs, where a flush costs nothing)


def login_plan(svc: AuthService, sub: str, n: int) -> list[tuple[str, str]]:
    """n (user, Identify code) pairs over the subscription's users, in the order a caller
    submits them (each user's codes in ATC order)."""
    cards = user_cards(svc, sub)
    users = sorted(cards)
    return [(u, cards[u].identify()) for u in (users[i % len(users)] for i in range(n))]


def _run(svc: AuthService, sub: str, plan: list[tuple[str, str]], callers: int
         ) -> tuple[float, int, int]:
    """Logs in with `plan` from `callers` threads, each with its own users (so that no two
    callers race for one user's ATC order). Returns (logins/s, accepted, refused)."""
    shares: list[list[tuple[str, str]]] = [[] for _ in range(callers)]
    users = sorted({u for u, _ in plan})
    owner = {u: i % callers for i, u in enumerate(users)}
    for item in plan:
        shares[owner[item[0]]].append(item)
    counts = [[0, 0] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    deadline = [0.0]

    def caller(i: int) -> None:
        start.wait()
        for user, code in shares[i]:
            if time.perf_counter() > deadline[0]:
                return
            ch = svc.issue_login_challenge(sub, user)
            result = svc.login(LoginRequest(sub, user, cap_code=code, challenge_id=ch.id))
            counts[i][0 if result.outcome is Outcome.OK else 1] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + _SECONDS
    start.wait()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    ok = sum(c[0] for c in counts)
    return ok / seconds, ok, sum(c[1] for c in counts)


def _table(target: str, schema: str | None, label: str) -> None:
    """One engine: one commit per login, then group commit, at each caller count."""
    base: dict[int, float] = {}
    for group in (False, True):
        svc = make_service(target, schema, group_commit=group)
        try:
            sub = f"G{int(group)}"
            provision(svc, [sub])
            plan = login_plan(svc, sub, _LOGINS * len(CALLERS))
            for k, callers in enumerate(CALLERS):
                rate, ok, refused = _run(svc, sub, plan[k * _LOGINS:(k + 1) * _LOGINS], callers)
                base.setdefault(callers, rate)
                how = "group commit     " if group else "one commit/login "
                ratio = f" = {rate / base[callers]:.2f} x one commit" if group else ""
                lost = "" if refused == 0 else f", {refused} REFUSED (lost or double accept)"
                print(f"{label}, {how} {callers:2d} caller{'s' if callers > 1 else ' '}: "
                      f"{rate:6.0f} durable logins/s ({ok} accepted{lost}){ratio}", flush=True)
            assert svc.store.verify_audit().ok, "audit chain broken"
        finally:
            if group and schema is not None:
                svc.store.drop_schema()  # type: ignore[attr-defined]
            svc.store.close()


def fsync_us(folder: str, n: int = 200) -> float:
    """The median time of a 4 KB write + fsync in `folder`: what one commit per login pays."""
    path = os.path.join(folder, "fsync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, bytes(4096))
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times) * 1e6


def run() -> None:
    print(f"each run: up to {_LOGINS} CAP logins (challenge + Identify code) or {_SECONDS:.0f} s; "
          f"target: group commit >= 3 x one commit at 16 callers")
    with tempfile.TemporaryDirectory(dir=_DISK) as tmp:
        # Group commit saves flushes, not CPU: its gain is bounded by (CPU + flush) / CPU per
        # login, so the disk's flush time is printed with the figures.
        print(f"this disk ({tmp}): write + fsync median {fsync_us(tmp):.0f} us")
        _table(os.path.join(tmp, "bench.db"), None, "SQLite FULL")
    dsn = os.environ.get("CAPKEY_PG_DSN") or PG_DSN
    reason = pg_available(dsn)
    if reason:
        print(f"PostgreSQL: not measured ({reason})")
        return
    _table(dsn, f"bench_{secrets.token_hex(4)}", "PostgreSQL ")
