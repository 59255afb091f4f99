"""The bank CA: keys at rest, provisioning, attested issuance, certificate profile, CRLs."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_certkey import FakeCertKey, raw_signature

from capkey.cert.attestation import Attestation
from capkey.cert.ca import DEFAULT_POLICY_OID, CaError, CertificateAuthority, RevocationReason

NOW = dt.datetime(2026, 11, 27, 14, 0, tzinfo=dt.UTC)
PASSWORD = b"correct horse battery staple"


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority.create(
        tmp_path / "ca",
        name="Banque Exemple",
        encryption=serialization.BestAvailableEncryption(PASSWORD),
        now=NOW,
    )


@pytest.fixture
def device(ca):
    dev = FakeCertKey()
    ca.provision_device(dev.serial, dev.attestation_public_key(), now=NOW)
    return dev


def test_keys_at_rest_are_encrypted_and_reload_with_the_password(ca, tmp_path):
    for stem in ("root", "issuing"):
        pem = (tmp_path / "ca" / f"{stem}.key.pem").read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert (tmp_path / "ca" / f"{stem}.key.pem").stat().st_mode & 0o077 == 0
    again = CertificateAuthority.load(tmp_path / "ca", password=PASSWORD)
    assert again.root_certificate == ca.root_certificate
    assert again.issuing_certificate == ca.issuing_certificate
    with pytest.raises(CaError):
        CertificateAuthority.load(tmp_path / "ca", password=b"wrong")
    with pytest.raises(CaError):
        CertificateAuthority.load(tmp_path / "ca", password=None)


def test_clear_keys_need_an_explicit_no_encryption(tmp_path):
    with pytest.raises(TypeError):
        CertificateAuthority.create(tmp_path / "a", name="B", encryption=PASSWORD, now=NOW)
    CertificateAuthority.create(
        tmp_path / "b", name="B", encryption=serialization.NoEncryption(), now=NOW
    )
    assert (tmp_path / "b/root.key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    CertificateAuthority.load(tmp_path / "b", password=None)


def test_create_refuses_a_non_empty_folder(ca, tmp_path):
    with pytest.raises(CaError):
        CertificateAuthority.create(
            tmp_path / "ca", name="B", encryption=serialization.NoEncryption(), now=NOW
        )


def test_ca_hierarchy(ca):
    root, issuing = ca.root_certificate, ca.issuing_certificate
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    bc = issuing.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0


def test_issue_certificate_profile(ca, device):
    point, attestation = device.generate(1)
    cert = ca.issue_certificate(point, attestation, "123456789", "01", now=NOW)
    cert.verify_directly_issued_by(ca.issuing_certificate)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_agreement)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [DEFAULT_POLICY_OID]
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "123456789"
    assert subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "01"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Banque Exemple"
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=730)
    record = ca.issued()[0]
    assert record.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert (record.device_serial, record.slot, record.subscription) == (
        device.serial,
        1,
        "123456789",
    )
    assert ca.find(record.serial_number) == ca.find(record.fingerprint) == record


def test_validity_never_passes_the_issuing_ca(ca, device):
    point, attestation = device.generate(0)
    late = ca.issuing_certificate.not_valid_after_utc - dt.timedelta(days=10)
    cert = ca.issue_certificate(point, attestation, "1", "1", now=late)
    assert cert.not_valid_after_utc == ca.issuing_certificate.not_valid_after_utc


def test_unprovisioned_device_is_refused(ca):
    stranger = FakeCertKey(serial="0badc0de")
    point, attestation = stranger.generate(0)
    with pytest.raises(CaError, match="never provisioned"):
        ca.issue_certificate(point, attestation, "1", "1", now=NOW)


def test_attestation_by_another_key_is_refused(ca, device):
    impostor = FakeCertKey(serial=device.serial)  # same serial, its own attestation key
    point, attestation = impostor.generate(0)
    with pytest.raises(CaError, match="does not verify"):
        ca.issue_certificate(point, attestation, "1", "1", now=NOW)


def test_attestation_of_another_public_key_is_refused(ca, device):
    _, attestation = device.generate(0)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(CaError, match="another public key"):
        ca.issue_certificate(other, attestation, "1", "1", now=NOW)


def test_tampered_attestation_is_refused(ca, device):
    point, attestation = device.generate(2)
    raw = bytearray(attestation)
    raw[5] = 3  # slot byte: signed, so the signature breaks
    with pytest.raises(CaError, match="does not verify"):
        ca.issue_certificate(point, bytes(raw), "1", "1", now=NOW)
    with pytest.raises(CaError):
        ca.issue_certificate(point, bytes(attestation)[:-1], "1", "1", now=NOW)


def test_attestation_of_a_key_not_made_by_the_device(ca, device):
    """A key the host made and had the device attestation key sign would pass: the attestation
    key never signs anything but statements over keys the device generated (firmware)."""
    key = ec.generate_private_key(ec.SECP256R1())
    statement = Attestation.build_statement(
        slot=0, serial=device.serial, firmware="x", public_key=key.public_key()
    )
    forged = statement + raw_signature(ec.generate_private_key(ec.SECP256R1()), statement)
    with pytest.raises(CaError):
        ca.issue_certificate(key.public_key(), forged, "1", "1", now=NOW)


@pytest.mark.parametrize("sub,user", [("", "1"), ("12 34", "1"), ("1", "x" * 33), ("1", "é")])
def test_bad_identity_is_refused(ca, device, sub, user):
    point, attestation = device.generate(0)
    with pytest.raises(CaError):
        ca.issue_certificate(point, attestation, sub, user, now=NOW)


def test_provisioning_is_once_per_serial(ca, device):
    assert ca.provision_device(device.serial, device.attestation_public_key(), now=NOW)
    with pytest.raises(CaError, match="already provisioned"):
        ca.provision_device(device.serial, FakeCertKey().attestation_public_key(), now=NOW)
    with pytest.raises(CaError):
        ca.provision_device("abc", b"\x04" + bytes(64), now=NOW)
    assert [d.serial for d in ca.devices()] == [device.serial]


def test_revoke_publishes_a_crl_listing_the_certificate(ca, device):
    point, attestation = device.generate(0)
    cert = ca.issue_certificate(point, attestation, "1", "1", now=NOW)
    before = ca.published_crls()
    later = NOW + dt.timedelta(hours=1)
    root_crl, issuing_crl = ca.revoke(
        f"{cert.serial_number:x}", now=later, reason=RevocationReason.key_compromise
    )
    assert issuing_crl.is_signature_valid(ca.issuing_certificate.public_key())
    assert root_crl.is_signature_valid(ca.root_certificate.public_key())
    entry = issuing_crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None and entry.revocation_date_utc == later
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    number = issuing_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    old = before[1].extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > old
    assert ca.published_crls()[1] == issuing_crl
    with pytest.raises(CaError, match="already revoked"):
        ca.revoke(f"{cert.serial_number:x}", now=later)
    with pytest.raises(CaError):
        ca.revoke("00", now=later)
