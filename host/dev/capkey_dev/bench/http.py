"""Durable logins per second through the HTTP service (issue 11): a real `capkey serve` process
(uvicorn workers) on SQLite at ``synchronous=FULL`` and on PostgreSQL, and a load generator on
127.0.0.1: 1, 16 and 64 concurrent callers, each a keep-alive connection that runs the guide's CAP
login (POST /v1/login/challenges, then POST /v1/logins with the card's next Identify code, computed
before the clock starts). SQLite with one commit per login, then with group commit (one
worker, two workers); PostgreSQL with its own grouping of commits across sessions.

Each run is bounded in count and time. After it, the database must hold exactly one session per
accepted login and no login may have been refused (a lost or double accept shows as a mismatch).
The generator is a small asyncio HTTP/1.1 client, so that it costs the two shared cores less than
the service it measures.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from capkey.server import create_key

from .commit import CALLERS, login_plan
from .rules import PG_DSN, make_service, pg_available, provision

_LOGINS = 1500  # per run
_SECONDS = 8.0  # per run, at most
_SUB = "H0"
_TARGET = 1000  # durable logins/s through HTTP on 2 cores (targets.md)


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str):
        self.reader, self.writer = reader, writer
        self.head = (f"Host: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                     "Content-Type: application/json\r\n").encode()

    async def post(self, path: str, body: dict) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        self.writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\n" + self.head
                          + b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, json.loads(await self.reader.readexactly(length))


async def _load(port: int, key: str, plan: list[tuple[str, str]], callers: int
                ) -> tuple[float, int, int]:
    shares: list[list[tuple[str, str]]] = [[] for _ in range(callers)]
    owner = {u: i % callers for i, u in enumerate(sorted({u for u, _ in plan}))}
    for item in plan:
        shares[owner[item[0]]].append(item)
    counts = [0, 0]
    connections = [_Connection(*await asyncio.open_connection("127.0.0.1", port), key)
                   for _ in range(callers)]
    deadline = time.perf_counter() + _SECONDS

    async def caller(conn: _Connection, share: list[tuple[str, str]]) -> None:
        for user, code in share:
            if time.perf_counter() > deadline:
                return
            _, ch = await conn.post("/v1/login/challenges",
                                    {"subscription": _SUB, "user_no": user})
            status, _ = await conn.post("/v1/logins", {
                "subscription": _SUB, "user_no": user, "challenge_id": ch["challenge_id"],
                "cap_code": code})
            counts[0 if status == 200 else 1] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(c, s) for c, s in zip(connections, shares, strict=True)))
    seconds = time.perf_counter() - t0
    for c in connections:
        c.writer.close()
    return counts[0] / seconds, counts[0], counts[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db: str, workers: int, folder: str, group: bool) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = os.environ | {"CAPKEY_AUDIT_TEST_KEY": "1"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("capkey")), "serve", "--db", db, "--origin",
         "https://banque.example", "--test-keys", "--workers", str(workers), "--port", str(port),
         "--log-level", "warning", "--group-commit" if group else "--no-group-commit"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(folder, "serve.log"), "w"))
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"capkey serve did not start ({folder}/serve.log)") from None
            time.sleep(0.2)


def _table(db: str, schema: str | None, label: str, folder: str, workers: int,
           group: bool) -> None:
    svc = make_service(db, schema)
    try:
        provision(svc, [_SUB])
        key, _ = create_key(svc.store, ["login"], "bench")
        plan = login_plan(svc, _SUB, _LOGINS * len(CALLERS))
    finally:
        svc.store.close()
    proc, port = _serve(db if schema is None else _with_schema(db, schema), workers, folder,
                        group)
    label = f"{label}, {'group commit    ' if group else 'one commit/login'}"
    accepted = 0
    try:
        for k, callers in enumerate(CALLERS):
            rate, ok, refused = asyncio.run(
                _load(port, key, plan[k * _LOGINS:(k + 1) * _LOGINS], callers))
            accepted += ok
            lost = "" if refused == 0 else f", {refused} REFUSED"
            print(f"{label}, {workers} worker{'s' if workers > 1 else ' '}, {callers:2d} "
                  f"caller{'s' if callers > 1 else ' '}: {rate:6.0f} durable logins/s "
                  f"({ok} accepted{lost}) = {rate / _TARGET:.2f} x target", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    svc = make_service(db, schema)
    try:
        with svc.store.read() as tx:
            sessions = tx._one("SELECT COUNT(*) FROM sessions")[0]
        intact = svc.store.verify_audit().ok
    finally:
        if schema is not None:
            svc.store.drop_schema()  # type: ignore[attr-defined]
        svc.store.close()
    print(f"{label}, {workers} worker{'s' if workers > 1 else ''}: {sessions} sessions for "
          f"{accepted} accepted logins ({'none lost or doubled' if sessions == accepted else 'MISMATCH'})"
          f", audit chain {'intact' if intact else 'BROKEN'}", flush=True)


def _with_schema(dsn: str, schema: str) -> str:
    """The DSN with the schema as its search_path (each worker opens its own connection)."""
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{schema}"


def run() -> None:
    print(f"each run: up to {_LOGINS} CAP logins (2 HTTP requests each) or {_SECONDS:.0f} s; "
          f"target: >= {_TARGET} durable logins/s; {os.cpu_count()} CPUs shared with the "
          "load generator")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        for workers, group in ((2, False), (1, True), (2, True)):
            _table(f"sqlite:///{tmp}/bank{workers}{group:d}.db", None, "SQLite FULL", tmp,
                   workers, group)
        dsn = os.environ.get("CAPKEY_PG_DSN") or PG_DSN
        reason = pg_available(dsn)
        if reason:
            print(f"PostgreSQL: not measured ({reason})")
            return
        _table(dsn, f"bench_{secrets.token_hex(4)}", "PostgreSQL ", tmp, 2, False)
