"""Race safety across processes (R9, R10), on SQLite and PostgreSQL: N processes, each with its own
store connection, wait on one barrier and then submit at the same instant."""

from __future__ import annotations

import multiprocessing
from datetime import datetime

import pytest
from test_rules_support import (
    ENGINES,
    FakeCap,
    ManualClock,
    activate_code,
    build_world,
    make_target,
)

from capkey.rules import AuthService, LoginRequest, Outcome
from capkey.rules.codes import CodeHasher
from capkey.store import SoftwareAuditKey, open_store

N = 6


def _worker(kind, target, schema, when, payload, barrier):
    store = open_store(target, schema=schema, audit_key=SoftwareAuditKey.for_tests())
    try:
        service = AuthService(store, cap_verifier=FakeCap(), signature_verifier=None,
                              clock=ManualClock(datetime.fromisoformat(when)),
                              code_hasher=CodeHasher.insecure_for_tests())
        barrier.wait(timeout=60)
        if kind == "login":
            return service.login(LoginRequest(**payload)).outcome.value
        if kind == "step_up":
            return service.complete_step_up(**payload).value
        if kind == "atc":
            with store.transaction() as tx:
                return tx.card_raise_atc(**payload)
        if kind == "challenge":
            with store.transaction() as tx:
                return tx.challenge_consume(payload["challenge_id"], payload["now"]) is not None
        raise ValueError(kind)
    finally:
        store.close()


@pytest.fixture(scope="module")
def pool():
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager()
    with ctx.Pool(N) as p:
        yield p, manager
    manager.shutdown()


@pytest.fixture(params=ENGINES)
def race_world(request, tmp_path):
    target, schema = make_target(request.param, tmp_path)
    w = build_world(target, schema)
    w.target, w.schema = target, schema
    yield w
    if schema is not None:
        w.store.drop_schema()
    w.store.close()


def _race(pool, w, kind, payloads):
    p, manager = pool
    barrier = manager.Barrier(len(payloads))
    when = w.clock.now().isoformat()
    jobs = [p.apply_async(_worker, (kind, w.target, w.schema, when, pl, barrier))
            for pl in payloads]
    return [j.get(timeout=120) for j in jobs]


def test_R9_same_cap_code_and_challenge_at_once_exactly_one_ok(pool, race_world):
    w = race_world
    ch = w.service.issue_login_challenge("C1", "U1")
    code = w.cards["U1"].respond(ch.cap_challenge)
    payload = {"subscription": "C1", "user_no": "U1", "cap_code": code, "challenge_id": ch.id}
    results = _race(pool, w, "login", [payload] * N)
    assert results.count("OK") == 1
    assert results.count("AUTH_FAILED") == N - 1
    assert w.state("U1").cards[0][2] == w.cards["U1"].atc  # floor at the accepted ATC


def test_R9_same_step_up_challenge_at_once_exactly_one_ok(pool, race_world):
    w = race_world
    s = w.cap_login("U1").session
    ch = w.service.begin_step_up(s, "MANAGE_PAYEES", operation_id="payee-7")
    code = w.cards["U1"].respond(ch.cap_challenge)
    payload = {"session": s.id, "challenge_id": ch.id, "operation_id": "payee-7",
               "cap_code": code}
    results = _race(pool, w, "step_up", [payload] * N)
    assert results.count("OK") == 1
    # exactly one grant: one authorisation, then step-up needed again
    assert w.service.authorize(s, "MANAGE_PAYEES", operation_id="payee-7") is Outcome.OK
    assert w.service.authorize(s, "MANAGE_PAYEES", operation_id="payee-7") is (
        Outcome.STEP_UP_REQUIRED)


def test_R9_conditional_writes_alone_admit_one_writer(pool, race_world):
    """Without the user lock of the service, the guards by themselves decide."""
    w = race_world
    card_id = w.state("U2").cards[0][0]
    assert _race(pool, w, "atc", [{"card_id": card_id, "atc": 5}] * N).count(True) == 1
    ch = w.service.issue_login_challenge("C1", "U2")
    now = int(w.clock.now().timestamp() * 1_000_000)
    results = _race(pool, w, "challenge", [{"challenge_id": ch.id, "now": now}] * N)
    assert results.count(True) == 1


def test_R10_wrong_codes_at_once_counted_exactly_and_blocked_once(pool, race_world):
    w = race_world
    activate_code(w, "U1")
    payload = {"subscription": "C1", "user_no": "U1", "code": "Wrong-code-1"}
    results = _race(pool, w, "login", [payload] * 5)
    assert results == ["AUTH_FAILED"] * 5
    rows = [r for r in w.audit() if r[4] == "C1/U1"]
    assert sum(1 for r in rows if r[6] == "AUTH_FAILED" and r[7] == "bad_code") == 5
    assert sum(1 for r in rows if r[6] == "BLOCK") == 1
    st = w.state("U1")
    assert st.temporary_blocks == 1 and st.failures == 0 and st.blocked_until is not None
    # more wrong codes than the limit: the block is still set once, the extra ones are refused
    # unverified
    w.clock.advance(hours=2)
    results = _race(pool, w, "login", [payload] * N)
    rows = [r for r in w.audit() if r[4] == "C1/U1"][len(rows):]
    assert results == ["AUTH_FAILED"] * N
    counted = sum(1 for r in rows if r[7] == "bad_code")
    refused = sum(1 for r in rows if r[7] == "blocked")
    assert (counted, refused) == (5, N - 5)
    assert sum(1 for r in rows if r[6] == "BLOCK") == 1
    assert w.store.verify_audit().ok
