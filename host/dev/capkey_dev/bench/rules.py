"""Login throughput of the rules service (targets.md): successful CAP logins per second, each one a
challenge issuance plus a login (store transaction with user lock, challenge consumption, real
`capkey.emv.verifier` verification of one ATC candidate, conditional ATC write, session, audit
record), on SQLite (one process) and PostgreSQL (1, 2, 4 processes, different users), printed
next to the crypto-only rate (the same `verify_cap` calls without the store) from the same run.

Excluded from the timing: the card's side (computing each code) and confidential-code hashing
(no CODE logins here). PostgreSQL is measured when CAPKEYPG_DSN (or the default local DSN of
host/tests/start_postgres.sh) answers.

Failure timing (R2): the median time of a refused CAP login per path (wrong code for a known user,
unknown subscription, unknown user, blocked user, revoked card), on each engine, the paths
interleaved in one run so that the machine's load weighs on all alike.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime

from capkey.cert.payload import LoginPayload
from capkey.emv import hazmat as emv
from capkey.emv.issuer import TEST_IMK, TEST_IMK_LABEL, SoftwareIssuerBackend
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.emv.verifier import Mode, cap_challenge, verify_cap
from capkey.rules import AuthService, LoginRequest, Outcome
from capkey.rules.adapters import CapVerifier, card_from_profile
from capkey.rules.codes import CodeHasher
from capkey.store import SoftwareAuditKey, open_store

_ORIGIN = "https://banque.example"
PG_DSN = "postgresql://capkey:capkey@127.0.0.1:5432/capkey"
_USERS = 64
_LOGINS = 3000  # per process and run
_FAILURES = 600  # refused logins per path, for the failure timing
_T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class _Clock:
    """Fixed bench time (all challenges stay valid for the run)."""

    def now(self) -> datetime:
        return _T0


def _pan(i: int) -> str:
    body = f"49740000{i:07d}"
    total = 0  # Luhn check digit, so the PAN looks like a real one
    for k, d in enumerate(reversed(body)):
        n = int(d) * (2 if k % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return body + str((10 - total % 10) % 10)


class Card:
    """The card and reader side (not timed): computes its codes, Respond or Identify."""

    def __init__(self, pan: str, atc: int = 0):
        self.pan, self.atc = pan, atc
        self.udk = emv.derive_icc_mk(TEST_IMK, pan, 1, VISA_DPA_CVN10.derivation)

    def respond(self, challenge: str) -> str:
        return self._code(emv.pack_bcd(challenge, 4))

    def identify(self) -> str:
        """The next code of the guide's CODE key (Identify: no challenge)."""
        return self._code(bytes(4))

    def _code(self, un: bytes) -> str:
        self.atc += 1
        p = VISA_DPA_CVN10
        data = p.cdol1_data(un=un)
        minimum = data[:29] + p.aip + self.atc.to_bytes(2, "big")
        iad = p.iads_for(3)[0]
        ac = emv.generate_ac(self.udk, p.cvn, minimum, iad)
        psn = 1 if p.psn_prefix else None
        return str(emv.extract_otp(p.ipb, emv.otp_data(0x80, self.atc.to_bytes(2, "big"), ac,
                                                       iad, psn=psn)))


def _profile(pan: str) -> dict:
    return {"profile": VISA_DPA_CVN10.name, "pan": pan, "psn": 1, "imk_label": TEST_IMK_LABEL}


def make_service(target: str, schema: str | None, synchronous: str = "FULL", *,
            group_commit: bool = True) -> AuthService:
    return AuthService(open_store(target, schema=schema, sqlite_synchronous=synchronous,
                                  audit_key=SoftwareAuditKey.for_tests(),
                                  group_commit=group_commit),
                       cap_verifier=CapVerifier(SoftwareIssuerBackend.for_tests(), origin=_ORIGIN),
                       signature_verifier=None, clock=_Clock(),
                       code_hasher=CodeHasher.insecure_for_tests())


def provision(service: AuthService, subscriptions: list[str]) -> None:
    d = service.directory
    for s, sub in enumerate(subscriptions):
        d.create_subscription(sub, actor="bench")
        for u in range(_USERS):
            user = f"U{u}"
            d.add_user(sub, user, "user", actor="bench")
            d.attach_card(sub, user, _profile(_pan(s * _USERS + u)), actor="bench")


def user_cards(service: AuthService, sub: str) -> dict[str, Card]:
    out = {}
    with service.store.read() as tx:
        for u in range(_USERS):
            card = tx.cards_of(tx.user_find(sub, f"U{u}").id)[0]
            # the card's counter is ahead of the bank's floor: continue from there
            out[f"U{u}"] = Card(json.loads(card.profile)["pan"], max(card.last_atc, 0))
    return out


def _login_run(service: AuthService, sub: str, cards: dict[str, Card], n: int
               ) -> tuple[float, int, int]:
    """Times n challenge issuances + n logins (card computation excluded). Returns (seconds,
    accepted, refused)."""
    users = [f"U{i % _USERS}" for i in range(n)]
    t0 = time.perf_counter()
    challenges = [service.issue_login_challenge(sub, u) for u in users]
    t_issue = time.perf_counter() - t0
    codes = [cards[u].respond(c.cap_challenge) for u, c in zip(users, challenges, strict=True)]
    requests = [LoginRequest(sub, u, cap_code=code, challenge_id=c.id)
                for u, c, code in zip(users, challenges, codes, strict=True)]
    t0 = time.perf_counter()
    outcomes = [service.login(r).outcome for r in requests]
    t_login = time.perf_counter() - t0
    ok = sum(1 for o in outcomes if o is Outcome.OK)
    return t_issue + t_login, ok, n - ok


def _failure_timing(service: AuthService) -> str:
    """Median time of a refused CAP login per path (R2), on a fresh subscription F0. Not timed:
    challenge issuance, and the successful login after each wrong code that keeps the user from
    reaching the block."""
    provision(service, ["F0"])
    cards = user_cards(service, "F0")
    _login_run(service, "F0", cards, _USERS)  # every card used once: CapVerifier has its dummy
    blocked, revoked = f"U{_USERS - 1}", f"U{_USERS - 2}"
    for _ in range(service.config.max_failures):  # no code set: each attempt counts
        service.login(LoginRequest("F0", blocked, code="Wrong-code-1"))
    (card_id, *_), = service.directory.user_state("F0", revoked).cards
    service.directory.deactivate("card", actor="bench", subscription="F0", user_no=revoked,
                                 credential_id=card_id)
    paths = {"wrong code": ("F0", "U0"), "unknown subscription": ("F9", "U0"),
             "unknown user": ("F0", "NOBODY"), "blocked user": ("F0", blocked),
             "revoked card": ("F0", revoked)}
    times: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(_FAILURES):
        code = f"{secrets.randbelow(1 << 26):08d}"  # the codes the profile's 26 bits can carry
        for path, (sub, user) in paths.items():
            ch = service.issue_login_challenge(sub, user)
            request = LoginRequest(sub, user, cap_code=code, challenge_id=ch.id)
            t0 = time.perf_counter()
            service.login(request)
            times[path].append(time.perf_counter() - t0)
        _login_run(service, "F0", cards, 1)  # U0's success resets its failure count
    medians = {path: statistics.median(t) * 1000 for path, t in times.items()}
    spread = max(medians.values()) - min(medians.values())
    return (", ".join(f"{path} {ms:.3f}" for path, ms in medians.items())
            + f" ms (spread {spread:.3f} ms)")


def _crypto_only(n: int) -> float:
    """verify_cap alone on the same kind of card, one ATC candidate per call."""
    backend = SoftwareIssuerBackend.for_tests()
    pan = _pan(1)
    card_side = Card(pan)
    challenge = cap_challenge(LoginPayload(bytes(32), _ORIGIN, "B0", "U0")).challenge
    items = []
    for _ in range(min(n, 2000)):
        atc = card_side.atc
        items.append((card_from_profile(_profile(pan), atc), card_side.respond(challenge)))
    t0 = time.perf_counter()
    for card, code in items:
        verify_cap(card, code, mode=Mode.RESPOND, challenge=challenge, key_backend=backend)
    return len(items) / (time.perf_counter() - t0)


def _pg_worker(dsn: str, schema: str, sub: str, n: int, barrier) -> tuple[float, int, int, float]:
    service = make_service(dsn, schema)
    cards = user_cards(service, sub)
    _login_run(service, sub, cards, 100)  # warm up (prepared statements, caches)
    barrier.wait()
    start = time.perf_counter()
    seconds, ok, refused = _login_run(service, sub, cards, n)
    end = time.perf_counter()
    service.store.close()
    return seconds, ok, refused, end - start


def pg_available(dsn: str) -> str:
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return ""
    except Exception as exc:
        return type(exc).__name__


def run() -> None:
    crypto = _crypto_only(_LOGINS)
    print(f"crypto only (verify_cap, one ATC candidate): {crypto:10.0f} /s")
    for synchronous in ("FULL", "NORMAL"):
        with tempfile.TemporaryDirectory() as tmp:
            service = make_service(os.path.join(tmp, "bench.db"), None, synchronous)
            provision(service, ["B0"])
            cards = user_cards(service, "B0")
            _login_run(service, "B0", cards, 200)  # warm up
            seconds, ok, refused = _login_run(service, "B0", cards, _LOGINS)
            rate = ok / seconds
            audit_ok = service.store.verify_audit().ok
            failures = _failure_timing(service) if synchronous == "FULL" else ""
            service.store.close()
        what = ("default: every decision flushed to disk" if synchronous == "FULL" else
                "opt-in: a power cut may roll back the last decisions")
        print(f"SQLite, 1 process, audit on, synchronous={synchronous} ({what}): {rate:6.0f} "
              f"logins/s ({ok} accepted, {refused} refused, audit chain "
              f"{'intact' if audit_ok else 'BROKEN'}) = {rate / crypto:.3f} x crypto-only, "
              f"{rate / 1800:.2f} x target (1800/s)")
        if failures:
            print(f"SQLite failure timing, median of {_FAILURES} refused CAP logins per path: "
                  f"{failures}")

    dsn = os.environ.get("CAPKEYPG_DSN") or PG_DSN
    reason = pg_available(dsn)
    if reason:
        print(f"PostgreSQL: not measured ({reason} at CAPKEYPG_DSN / {PG_DSN}; run "
              "host/tests/start_postgres.sh)")
        return
    from capkey.store.postgres import PostgresStore

    schema = f"bench_{secrets.token_hex(4)}"
    setup = make_service(dsn, schema)
    subs = [f"B{i}" for i in range(4)]
    provision(setup, subs)
    ctx = multiprocessing.get_context("spawn")
    base = None
    try:
        for procs in (1, 2, 4):
            n = _LOGINS // 2
            barrier = ctx.Manager().Barrier(procs)
            with ctx.Pool(procs) as pool:
                jobs = [pool.apply_async(_pg_worker, (dsn, schema, subs[i], n, barrier))
                        for i in range(procs)]
                results = [j.get(timeout=600) for j in jobs]
            wall = max(r[3] for r in results)
            ok = sum(r[1] for r in results)
            refused = sum(r[2] for r in results)
            rate = ok / wall
            base = base or rate
            print(f"PostgreSQL, {procs} process{'es' if procs > 1 else ''}: {rate:8.0f} logins/s "
                  f"({ok} accepted, {refused} refused) = {rate / base:.2f} x 1 process, "
                  f"{rate / crypto:.3f} x crypto-only")
        print(f"PostgreSQL audit chain {'intact' if setup.store.verify_audit().ok else 'BROKEN'}; "
              f"{os.cpu_count()} CPUs; synchronous_commit as configured on the server")
        print(f"PostgreSQL failure timing, median of {_FAILURES} refused CAP logins per path: "
              f"{_failure_timing(setup)}")
    finally:
        store = setup.store
        if isinstance(store, PostgresStore):
            store.drop_schema()
        store.close()


