"""R2 uniform failure, by counting the work a refused login does (not by timing it: the counts are
what the time is made of, and a timing assertion would be flaky on a shared machine).

For each method (CAP, CODE, CERT) and each way a login fails — unknown subscription, unknown user,
wrong evidence, temporary and permanent block, revoked card and certificate, deactivated user and
subscription, spent challenge — the same verifications (CAP codes, Argon2id, signatures), the same
store statements (by kind and table) and the same transactions; the same for each way a step-up
completion fails (wrong evidence, blocked user, spent or foreign challenge, changed record). The
fakes get the dummy verification the adapters have (`verify` against a card or a registration
nobody has); `test_R2_cap_adapter_dummy_costs_the_cryptograms_of_a_wrong_code` checks the CAP
adapter's against the key backend.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest
from cap_card_model import make_code
from test_rules_support import (
    ENGINES,
    FakeCap,
    FakeCard,
    FakeSignature,
    TestCA,
    World,
    build_world,
    client_intent,
    make_target,
    sign_intent,
)

from capkey.emv.issuer import TEST_IMK, TEST_IMK_LABEL, SoftwareIssuerBackend
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.emv.verifier import Mode
from capkey.rules import (
    AuthService,
    CapCard,
    CapMode,
    CertEvidence,
    LoginRequest,
    Outcome,
    Payment,
    RegisteredCertificate,
    Rejected,
    login_digest,
)
from capkey.rules.adapters import CapVerifier
from capkey.rules.interfaces import CapDummy, SignatureDummy

WRONG_CODE, WRONG_CAP = "Wrong-code-1", "00000000"
PAY = Payment(125_00, "EUR", "FR7630006000011234567890189", "ACME SA")


class DummyCap(FakeCap):
    """`FakeCap` with the adapter's dummy verification: `verify` against a card nobody has."""

    NOBODY = CapCard(0, FakeCard("nobody").profile, -1)

    def dummy_verify(self, code: str, mode: CapMode) -> None:
        try:
            self.verify(self.NOBODY, code, mode)
        except Rejected:
            pass


class DummySignature(FakeSignature):
    """`FakeSignature` with the adapter's dummy verification: the evidence checked against a
    registration no certificate has."""

    NOBODY = RegisteredCertificate(0, "00" * 32, "")

    def dummy_verify(self, evidence: CertEvidence, intent, now: datetime) -> None:
        try:
            self.verify(evidence, intent, self.NOBODY, now)
        except Rejected:
            pass


assert isinstance(DummyCap(), CapDummy)
assert isinstance(DummySignature(TestCA()), SignatureDummy)


def _enrol(w: World, sub: str, user: str) -> None:
    """A user with a card, a certificate and a code, like those of `build_world`."""
    d = w.directory
    d.add_user(sub, user, "user", actor="ops")
    card = w.cards[user] = FakeCard(key_ref=f"{sub}-{user}")
    d.attach_card(sub, user, card.profile, actor="ops")
    key, der = w.ca.issue(f"{sub}-{user}")
    d.attach_certificate(sub, user, der, actor="ops")
    w.cert_keys[user] = (key, der)
    w.codes[user] = d.set_code(sub, user, actor="ops")


def _block(w: World, user: str) -> None:
    for _ in range(w.service.config.max_failures):
        assert w.code_login(user, WRONG_CODE).outcome is Outcome.AUTH_FAILED


def _uniform_world(target: str, schema: str | None) -> World:
    """`build_world` with the dummy-capable fakes and one user per way to fail."""
    base = build_world(target, schema)
    cap, sig = DummyCap(), DummySignature(base.ca)
    service = AuthService(base.store, cap_verifier=cap, signature_verifier=sig,
                          clock=base.clock, code_hasher=base.service.hasher)
    w = replace(base, service=service, cap=cap, sig=sig)
    for user in ("WRONG", "TEMP", "PERM", "REVOKED", "GONE", "SPENT",
                 *(user for user, _ in STEP_UP_CASES.values())):
        _enrol(w, "C1", user)
    w.directory.create_subscription("C3", actor="ops")
    _enrol(w, "C3", "X1")
    w.directory.deactivate("subscription", actor="ops", subscription="C3")
    w.directory.deactivate("user", actor="ops", subscription="C1", user_no="GONE")
    (card_id, *_), = w.state("REVOKED").cards
    (cert_id, *_), = w.state("REVOKED").certificates
    w.directory.deactivate("card", actor="ops", subscription="C1", user_no="REVOKED",
                           credential_id=card_id)
    w.directory.deactivate("certificate", actor="ops", subscription="C1", user_no="REVOKED",
                           credential_id=cert_id)
    for _ in range(w.service.config.max_temporary_blocks + 1):  # the last block is permanent
        _block(w, "PERM")
        w.clock.advance(seconds=w.service.config.block_duration_seconds + 1)
    _block(w, "TEMP")
    assert w.state("PERM").permanently_blocked and w.state("TEMP").blocked_until is not None
    return w


WRONG_REASON = {"CAP": "bad_cap_code", "CODE": "bad_code", "CERT": "bad_signature"}

# case: (subscription, user, whose evidence, methods for which the evidence is wrong, the audit
# reason it must give (per method where they differ): proof that it takes its own path)
CASES = {
    "unknown subscription": ("C9", "U1", "U1", "", "unknown_user"),
    "unknown user": ("C1", "NOBODY", "U1", "", "unknown_user"),
    "wrong evidence": ("C1", "WRONG", "WRONG", "CAP CODE CERT", WRONG_REASON),
    "temporarily blocked": ("C1", "TEMP", "TEMP", "", "blocked"),
    "permanently blocked": ("C1", "PERM", "PERM", "", "blocked"),
    # the right CAP code of the revoked card, the right signature of the revoked certificate;
    # a code is not revocable: a wrong one
    "card and certificate revoked": ("C1", "REVOKED", "REVOKED", "CODE",
                                     {**WRONG_REASON, "CERT": "cert_not_registered"}),
    "user deactivated": ("C1", "GONE", "GONE", "", "user_inactive"),
    "subscription deactivated": ("C3", "X1", "X1", "", "subscription_inactive"),
    "spent challenge": ("C1", "SPENT", "SPENT", "", "challenge_spent"),
}


def _reason(expected: str | dict[str, str], method: str) -> str:
    return expected if isinstance(expected, str) else expected[method]


def _last_reason(w: World, subject: str) -> str:
    return [row for row in w.audit() if row[4] == subject][-1][7]


def _request(w: World, method: str, case: str) -> LoginRequest:
    sub, user, owner, wrong_for, _ = CASES[case]
    wrong = method in wrong_for.split()
    if method == "CODE":
        return LoginRequest(sub, user, code=WRONG_CODE if wrong else w.codes[owner])
    ch = w.service.issue_login_challenge(sub, user)
    if method == "CAP":
        code = WRONG_CAP if wrong else w.cards[owner].respond(ch.cap_challenge)
        req = LoginRequest(sub, user, cap_code=code, challenge_id=ch.id)
    else:
        key, der = w.cert_keys[owner]
        if wrong:
            key = w.cert_keys["U2"][0]
        intent = client_intent("LOGIN", ch.nonce, sub, user, login_digest(sub, user))
        req = LoginRequest(sub, user, cert=CertEvidence(der, sign_intent(key, intent)),
                           challenge_id=ch.id)
    if case == "spent challenge":
        assert w.service.login(req).outcome is Outcome.OK  # the replay below is what fails
    return req


_TABLE = re.compile(r"\b(?:FROM|UPDATE|INTO)\s+(\w+)")


def _statement(sql: str) -> str:
    """A statement's kind: its verb and first table ('UPDATE users')."""
    table = _TABLE.search(sql)
    return f"{sql.split()[0]} {table.group(1) if table else '?'}"


def _counted(tally: Counter, key, method):
    """`method`, counting each call in `tally` under `key` (a name, or a function of the
    arguments)."""
    def wrapper(*args, **kwargs):
        tally[key(*args) if callable(key) else key] += 1
        return method(*args, **kwargs)
    return wrapper


def _work(w: World, monkeypatch: pytest.MonkeyPatch, attempt: Callable[[], Outcome]) -> Counter:
    """What `attempt` did: verifications, statements by kind, transactions."""
    tally: Counter = Counter()
    store = w.store
    watched = [
        (w.cap, "verify", "CAP verification"),
        (w.sig, "verify", "signature verification"),
        (w.service.hasher, "verify", "Argon2id verification"),
        (w.service.hasher, "dummy_verify", "Argon2id verification"),
        (store, "_execute", lambda _conn, sql, _params: _statement(sql)),
        (store, "transaction", "write transaction"),
        (store, "read", "read transaction"),
    ]
    with monkeypatch.context() as m:
        for obj, name, key in watched:
            m.setattr(obj, name, _counted(tally, key, getattr(obj, name)))
        outcome = attempt()
    assert outcome is Outcome.AUTH_FAILED
    return tally


def _same_work(work: dict[str, Counter], verifier: str) -> None:
    table = "\n".join(f"{case:30} {dict(sorted(c.items()))}" for case, c in work.items())
    assert all(c == work["wrong evidence"] for c in work.values()), table
    assert work["wrong evidence"][verifier] == 1, table


@pytest.fixture(name="uniform_world", params=ENGINES)
def uniform_world_fixture(request, tmp_path):
    target, schema = make_target(request.param, tmp_path)
    w = _uniform_world(target, schema)
    yield w
    if schema is not None:
        w.store.drop_schema()
    w.store.close()


@pytest.mark.parametrize("method", ["CAP", "CODE", "CERT"])
def test_R2_every_refused_login_does_the_same_work(uniform_world, method, monkeypatch):
    w = uniform_world
    work = {}
    for case in CASES:
        if case == "spent challenge" and method == "CODE":
            continue
        # The first attempt warms what does not depend on the user (the store's cached audit
        # chain head for the subject, prepared statements); the second is counted.
        assert w.service.login(_request(w, method, case)).outcome is Outcome.AUTH_FAILED
        request = _request(w, method, case)
        work[case] = _work(w, monkeypatch, lambda: w.service.login(request).outcome)  # noqa: B023
        sub, user, *_, reason = CASES[case]
        assert _last_reason(w, f"{sub}/{user}") == _reason(reason, method), case
    _same_work(work, {"CAP": "CAP verification", "CODE": "Argon2id verification",
                      "CERT": "signature verification"}[method])


# case: (the user whose step-up fails that way, the audit reason)
STEP_UP_CASES = {
    "wrong evidence": ("SWRONG", WRONG_REASON),
    "temporarily blocked": ("SBLOCKED", "blocked"),
    "spent challenge": ("SSPENT", "challenge_spent"),
    "other session's challenge": ("SOTHER", "challenge_binding"),
    "record changed": ("SCHANGED", "record_changed"),
}


def _step_up(w: World, method: str, case: str, sessions: dict) -> Callable[[], Outcome]:
    """A payment step-up that fails as `case` says, ready to complete."""
    user = STEP_UP_CASES[case][0]
    session = sessions[user]
    ch = w.service.begin_step_up(session, "SCT_INST_ENTRY", transaction=PAY)
    wrong = case == "wrong evidence"
    if method == "CAP":
        evidence = {"cap_code": WRONG_CAP if wrong else w.cards[user].sign(
            ch.cap_challenge, ch.amount_minor, ch.currency)}
    else:
        key, der = w.cert_keys["U2" if wrong else user][0], w.cert_keys[user][1]
        intent = client_intent("PAYMENT", ch.nonce, "C1", user, PAY.digest(), PAY)
        evidence = {"cert": CertEvidence(der, sign_intent(key, intent))}
    record = replace(PAY, amount_minor=PAY.amount_minor + 1) if case == "record changed" else PAY
    if case == "spent challenge":
        assert w.service.complete_step_up(session, ch.id, transaction=PAY, **evidence) is (
            Outcome.OK)
    if case == "other session's challenge":
        session = w.cap_login(user).session
    return lambda: w.service.complete_step_up(session, ch.id, transaction=record, **evidence)


@pytest.mark.parametrize("method", ["CAP", "CERT"])
def test_R2_every_refused_step_up_does_the_same_work(uniform_world, method, monkeypatch):
    w = uniform_world
    sessions = {user: w.cap_login(user).session for user, _ in STEP_UP_CASES.values()}
    _block(w, STEP_UP_CASES["temporarily blocked"][0])  # after its session was opened
    work = {}
    for case, (user, reason) in STEP_UP_CASES.items():
        assert _step_up(w, method, case, sessions)() is Outcome.AUTH_FAILED  # warms, as above
        work[case] = _work(w, monkeypatch, _step_up(w, method, case, sessions))
        assert _last_reason(w, f"C1/{user}") == _reason(reason, method), case
    _same_work(work, {"CAP": "CAP verification", "CERT": "signature verification"}[method])


class CountingBackend(SoftwareIssuerBackend):
    """The test IMK; counts the application cryptograms it computes."""

    def __init__(self) -> None:
        super().__init__({TEST_IMK_LABEL: TEST_IMK}, allow_test_keys=True)
        self.cryptograms = 0

    def generate_ac(self, ref, cvn, minimum, iad):
        self.cryptograms += 1
        return super().generate_ac(ref, cvn, minimum, iad)


def test_R2_cap_adapter_dummy_costs_the_cryptograms_of_a_wrong_code():
    backend = CountingBackend()
    verifier = CapVerifier(backend, origin="https://banque.example")
    pan = "4974000012345678"
    # a card never used: the floor the dummy card has
    card = CapCard(1, {"profile": VISA_DPA_CVN10.name, "pan": pan, "psn": 1,
                       "imk_label": TEST_IMK_LABEL}, -1)
    mode = CapMode("respond", "LOGIN", bytes(range(32)), bytes(32), "C1", "U1")
    verifier.dummy_verify("12345678", mode)
    assert backend.cryptograms == 0  # no code accepted yet: no card to model the dummy on
    good = make_code(VISA_DPA_CVN10, pan, 1, 1, Mode.RESPOND, challenge=verifier.challenge(mode))
    accepted = verifier.verify(card, good, mode)
    assert accepted.atc == 1 and accepted.reader_family in VISA_DPA_CVN10.reader_families
    # the dummy models a used card: its reader family remembered, so a wrong code for it tries
    # that family only (a card never used tries them all, docs/cap.md §5.5)
    card = dataclasses.replace(card, reader_family=accepted.reader_family)
    # Where a code's ATC bits fall above the card's floor decides how many candidates (and
    # cryptograms) it costs: codes over every 8-bit ATC value cover the cases with none and some.
    seen = set()
    for atc in range(256):
        code = make_code(VISA_DPA_CVN10, "4974000099999999", 1, atc, Mode.RESPOND,
                         challenge=verifier.challenge(mode))
        before = backend.cryptograms
        with pytest.raises(Rejected):
            verifier.verify(card, code, mode)
        real = backend.cryptograms - before
        verifier.dummy_verify(code, mode)
        assert backend.cryptograms - before - real == real, atc
        seen.add(real)
    assert 0 in seen and max(seen) > 0
