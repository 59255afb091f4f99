"""The rules with capkey's real verifiers (capkey.emv.verifier, capkey.cert.verifier) through
capkey.rules.adapters: EMV CAP codes computed by a model card from the test IMK, certificates issued
by the capkey CA to a test-double certificate key, CRL revocation."""

from __future__ import annotations

import datetime as dt

import pytest
from cap_card_model import make_code
from cryptography.hazmat.primitives import serialization
from fake_certkey import FakeCertKey
from test_rules_support import ManualClock

from capkey.cert.ca import CertificateAuthority
from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.emv.verifier import Mode
from capkey.rules import (
    AuthService,
    CertEvidence,
    ConfigError,
    LoginRequest,
    Outcome,
    Payment,
    RulesConfig,
)
from capkey.rules.adapters import CapVerifier, SignatureVerifier, canonical_payload
from capkey.rules.codes import CodeHasher
from capkey.store import open_store

NOW = dt.datetime(2026, 11, 27, 14, 0, tzinfo=dt.UTC)
ORIGIN = "https://banque.example"
PAN, PSN = "4974000012345678", 1
PAY = Payment(125_00, "EUR", "FR7630006000011234567890189", "ACME SARL")


class RealWorld:
    def __init__(self, tmp_path, config=None):
        self.clock = ManualClock(NOW)
        self.ca = CertificateAuthority.create(tmp_path / "ca", name="Banque Exemple",
                                              encryption=serialization.NoEncryption(),
                                              now=NOW - dt.timedelta(days=1000))
        self.ca.publish_crls(now=NOW)
        self.sig = SignatureVerifier(self.ca.trust_config(), self.ca.revocation(), origin=ORIGIN)
        self.service = AuthService(
            open_store(str(tmp_path / "db")),
            cap_verifier=CapVerifier(SoftwareIssuerBackend.for_tests(), origin=ORIGIN),
            signature_verifier=self.sig, clock=self.clock, config=config,
            code_hasher=CodeHasher.insecure_for_tests())
        d = self.service.directory
        d.create_subscription("C1", actor="ops")
        d.add_user("C1", "U1", "principal", actor="ops")
        d.attach_card("C1", "U1", {"profile": VISA_DPA_CVN10.name, "pan": PAN, "psn": PSN,
                                   "imk_label": TEST_IMK_LABEL, "last_atc": 10}, actor="ops")
        self.atc = 10
        self.device = FakeCertKey()
        self.ca.provision_device(self.device.serial, self.device.attestation_public_key(),
                                 now=NOW)
        point, attestation = self.device.generate(0)
        cert = self.ca.issue_certificate(point, attestation, "C1", "U1", now=NOW)
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.serial = format(cert.serial_number, "x")
        d.attach_certificate("C1", "U1", self.der, actor="ops")

    def code(self, mode, challenge, amount=0, family=None):
        self.atc += 1
        return make_code(VISA_DPA_CVN10, PAN, PSN, self.atc, mode, challenge=challenge,
                         amount=amount, family=family)

    def cap_login(self, family=None):
        ch = self.service.issue_login_challenge("C1", "U1")
        code = self.code(Mode.RESPOND, ch.cap_challenge, family=family)
        return self.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)), code

    def card(self):
        with self.service.store.read() as tx:
            (card,) = tx.cards_of(tx.user_find("C1", "U1").id)
        return card

    def signed(self, nonce, record, user="U1"):
        payload = bytes(canonical_payload(nonce, record, "C1", user, ORIGIN).to_bytes())
        return CertEvidence(self.der, self.device.sign(0, payload), payload)


@pytest.fixture
def real(tmp_path):
    return RealWorld(tmp_path)


def test_R9_real_cap_login_then_replay_rejected(real):
    result, code = real.cap_login()
    assert result.outcome is Outcome.OK
    assert real.service.directory.user_state("C1", "U1").cards[0][2] == 11
    # an old code (ATC 11) over a new challenge
    ch = real.service.issue_login_challenge("C1", "U1")
    old = make_code(VISA_DPA_CVN10, PAN, PSN, 11, Mode.RESPOND, challenge=ch.cap_challenge)
    assert real.service.login(LoginRequest("C1", "U1", cap_code=old, challenge_id=ch.id)
                              ).outcome is Outcome.AUTH_FAILED


def test_R7_real_cap_sign_bound_to_amount_and_payee(real):
    session = real.cap_login()[0].session
    ch = real.service.begin_step_up(session, "SCT_INST_ENTRY", transaction=PAY)
    assert ch.cap_mode == "sign" and ch.cap_challenge.endswith("0189")  # payee IBAN digits
    wrong_amount = real.code(Mode.SIGN, ch.cap_challenge, amount=125_01)
    assert real.service.complete_step_up(session, ch.id, transaction=PAY,
                                         cap_code=wrong_amount) is Outcome.AUTH_FAILED
    ch = real.service.begin_step_up(session, "SCT_INST_ENTRY", transaction=PAY)
    code = real.code(Mode.SIGN, ch.cap_challenge, amount=ch.amount_minor)
    assert real.service.complete_step_up(session, ch.id, transaction=PAY, cap_code=code) is (
        Outcome.OK)
    assert real.service.authorize(session, "SCT_INST_ENTRY", transaction=PAY) is Outcome.OK


def test_R16_real_certificate_login_payment_and_revocation(real):
    ch = real.service.issue_login_challenge("C1", "U1")
    ev = real.signed(ch.nonce, None)
    assert real.service.login(LoginRequest("C1", "U1", cert=ev, challenge_id=ch.id)
                              ).outcome is Outcome.OK
    session = real.service.login(LoginRequest(
        "C1", "U1", cert=real.signed((ch2 := real.service.issue_login_challenge("C1", "U1")).nonce,
                                     None), challenge_id=ch2.id)).session
    step = real.service.begin_step_up(session, "SCT_INST_ENTRY", transaction=PAY)
    # signed over another payee: the verifier compares with the server's record
    other = Payment(125_00, "EUR", "DE89370400440532013000", "ACME SARL")
    assert real.service.complete_step_up(session, step.id, transaction=PAY,
                                         cert=real.signed(step.nonce, other)) is Outcome.AUTH_FAILED
    step = real.service.begin_step_up(session, "SCT_INST_ENTRY", transaction=PAY)
    assert real.service.complete_step_up(session, step.id, transaction=PAY,
                                         cert=real.signed(step.nonce, PAY)) is Outcome.OK
    # revoked at the CA, new CRL loaded: refused
    real.ca.revoke(real.serial, now=NOW)
    real.sig.revocation = real.ca.revocation()
    ch = real.service.issue_login_challenge("C1", "U1")
    assert real.service.login(LoginRequest("C1", "U1", cert=real.signed(ch.nonce, None),
                                           challenge_id=ch.id)).outcome is Outcome.AUTH_FAILED
    with real.service.store.read() as tx:
        reasons = [r[7] for r in tx.audit_rows() if r[6] == "AUTH_FAILED"]
    assert reasons[-1] == "bad_signature:revoked"


def test_R9_real_cap_resync_after_gap(real):
    assert real.cap_login()[0].outcome is Outcome.OK
    real.atc += 200
    assert real.cap_login()[0].outcome is Outcome.AUTH_FAILED
    card_id = real.service.directory.user_state("C1", "U1").cards[0][0]
    c1, c2 = real.code(Mode.IDENTIFY, None), real.code(Mode.IDENTIFY, None)
    assert real.service.resync_card("C1", "U1", card_id, c1, c2, actor="ops") is True
    assert real.service.directory.user_state("C1", "U1").cards[0][2] == real.atc
    assert real.cap_login()[0].outcome is Outcome.OK


def test_reader_family_remembered_then_only_its_codes_until_a_resync(real):
    """docs/cap.md §5.5: the family of a card's first accepted code is stored with its ATC floor;
    another family's code is then refused (its odds of a guess are the one family's); a resync
    with two consecutive codes of the new reader moves the card to that family."""
    first, other = VISA_DPA_CVN10.reader_families[0], VISA_DPA_CVN10.reader_families[1]
    assert real.card().reader_family is None
    assert real.cap_login(family=other)[0].outcome is Outcome.OK  # any family while none is known
    assert (real.card().reader_family, real.card().last_atc) == (other, real.atc)
    assert real.cap_login(family=first)[0].outcome is Outcome.AUTH_FAILED
    with real.service.store.read() as tx:
        assert [r[7] for r in tx.audit_rows() if r[6] == "AUTH_FAILED"][-1] == "bad_cap_code"
    assert real.cap_login(family=other)[0].outcome is Outcome.OK
    card_id = real.card().id
    c1 = real.code(Mode.IDENTIFY, None, family=first)
    c2 = real.code(Mode.IDENTIFY, None, family=first)
    assert real.service.resync_card("C1", "U1", card_id, c1, c2, actor="ops") is True
    assert (real.card().reader_family, real.card().last_atc) == (first, real.atc)
    assert real.cap_login(family=first)[0].outcome is Outcome.OK
    assert real.cap_login(family=other)[0].outcome is Outcome.AUTH_FAILED


def test_identify_code_logs_in_by_default_never_completes_a_step_up(real):
    """rules.md "Mode separation": a login accepts the guide's Identify code (CODE key, card PIN),
    single use through the ATC floor; a step-up never does."""
    ch = real.service.issue_login_challenge("C1", "U1")
    code = real.code(Mode.IDENTIFY, None)
    result = real.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id))
    assert result.outcome is Outcome.OK
    ch = real.service.issue_login_challenge("C1", "U1")  # replayed: refused
    assert real.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)
                              ).outcome is Outcome.AUTH_FAILED
    session = result.session
    ch = real.service.begin_step_up(session, "SCT_INST_ENTRY", transaction=PAY)
    assert real.service.complete_step_up(session, ch.id, transaction=PAY,
                                         cap_code=real.code(Mode.IDENTIFY, None)) is (
        Outcome.AUTH_FAILED)


def test_respond_only_policy_refuses_identify_logins(tmp_path):
    real = RealWorld(tmp_path, RulesConfig(cap_login_respond_only=True))
    ch = real.service.issue_login_challenge("C1", "U1")
    code = real.code(Mode.IDENTIFY, None)
    assert real.service.login(LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)
                              ).outcome is Outcome.AUTH_FAILED
    assert real.cap_login()[0].outcome is Outcome.OK  # Respond over the challenge


def test_respond_only_is_a_boolean_setting():
    with pytest.raises(ConfigError):
        RulesConfig(cap_login_respond_only="yes")
