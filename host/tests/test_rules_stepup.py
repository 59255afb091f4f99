"""Authorisation and step-up: R6–R9 (single-process parts), R13, R14."""

from __future__ import annotations

import pytest
from test_rules_support import (  # noqa: F401
    T0,
    activate_code,
    build_world,
    client_intent,
    sign_intent,
    world_fixture,
)

from capkey.rules import (
    DEFAULT_SENSITIVE,
    AuthLevel,
    Batch,
    CertEvidence,
    ConfigError,
    LoginRequest,
    Operation,
    Outcome,
    Payment,
    RulesConfig,
)

IBAN_A = "FR7630006000011234567890189"
IBAN_B = "DE89370400440532013000"
PAY = Payment(125_00, "EUR", IBAN_A, "ACME SA")


def _code_session(w, user="U1"):
    activate_code(w, user)
    result = w.code_login(user)
    assert result.outcome is Outcome.OK
    return result.session


def _cap_step_up(w, session, op, user="U1", **record):
    ch = w.service.begin_step_up(session, op, **record)
    assert ch.outcome is Outcome.OK
    card = w.cards[user]
    code = (card.sign(ch.cap_challenge, ch.amount_minor, ch.currency) if ch.cap_mode == "sign"
            else card.respond(ch.cap_challenge))
    return ch, code


def test_R6_sensitive_operations_need_step_up_even_in_sca_session(world):
    sca = world.cap_login("U1").session
    assert sca.auth_level is AuthLevel.SCA
    assert world.service.authorize(sca, "VIEW_ACCOUNTS") is Outcome.OK
    assert world.service.authorize(sca, Operation.SCT_INST_ENTRY, transaction=PAY) is (
        Outcome.STEP_UP_REQUIRED)
    for op in ("MANAGE_HABILITATIONS", "MANAGE_PAYEES", "ORDER_CHEQUEBOOK"):
        assert world.service.authorize(sca, op, operation_id="op-1") is Outcome.STEP_UP_REQUIRED
    batch = Batch.from_payments([PAY])
    assert world.service.authorize(sca, "SIGN_ORDER_BATCH", transaction=batch) is (
        Outcome.STEP_UP_REQUIRED)
    single = _code_session(world, "U2")
    assert world.service.authorize(single, "ORDER_CHEQUEBOOK", operation_id="op-1") is (
        Outcome.STEP_UP_REQUIRED)


def test_R6_sensitive_set_is_never_empty():
    assert RulesConfig().sensitive_operations == DEFAULT_SENSITIVE
    assert len(DEFAULT_SENSITIVE) == 5
    with pytest.raises(ConfigError):
        RulesConfig(sensitive_operations=frozenset())
    assert RulesConfig(sensitive_operations=frozenset({"X_OP"})).sensitive_operations == {"X_OP"}


def test_R7_payment_step_up_with_cap_sign_then_single_use(world):
    s = _code_session(world)
    ch, code = _cap_step_up(world, s, "SCT_INST_ENTRY", transaction=PAY)
    assert (ch.cap_mode, ch.amount_minor, ch.currency) == ("sign", 12500, "EUR")
    assert world.service.complete_step_up(s, ch.id, transaction=PAY, cap_code=code) is Outcome.OK
    assert world.service.authorize(s, "SCT_INST_ENTRY", transaction=PAY) is Outcome.OK
    # one SCA, one operation
    assert world.service.authorize(s, "SCT_INST_ENTRY", transaction=PAY) is (
        Outcome.STEP_UP_REQUIRED)


@pytest.mark.parametrize("changed", [
    Payment(125_01, "EUR", IBAN_A, "ACME SA"),
    Payment(125_00, "CHF", IBAN_A, "ACME SA"),
    Payment(125_00, "EUR", IBAN_B, "ACME SA"),
    Payment(125_00, "EUR", IBAN_A, "ACME SAS"),
])
def test_R7_any_change_after_issuance_fails(world, changed):
    s = _code_session(world)
    ch, code = _cap_step_up(world, s, "SCT_INST_ENTRY", transaction=PAY)
    # the server's record changed between issuance and completion
    assert world.service.complete_step_up(s, ch.id, transaction=changed, cap_code=code) is (
        Outcome.AUTH_FAILED)
    # and after a completed step-up, authorising another record fails too
    ch, code = _cap_step_up(world, s, "SCT_INST_ENTRY", transaction=PAY)
    assert world.service.complete_step_up(s, ch.id, transaction=PAY, cap_code=code) is Outcome.OK
    assert world.service.authorize(s, "SCT_INST_ENTRY", transaction=changed) is (
        Outcome.AUTH_FAILED)


def test_R7_sign_code_computed_over_another_amount_fails(world):
    s = _code_session(world)
    ch = world.service.begin_step_up(s, "SCT_INST_ENTRY", transaction=PAY)
    code = world.cards["U1"].sign(ch.cap_challenge, 1, "EUR")  # the person typed 0.01
    assert world.service.complete_step_up(s, ch.id, transaction=PAY, cap_code=code) is (
        Outcome.AUTH_FAILED)
    # a Respond (login-style) code over the same challenge is not a Sign code either
    ch = world.service.begin_step_up(s, "SCT_INST_ENTRY", transaction=PAY)
    code = world.cards["U1"].respond(ch.cap_challenge)
    assert world.service.complete_step_up(s, ch.id, transaction=PAY, cap_code=code) is (
        Outcome.AUTH_FAILED)


def test_R7_batch_digest_covers_total_count_and_payees(world):
    p1, p2 = Payment(100, "EUR", IBAN_A, "A"), Payment(250, "EUR", IBAN_B, "B")
    batch = Batch.from_payments([p1, p2])
    assert Batch.from_payments([p2, p1]).digest() == batch.digest()  # canonical payee order
    assert (batch.total_minor, batch.count) == (350, 2)
    assert Batch(350, "EUR", 2, (IBAN_B, IBAN_A, IBAN_B)) == batch  # canonical payee list
    variants = [Batch(351, "EUR", 2, batch.payees), Batch(350, "EUR", 3, batch.payees),
                Batch(350, "EUR", 2, (IBAN_A,))]
    assert len({v.digest() for v in variants} | {batch.digest()}) == 4
    s = world.cap_login("U1").session
    key, der = world.cert_keys["U1"]
    ch = world.service.begin_step_up(s, "SIGN_ORDER_BATCH", transaction=batch)
    intent = client_intent("BATCH", ch.nonce, "C1", "U1", batch.digest(), batch)
    ev = CertEvidence(der, sign_intent(key, intent))
    assert world.service.complete_step_up(s, ch.id, transaction=variants[1], cert=ev) is (
        Outcome.AUTH_FAILED)
    ch = world.service.begin_step_up(s, "SIGN_ORDER_BATCH", transaction=batch)
    intent = client_intent("BATCH", ch.nonce, "C1", "U1", batch.digest(), batch)
    ev = CertEvidence(der, sign_intent(key, intent))
    assert world.service.complete_step_up(s, ch.id, transaction=batch, cert=ev) is Outcome.OK
    assert world.service.authorize(s, "SIGN_ORDER_BATCH", transaction=batch) is Outcome.OK


def test_R7_login_sca_never_satisfies_payment(world):
    s = world.cap_login("U1").session
    assert world.service.authorize(s, "SCT_INST_ENTRY", transaction=PAY) is (
        Outcome.STEP_UP_REQUIRED)
    # nor can a login challenge be used to complete a step-up
    login_ch = world.service.issue_login_challenge("C1", "U1")
    code = world.cards["U1"].respond(login_ch.cap_challenge)
    assert world.service.complete_step_up(s, login_ch.id, transaction=PAY, cap_code=code) is (
        Outcome.AUTH_FAILED)


def test_R8_operation_challenge_binds_purpose_and_operation_id(world):
    s = _code_session(world)
    ch, code = _cap_step_up(world, s, "MANAGE_PAYEES", operation_id="payee-42")
    assert ch.cap_mode == "respond"
    # another operation id for the same purpose
    assert world.service.complete_step_up(s, ch.id, operation_id="payee-43", cap_code=code) is (
        Outcome.AUTH_FAILED)
    ch, code = _cap_step_up(world, s, "MANAGE_PAYEES", operation_id="payee-42")
    assert world.service.complete_step_up(s, ch.id, operation_id="payee-42", cap_code=code) is (
        Outcome.OK)
    # the grant is for MANAGE_PAYEES/payee-42 only
    assert world.service.authorize(s, "ORDER_CHEQUEBOOK", operation_id="payee-42") is (
        Outcome.STEP_UP_REQUIRED)
    assert world.service.authorize(s, "MANAGE_PAYEES", operation_id="payee-43") is (
        Outcome.AUTH_FAILED)
    assert world.service.authorize(s, "MANAGE_PAYEES", operation_id="payee-42") is Outcome.OK


def test_R8_step_up_restarts_the_sca_clock(world):
    s = _code_session(world)
    world.clock.advance(days=80)
    s = world.code_login("U1").session
    ch, code = _cap_step_up(world, s, "ORDER_CHEQUEBOOK", operation_id="cb-1")
    assert world.service.complete_step_up(s, ch.id, operation_id="cb-1", cap_code=code) is (
        Outcome.OK)
    assert world.state("U1").last_sca_at == world.clock.now()


def test_R9_cap_code_replay_rejected(world):
    ch = world.service.issue_login_challenge("C1", "U1")
    code = world.cards["U1"].respond(ch.cap_challenge)
    assert world.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)
                               ).outcome is Outcome.OK
    # same challenge again
    assert world.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)
                               ).outcome is Outcome.AUTH_FAILED
    # an older code (ATC at or below the floor) over a fresh challenge
    ch2 = world.service.issue_login_challenge("C1", "U1")
    world.cards["U1"].atc = 0
    old = world.cards["U1"].respond(ch2.cap_challenge)  # ATC 1 again
    assert world.service.login(LoginRequest("C1", "U1", cap_code=old, challenge_id=ch2.id)
                               ).outcome is Outcome.AUTH_FAILED
    assert world.state("U1").cards[0][2] == 1  # floor stayed


def test_R9_challenges_random_bound_and_expire(world):
    seen = set()
    for _ in range(50):
        ch = world.service.issue_login_challenge("C1", "U1")
        assert len(ch.nonce) == 32 and len(ch.id) >= 22  # >= 128 random bits each
        seen.add(ch.nonce)
    assert len(seen) == 50
    ch = world.service.issue_login_challenge("C1", "U1")
    code = world.cards["U1"].respond(ch.cap_challenge)
    world.clock.advance(seconds=300)
    assert world.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)
                               ).outcome is Outcome.AUTH_FAILED
    # bound to the user it was issued for
    ch = world.service.issue_login_challenge("C1", "U2")
    code = world.cards["U1"].respond(ch.cap_challenge)
    assert world.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)
                               ).outcome is Outcome.AUTH_FAILED
    # step-up challenges are bound to the session
    s1, s2 = world.cap_login("U1").session, world.cap_login("U1").session
    ch, code = _cap_step_up(world, s1, "ORDER_CHEQUEBOOK", operation_id="x")
    assert world.service.complete_step_up(s2, ch.id, operation_id="x", cap_code=code) is (
        Outcome.AUTH_FAILED)
    with pytest.raises(ConfigError):
        RulesConfig(challenge_ttl_seconds=301)


def test_R13_inactivity_expires_session(world):
    s = world.cap_login("U1").session
    world.clock.advance(seconds=300)
    assert world.service.authorize(s, "VIEW") is Outcome.OK  # exactly 300 s: still alive
    world.clock.advance(seconds=300, microseconds=1)
    for call in (lambda: world.service.authorize(s, "VIEW"),
                 lambda: world.service.begin_step_up(s, "ORDER_CHEQUEBOOK",
                                                     operation_id="x").outcome,
                 lambda: world.service.change_code(s, "a" * 8, "b" * 8)):
        assert call() is Outcome.SESSION_EXPIRED
    world.clock.advance(seconds=-500)  # even if the clock went back, the session stays ended
    assert world.service.authorize(s, "VIEW") is Outcome.SESSION_EXPIRED
    with pytest.raises(ConfigError):
        RulesConfig(inactivity_seconds=301)
    assert world.service.authorize("no-such-session-id-xyz", "VIEW") is Outcome.SESSION_EXPIRED


def test_R13_logout_ends_the_session_at_once(world):
    s = world.cap_login("U1").session
    assert world.service.logout(s) is Outcome.OK
    assert world.service.authorize(s, "VIEW") is Outcome.SESSION_EXPIRED
    assert world.service.logout(s) is Outcome.SESSION_EXPIRED


def test_R14_must_change_allows_only_change_code(world):
    assert world.cap_login("U1").outcome is Outcome.OK
    first = world.code_login("U1")
    assert first.outcome is Outcome.CODE_CHANGE_REQUIRED and first.session.must_change
    s = first.session
    assert world.service.authorize(s, "VIEW") is Outcome.CODE_CHANGE_REQUIRED
    assert world.service.begin_step_up(s, "ORDER_CHEQUEBOOK", operation_id="x").outcome is (
        Outcome.CODE_CHANGE_REQUIRED)
    assert world.service.authorize(s, "CHANGE_CODE") is Outcome.OK
    old = world.codes["U1"]
    for weak in ("short1", "12345678", "aaaaaaaaaa", "abcdefgh", "abababab", old):
        assert world.service.change_code(s, old, weak) is Outcome.INVALID_REQUEST, weak
    assert world.service.change_code(s, "Wrong-code-1", "Good-new-code-7") is Outcome.AUTH_FAILED
    assert world.service.change_code(s, old, "Good-new-code-7") is Outcome.OK
    assert world.service.authorize(s, "VIEW") is Outcome.OK  # flag cleared
    assert world.code_login("U1", old).outcome is Outcome.AUTH_FAILED
    assert world.code_login("U1", "Good-new-code-7").outcome is Outcome.OK
    assert not world.state("U1").must_change


def test_R9_resync_after_large_gap_moves_the_floor_up_only(world):
    card = world.cards["U1"]
    assert world.cap_login("U1").outcome is Outcome.OK
    card.atc += 100  # used 100 times without the bank seeing it: beyond the look-ahead window
    assert world.cap_login("U1").outcome is Outcome.AUTH_FAILED
    card_id = world.state("U1").cards[0][0]
    c1, c2 = card.identify(), card.identify()
    assert world.service.resync_card("C1", "U1", card_id, c1, c2, actor="ops") is True
    assert world.state("U1").cards[0][2] == card.atc
    assert world.service.resync_card("C1", "U1", card_id, c1, c2, actor="ops") is False  # replay
    assert world.cap_login("U1").outcome is Outcome.OK
    # codes that are not consecutive, or another card's, are refused and counted
    other = world.cards["U2"]
    assert world.service.resync_card("C1", "U1", card_id, other.identify(), other.identify(),
                                     actor="ops") is False
    assert world.state("U1").failures == 1  # the login in between reset the count
    results = [(r[3], r[5], r[6]) for r in world.audit() if r[4] == "C1/U1"]
    assert ("ops", "CAP_RESYNC", "OK") in results and ("ops", "CAP_RESYNC", "AUTH_FAILED") in results
