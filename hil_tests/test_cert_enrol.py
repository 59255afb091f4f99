"""The certificate key end to end on a device at its first use (a fresh simulator, or a lab board
with power control whose keys are wiped first): provisioning, attested enrolment by the bank CA, then login, payment and batch signatures made on the device (shown, OK, PIN on the
keypad) and accepted by the bank's verifier; ANNULER, a wrong PIN, a non-canonical payload and
revocation refused. (The pictures of these screens in docs/screens/ come from
`python -m capkey_dev.screens`.)"""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from cap_support import InThread
from cryptography.hazmat.primitives import serialization

from capkey.cert import payload as P
from capkey.cert.ca import CertificateAuthority
from capkey.cert.verifier import (
    ExpectedPayload,
    InvalidSignature,
    Reason,
    certificate_fingerprint,
    verify_signature,
)
from capkey.link.errors import LinkError, PinInvalid, ProtocolError
from capkey.link.key import Cmd, KeyClient, KeyState, enrol

pytestmark = pytest.mark.destructive

PIN = "135790"
PUK = "24680135"
ORIGIN = "https://banque.example"
IBAN = "FR7630006000011234567890189"


@pytest.fixture
def bank(key_board, tmp_path):
    """The device's certificate key at its first use (conftest.py key_board), provisioned in a new
    bank CA and enrolled in slot 0 for 123456789/01."""
    op, dev = key_board.op, key_board.dev
    key = KeyClient(dev)
    now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create(
        tmp_path / "ca", name="Banque Exemple", encryption=serialization.NoEncryption(), now=now
    )
    assert key.status().state is KeyState.FACTORY
    ca.provision_device(dev.info().serial, key.attestation_key(), now=now)

    job = InThread(enrol, key, ca, slot=0, subscription="123456789", user="01", now=now)
    op.wait_for_text("Nouvelle clé")
    op.press("D")
    op.wait_for_text("Choisissez votre code PIN")
    op.press(PIN + "D")
    op.wait_for_text("Confirmez le code PIN")
    op.press(PIN + "D")
    op.wait_for_text("Choisissez votre code PUK")  # chosen by the person, never shown
    op.press(PUK + "D")
    op.wait_for_text("Confirmez le code PUK")
    op.press(PUK + "D")
    cert = job.join()
    return op, dev, key, ca, cert


def _sign_on_device(op, key, fields, *, title: str, pin: str = PIN):
    job = InThread(key.sign, fields.to_bytes())
    op.wait_for_text(title)
    lines = op.accept()
    op.wait_for_text("Code PIN")
    op.press(pin + "D")
    return job, lines


def _verify(ca, cert, fields, payload, signature, **changes):
    now = dt.datetime.now(dt.UTC)
    args = dict(
        payload=payload,
        signature=signature,
        certificate=cert.public_bytes(serialization.Encoding.DER),
        expected=ExpectedPayload(fields, now + dt.timedelta(seconds=300)),
        trust=ca.trust_config(),
        revocation=ca.revocation(),
        registered_fingerprints={certificate_fingerprint(cert)},
        now=now,
    )
    args.update(changes)
    verify_signature(**args)


def test_enrolment_is_attested_and_loaded(bank):
    _, _, key, ca, cert = bank
    status = key.status()
    assert status.state is KeyState.ACTIVE
    assert status.slots[0].certified and status.slots[0].subject == cert.subject.public_bytes()
    assert key.certificate(0) == cert
    (record,) = ca.issued()
    assert (record.slot, record.subscription, record.user) == (0, "123456789", "01")
    assert (
        cert.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        == status.slots[0].public_key
    )


def test_payment_signed_on_the_device_is_accepted_by_the_bank(bank):
    op, _, key, ca, cert = bank
    fields = P.PaymentPayload(secrets.token_bytes(32), 125000, "EUR", IBAN, "ACME SARL")
    job = InThread(key.sign, fields.to_bytes())
    op.wait_for_text("Virement")
    text = " ".join(op.accept())
    for expected in fields.display_lines():
        assert expected in text  # the device shows exactly what the payload says
    op.wait_for_text("Code PIN")
    op.press(PIN + "D")
    slot, signature = job.join()
    assert slot == 0
    _verify(ca, cert, fields, bytes(fields.to_bytes()), signature)
    # the same signature does not pass for another amount (R7)
    other = P.PaymentPayload(fields.challenge, 125001, "EUR", IBAN, "ACME SARL")
    with pytest.raises(InvalidSignature) as info:
        _verify(ca, cert, other, bytes(fields.to_bytes()), signature)
    assert info.value.reason is Reason.PAYLOAD_MISMATCH


def test_login_and_batch_signatures(bank):
    op, _, key, ca, cert = bank
    login = P.LoginPayload(secrets.token_bytes(32), ORIGIN, "123456789", "01")
    job, _ = _sign_on_device(op, key, login, title="Connexion à")
    _, signature = job.join()
    _verify(ca, cert, login, None, signature)

    batch = P.BatchPayload(
        secrets.token_bytes(32), 1200000, "EUR", 3, [IBAN, "DE89370400440532013000", IBAN]
    )
    job, lines = _sign_on_device(op, key, batch, title="Remise 3 ordres")
    _, signature = job.join()
    _verify(ca, cert, batch, bytes(batch.to_bytes()), signature)


def test_annuler_aborts_and_a_wrong_pin_counts(bank):
    op, _, key, _, _ = bank
    fields = P.OperationPayload(secrets.token_bytes(32), P.Purpose.MANAGE_PAYEES, "op-7")
    job = InThread(key.sign, fields.to_bytes())
    op.wait_for_text("Gestion des destinataires")
    op.press("*")
    with pytest.raises(ProtocolError) as info:
        job.join()
    assert info.value.code is LinkError.ERR.DENIED

    job, _ = _sign_on_device(op, key, fields, title="Gestion des destinataires", pin="000000")
    with pytest.raises(PinInvalid) as wrong:
        job.join()
    assert wrong.value.attempts_remaining == 2
    assert key.status().pin_left == 7


def test_non_canonical_payload_is_refused_before_anything_is_shown(bank):
    op, dev, _, _, _ = bank
    raw = bytearray(P.PaymentPayload(bytes(32), 1, "EUR", IBAN, "X").to_bytes())
    raw[-27 - 2] ^= 0x20  # an IBAN letter in lower case
    with pytest.raises(ProtocolError) as info:
        dev.call(Cmd.KEY_SIGN, bytes(raw))
    assert info.value.code is LinkError.ERR.INVALID_PARAMETER
    assert "Virement" not in op.screen_text()


def test_revoked_certificate_is_refused(bank):
    op, _, key, ca, cert = bank
    fields = P.LoginPayload(secrets.token_bytes(32), ORIGIN, "123456789", "01")
    job, _ = _sign_on_device(op, key, fields, title="Connexion à")
    _, signature = job.join()
    ca.revoke(f"{cert.serial_number:x}", now=dt.datetime.now(dt.UTC))
    with pytest.raises(InvalidSignature) as info:
        _verify(ca, cert, fields, None, signature)
    assert info.value.reason is Reason.REVOKED
