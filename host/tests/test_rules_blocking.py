"""Failure limits, escalation, unblock, admin reset and revocation: R10–R12, R15, R19."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_rules_support import activate_code, build_world, world_fixture  # noqa: F401

from capkey.rules import (
    PERMANENT_BLOCK_IMMINENT,
    DirectoryError,
    LoginRequest,
    Outcome,
    RulesConfig,
)


def _fail(w, user, n, *, method="code"):
    for _ in range(n):
        if method == "code":
            assert w.code_login(user, "Wrong-code-1").outcome is Outcome.AUTH_FAILED
        else:
            assert w.cap_login(user, code="00000000").outcome is Outcome.AUTH_FAILED


def test_R10_fifth_consecutive_failure_blocks_across_methods(world):
    activate_code(world, "U1")
    _fail(world, "U1", 2, method="code")
    _fail(world, "U1", 2, method="cap")
    assert world.cert_login("U1", key_user="U2").outcome is Outcome.AUTH_FAILED  # 5th
    st = world.state("U1")
    assert st.blocked_until == world.clock.now() + timedelta(hours=1)
    calls = world.cap.calls
    # blocked: nothing is verified, even the right evidence fails
    assert world.cap_login("U1").outcome is Outcome.AUTH_FAILED
    assert world.code_login("U1").outcome is Outcome.AUTH_FAILED
    assert world.cap.calls == calls
    world.clock.advance(hours=1)
    assert world.code_login("U1").outcome is Outcome.OK  # block over


def test_R10_success_resets_the_count(world):
    activate_code(world, "U1")
    _fail(world, "U1", 4)
    assert world.state("U1").failures == 4
    assert world.code_login("U1").outcome is Outcome.OK
    assert world.state("U1").failures == 0
    _fail(world, "U1", 4)
    assert world.state("U1").blocked_until is None


def test_R10_success_never_lifts_a_block_set_concurrently(world):
    activate_code(world, "U1")
    _fail(world, "U1", 5)
    uid = world.state("U1")
    with world.store.transaction() as tx:
        user = tx.user_find("C1", "U1")
        # a success decided before the block landed must not clear it
        assert tx.user_record_success(user.id, now=int(world.clock.now().timestamp() * 1e6),
                                      sca=True) is False
    assert world.state("U1").blocked_until == uid.blocked_until


def test_R11_escalation_to_permanent_block_with_warning_event(tmp_path):
    w = build_world(str(tmp_path / "db"), config=RulesConfig(max_temporary_blocks=2,
                                                             block_duration_seconds=60))
    activate_code(w, "U1")
    _fail(w, "U1", 5)  # temporary block 1
    assert w.events == []
    w.clock.advance(seconds=61)
    _fail(w, "U1", 5)  # temporary block 2: the last one
    assert [e[0] for e in w.events] == [PERMANENT_BLOCK_IMMINENT]
    assert w.events[0][1]["blocked_until"] == w.clock.now() + timedelta(seconds=60)
    w.clock.advance(seconds=61)
    _fail(w, "U1", 5)  # now permanent
    st = w.state("U1")
    assert st.permanently_blocked and st.temporary_blocks == 3
    results = [r[6] for r in w.audit() if r[4] == "C1/U1"]
    assert results.count("BLOCK") == 2 and results.count("PERMANENT_BLOCK") == 1
    assert results.index(PERMANENT_BLOCK_IMMINENT) < results.index("PERMANENT_BLOCK")


def test_R12_permanent_block_lifted_only_by_reset_or_back_office(tmp_path):
    w = build_world(str(tmp_path / "db"), config=RulesConfig(max_temporary_blocks=0))
    activate_code(w, "U1")
    activate_code(w, "U2")
    _fail(w, "U1", 5)
    _fail(w, "U2", 5)
    w.clock.advance(days=365)  # time does not lift it
    assert w.code_login("U1").outcome is Outcome.AUTH_FAILED
    assert w.state("U1").permanently_blocked
    # back office
    assert w.directory.unblock("C1", "U1", actor="ops-jdoe") is True
    assert w.code_login("U1").outcome is Outcome.SCA_REQUIRED  # code verified; R5 after a year
    assert w.cap_login("U1").outcome is Outcome.OK
    # admin reset (R15)
    admin = w.cap_login("A1").session
    reset = w.service.reset_code(admin, "C1", "U2")
    assert reset.outcome is Outcome.OK and not w.state("U2").permanently_blocked
    audit = [(r[3], r[4], r[6]) for r in w.audit()]
    assert ("ops-jdoe", "C1/U1", "UNBLOCK") in audit
    assert ("C1/A1", "C1/U2", "UNBLOCK") in audit


def test_R15_admin_reset_code(world):
    activate_code(world, "U1")
    old = world.codes["U1"]
    _fail(world, "U1", 3)
    principal = world.cap_login("P1").session
    reset = world.service.reset_code(principal, "C1", "U1")
    assert reset.outcome is Outcome.OK and len(reset.code) >= 8
    assert reset.code not in repr(reset)
    st = world.state("U1")
    assert st.must_change and st.failures == 0
    assert world.code_login("U1", old).outcome is Outcome.AUTH_FAILED  # old code dead at once
    assert world.code_login("U1", reset.code).outcome is Outcome.CODE_CHANGE_REQUIRED
    with world.store.read() as tx:
        stored = tx.user_find("C1", "U1").code_hash
    assert stored.startswith("$argon2id$") and reset.code not in stored


def test_R15_reset_refused_outside_role_subscription_or_sca(world):
    user = world.cap_login("U2").session
    assert world.service.reset_code(user, "C1", "U1").outcome is Outcome.FORBIDDEN
    admin = world.cap_login("A1").session
    assert world.service.reset_code(admin, "C2", "U1").outcome is Outcome.FORBIDDEN
    activate_code(world, "P1")
    single = world.code_login("P1").session
    assert world.service.reset_code(single, "C1", "U1").outcome is Outcome.SCA_REQUIRED
    assert world.service.reset_code(admin, "C1", "NOBODY").outcome is Outcome.INVALID_REQUEST
    assert world.code_login("U1").outcome is Outcome.SCA_REQUIRED  # U1's code untouched


def test_R19_deactivated_card_fails_and_voids_open_challenges(world):
    s = world.cap_login("U1").session
    ch_login = world.service.issue_login_challenge("C1", "U1")
    step = world.service.begin_step_up(s, "ORDER_CHEQUEBOOK", operation_id="cb")
    card_id = world.state("U1").cards[0][0]
    assert world.service.deactivate("card", actor="ops", subscription="C1", user_no="U1",
                                    credential_id=card_id)
    card = world.cards["U1"]
    assert world.service.login(LoginRequest("C1", "U1", cap_code=card.respond(
        ch_login.cap_challenge), challenge_id=ch_login.id)).outcome is Outcome.AUTH_FAILED
    # the step-up challenge was voided too: even a certificate cannot complete it
    from test_rules_support import client_intent, sign_intent

    from capkey.rules import CertEvidence, OperationRef

    rec = OperationRef("ORDER_CHEQUEBOOK", "cb")
    key, der = world.cert_keys["U1"]
    ev = CertEvidence(der, sign_intent(key, client_intent("OPERATION", step.nonce, "C1", "U1",
                                                          rec.digest(), rec)))
    assert world.service.complete_step_up(s, step.id, operation_id="cb", cert=ev) is (
        Outcome.AUTH_FAILED)
    assert world.cap_login("U1").outcome is Outcome.AUTH_FAILED  # the card stays dead
    assert world.cert_login("U1").outcome is Outcome.OK  # other credentials still work


def test_R19_deactivated_certificate_user_and_subscription(world):
    cert_id = world.state("U1").certificates[0][0]
    world.service.deactivate("certificate", actor="ops", subscription="C1", user_no="U1",
                             credential_id=cert_id)
    assert world.cert_login("U1").outcome is Outcome.AUTH_FAILED
    s = world.cap_login("U2").session
    world.service.deactivate("user", actor="ops", subscription="C1", user_no="U2")
    assert world.service.authorize(s, "VIEW") is Outcome.SESSION_EXPIRED
    assert world.cap_login("U2").outcome is Outcome.AUTH_FAILED
    s = world.cap_login("P1").session
    ch = world.service.issue_login_challenge("C1", "A1")
    world.service.deactivate("subscription", actor="ops", subscription="C1")
    assert world.service.authorize(s, "VIEW") is Outcome.SESSION_EXPIRED
    code = world.cards["A1"].respond(ch.cap_challenge)
    assert world.service.login(LoginRequest("C1", "A1", cap_code=code, challenge_id=ch.id)
                               ).outcome is Outcome.AUTH_FAILED
    with pytest.raises(DirectoryError):  # a credential of another user
        world.service.deactivate("card", actor="ops", subscription="C1", user_no="U1",
                                 credential_id=world.state("P1").cards[0][0])
