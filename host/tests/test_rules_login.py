"""Login rules: R1–R5, R16, R17 (and the configuration limits of R5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_rules_support import T0, activate_code, build_world, client_intent, world_fixture  # noqa: F401

from capkey.rules import (
    AuthLevel,
    CertEvidence,
    ConfigError,
    LoginRequest,
    Method,
    Outcome,
    RulesConfig,
    login_digest,
)
from capkey.rules.codes import CodeHasher


def test_R1_login_needs_identifiers_and_exactly_one_method(world):
    s = world.service
    ch = s.issue_login_challenge("C1", "U1")
    code = world.cards["U1"].respond(ch.cap_challenge)
    bad = [
        LoginRequest("C1", "U1"),  # no method
        LoginRequest("C1", "U1", code=world.codes["U1"], cap_code=code, challenge_id=ch.id),
        LoginRequest("C1", "U1", cap_code=code),  # CAP without its challenge
        LoginRequest("C1", "U1", code=world.codes["U1"], challenge_id=ch.id),
        LoginRequest("", "U1", code="x"),
        LoginRequest("C1", "U1 ; drop", code="x"),
        LoginRequest("C1", "U1", code=""),
        LoginRequest("C1", "U1", cert=CertEvidence(b"", b"")),
        "C1/U1",
    ]
    for request in bad:
        assert s.login(request).outcome is Outcome.INVALID_REQUEST, request
    # the well-formed CAP login with the same challenge still works: nothing was consumed
    assert s.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)).outcome is Outcome.OK
    invalid = [r for r in world.audit() if r[6] == "INVALID_REQUEST"]
    assert len(invalid) == len(bad)


def test_R2_every_failure_is_the_same_answer(world):
    activate_code(world, "U1")
    world.cards["U2"].atc = 0
    answers = {
        "unknown subscription": world.code_login("U1", sub="C9"),
        "unknown user": world.service.login(LoginRequest("C1", "ZZ", code="whatever12")),
        "wrong code": world.code_login("U1", "Wrong-code-1"),
        "wrong CAP code": world.cap_login("U2", code="00000000"),
        "foreign certificate": world.cert_login("U2", key_user="U1"),
        "user of another subscription": world.code_login("U1", sub="C2"),
    }
    for _ in range(5):
        world.code_login("P1", "Wrong-code-1")
    answers["blocked user, right code"] = world.code_login("P1")
    assert {repr(a) for a in answers.values()} == {repr(answers["wrong code"])}
    assert answers["wrong code"].outcome is Outcome.AUTH_FAILED
    assert answers["wrong code"].session is None
    # the reason is in the audit trail only
    reasons = {r[7] for r in world.audit() if r[6] == "AUTH_FAILED"}
    assert {"unknown_user", "bad_code", "bad_cap_code", "cert_not_registered", "blocked"} <= reasons


class CountingHasher(CodeHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, allow_weak=True)
        self.verifications = 0

    def verify(self, stored_hash, code):
        self.verifications += 1
        return super().verify(stored_hash, code)

    def dummy_verify(self, code=""):
        self.verifications += 1
        return super().dummy_verify(code)


def test_R2_unknown_and_blocked_users_cost_one_hash_verification(tmp_path):
    hasher = CountingHasher()
    w = build_world(str(tmp_path / "db"), hasher=hasher)
    activate_code(w, "U1")
    for _ in range(5):
        w.code_login("P1", "Wrong-code-1")
    cases = [
        lambda: w.code_login("U1", "Wrong-code-1"),  # known user, wrong code
        lambda: w.code_login("U1", sub="C9"),  # unknown subscription
        lambda: w.service.login(LoginRequest("C1", "NOBODY", code="Whatever-12")),
        lambda: w.code_login("P1"),  # blocked
        lambda: w.code_login("U2", sub="C2", code="Whatever-12"),  # user without a code
    ]
    for case in cases:
        before = hasher.verifications
        assert case().outcome is Outcome.AUTH_FAILED
        assert hasher.verifications - before == 1


def test_R3_cap_and_cert_give_sca_code_gives_single(world):
    t = world.clock.now()
    cap = world.cap_login("U1")
    assert cap.outcome is Outcome.OK
    assert (cap.session.auth_level, cap.session.method, cap.session.sca_at) == (
        AuthLevel.SCA, Method.CAP, t)
    world.clock.advance(seconds=10)
    cert = world.cert_login("U1")
    assert cert.outcome is Outcome.OK and cert.session.auth_level is AuthLevel.SCA
    assert world.state("U1").last_sca_at == world.clock.now()
    activate_code(world, "U2")
    world.clock.advance(seconds=10)
    code = world.code_login("U2")
    assert code.outcome is Outcome.OK and code.session.auth_level is AuthLevel.SINGLE
    assert world.state("U2").last_sca_at < world.clock.now()  # CODE never counts as SCA


def test_R4_first_access_needs_sca(world):
    # right code, never passed SCA
    assert world.code_login("U1").outcome is Outcome.SCA_REQUIRED
    assert world.code_login("U1", "Wrong-code-1").outcome is Outcome.AUTH_FAILED
    assert world.cap_login("U1").outcome is Outcome.OK
    assert world.code_login("U1").outcome is Outcome.CODE_CHANGE_REQUIRED


def test_R5_code_login_needs_sca_within_renewal_period(world):
    activate_code(world, "U1")
    sca_time = world.state("U1").last_sca_at
    ok_at = sca_time + timedelta(days=90)
    late = sca_time + timedelta(days=90, seconds=1)
    assert world.service.login(LoginRequest("C1", "U1", code=world.codes["U1"]),
                               now=ok_at).outcome is Outcome.OK
    assert world.service.login(LoginRequest("C1", "U1", code=world.codes["U1"]),
                               now=late).outcome is Outcome.SCA_REQUIRED
    # an SCA (login) renews the clock
    world.clock.t = late
    assert world.cap_login("U1").outcome is Outcome.OK
    assert world.code_login("U1").outcome is Outcome.OK


def test_R5_renewal_setting_limited_to_180_days(tmp_path):
    assert RulesConfig(sca_renewal_days=180).sca_renewal_days == 180
    for bad in (181, 365, 0, -1, 90.5, True):
        with pytest.raises(ConfigError):
            RulesConfig(sca_renewal_days=bad)
    w = build_world(str(tmp_path / "db"), config=RulesConfig(sca_renewal_days=30))
    activate_code(w, "U1")
    w.clock.advance(days=31)
    assert w.code_login("U1").outcome is Outcome.SCA_REQUIRED


def test_R16_certificate_must_be_registered_to_this_user(world):
    assert world.cert_login("U1").outcome is Outcome.OK
    # U1's own valid certificate, presented as U2: registered to someone else
    assert world.cert_login("U2", key_user="U1").outcome is Outcome.AUTH_FAILED
    # a certificate from the bank CA that nobody registered
    key, der = world.ca.issue("stranger")
    ch = world.service.issue_login_challenge("C1", "U1")
    from test_rules_support import sign_intent

    intent = client_intent("LOGIN", ch.nonce, "C1", "U1", login_digest("C1", "U1"))
    ev = CertEvidence(der, sign_intent(key, intent))
    assert world.service.login(LoginRequest("C1", "U1", cert=ev, challenge_id=ch.id)
                               ).outcome is Outcome.AUTH_FAILED
    assert world.sig.calls == 1  # unregistered certificates never reach the verifier


def test_R16_verifier_refusals_fail_and_count(world):
    from cryptography import x509

    key, der = world.cert_keys["U1"]
    world.ca.revoked.add(x509.load_der_x509_certificate(der).serial_number)  # revoked
    assert world.cert_login("U1").outcome is Outcome.AUTH_FAILED
    world.ca.revoked.clear()
    world.ca.good.discard(x509.load_der_x509_certificate(der).serial_number)  # status unknown
    assert world.cert_login("U1").outcome is Outcome.AUTH_FAILED
    world.ca.good.add(x509.load_der_x509_certificate(der).serial_number)
    world.clock.advance(days=400)  # expired
    assert world.cert_login("U1").outcome is Outcome.AUTH_FAILED
    assert world.state("U1").failures == 3
    world.clock.advance(days=-400)
    # a signature over another challenge (or another user) does not verify
    ch = world.service.issue_login_challenge("C1", "U1")
    from test_rules_support import sign_intent

    stale = client_intent("LOGIN", b"\0" * 32, "C1", "U1", login_digest("C1", "U1"))
    ev = CertEvidence(der, sign_intent(key, stale))
    assert world.service.login(LoginRequest("C1", "U1", cert=ev, challenge_id=ch.id)
                               ).outcome is Outcome.AUTH_FAILED
    assert world.cert_login("U1").outcome is Outcome.OK
    assert world.state("U1").failures == 0


def test_R17_client_claims_never_change_a_decision(world):
    claims = {"pin_verified": "true", "middleware": "TURBO SIGN 9.9", "new_computer": "false",
              "sca": "done"}
    assert world.code_login("U1", client_claims=claims).outcome is Outcome.SCA_REQUIRED
    assert world.code_login("U1", "Wrong-code-1", client_claims=claims).outcome is (
        Outcome.AUTH_FAILED)
    assert world.cap_login("U1", code="00000000", client_claims=claims).outcome is (
        Outcome.AUTH_FAILED)
    with_claims = world.cap_login("U1", client_claims=claims)
    assert with_claims.outcome is Outcome.OK
    assert with_claims.session.auth_level is AuthLevel.SCA
    assert not any("TURBO" in str(r) for r in world.audit())


def test_R3_login_challenges_are_issued_for_unknown_users_too(world):
    known = world.service.issue_login_challenge("C1", "U1")
    unknown = world.service.issue_login_challenge("C9", "NOBODY")
    assert type(known) is type(unknown) and len(unknown.nonce) == 32
    assert len(unknown.cap_challenge) == 8 and unknown.cap_challenge.isdigit()
    assert unknown.expires_at == T0 + timedelta(seconds=300)
