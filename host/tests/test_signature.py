"""The signature verifier (R7, R9, R16, R17, R19): accepted evidence, and every refusal giving the
same outward answer with a distinct audit reason."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_certkey import FakeCertKey, raw_signature

from capkey.cert import payload as P
from capkey.cert.ca import CertificateAuthority
from capkey.cert.verifier import (
    CrlRevocation,
    ExpectedPayload,
    InvalidSignature,
    Reason,
    RevocationStatus,
    TrustConfig,
    certificate_fingerprint,
    check_signature,
    verify_signature,
)

NOW = dt.datetime(2026, 11, 27, 14, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=1)
CHALLENGE = bytes(range(32))
IBAN = "FR7630006000011234567890189"


class World:
    """A CA, a provisioned fake device with an enrolled certificate, and a signed payment."""

    def __init__(self, tmp_path):
        self.ca = CertificateAuthority.create(
            tmp_path / "ca",
            name="Banque Exemple",
            encryption=serialization.NoEncryption(),
            now=NOW - dt.timedelta(days=1000),
        )
        self.ca.publish_crls(now=NOW)
        self.device = FakeCertKey()
        self.ca.provision_device(self.device.serial, self.device.attestation_public_key(), now=NOW)
        point, attestation = self.device.generate(0)
        self.cert = self.ca.issue_certificate(point, attestation, "123456789", "01", now=NOW)
        self.der = self.cert.public_bytes(serialization.Encoding.DER)
        self.device.load_certificate(0, self.der)
        self.trust = self.ca.trust_config()
        self.fields = P.PaymentPayload(CHALLENGE, 125000, "EUR", IBAN, "ACME SARL")
        self.payload = bytes(self.fields.to_bytes())
        self.signature = self.device.sign(0, self.payload)
        self.revocation = self.ca.revocation()  # CRLs published at NOW: nothing revoked

    def args(self, **changes):
        args = dict(
            payload=self.payload,
            signature=self.signature,
            certificate=self.der,
            expected=ExpectedPayload(self.fields, NOW + dt.timedelta(seconds=300)),
            trust=self.trust,
            revocation=self.revocation,
            registered_fingerprints={certificate_fingerprint(self.der)},
            now=LATER,
        )
        args.update(changes)
        return args

    def leaf(
        self,
        *,
        key=None,
        ku=None,
        ku_critical=True,
        policy=None,
        days=(0, 730),
        extra=(),
        signer=None,
        issuer=None,
    ):
        """A leaf signed by the issuing CA (or `signer`) with a chosen profile."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        ku = ku or x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .issuer_name(issuer or self.ca.issuing_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW + dt.timedelta(days=days[0]))
            .not_valid_after(NOW + dt.timedelta(days=days[1]))
            .add_extension(ku, critical=ku_critical)
            .add_extension(
                x509.CertificatePolicies(
                    [x509.PolicyInformation(policy or self.ca.policy_oid, None)]
                ),
                critical=False,
            )
        )
        for ext, critical in extra:
            builder = builder.add_extension(ext, critical=critical)
        cert = builder.sign(signer or self.ca._issuing_key, hashes.SHA256())
        return key, cert.public_bytes(serialization.Encoding.DER)

    def args_for_leaf(self, key, der, **changes):
        return self.args(
            certificate=der,
            signature=raw_signature(key, self.payload),
            registered_fingerprints={certificate_fingerprint(der)},
            **changes,
        )


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def refusal(args) -> InvalidSignature:
    with pytest.raises(InvalidSignature) as info:
        verify_signature(**args)
    assert check_signature(**args).reason is info.value.reason
    return info.value


def test_genuine_signature_is_accepted(world):
    assert verify_signature(**world.args()) is None
    assert check_signature(**world.args()).ok
    # the certificate may be given parsed, and the payload left out (verified over the record)
    assert verify_signature(**world.args(certificate=world.cert, payload=None)) is None
    assert world.device.shown[-1][:2] == ["Virement", "1 250,00 EUR"]


@pytest.mark.parametrize(
    "fields",
    [
        P.LoginPayload(CHALLENGE, "https://banque.example", "123456789", "01"),
        P.BatchPayload(CHALLENGE, 1200000, "EUR", 3, [IBAN, "DE89370400440532013000", IBAN]),
        P.OperationPayload(CHALLENGE, P.Purpose.MANAGE_PAYEES, "op-42"),
    ],
)
def test_every_payload_type_verifies(world, fields):
    payload = bytes(fields.to_bytes())
    signature = world.device.sign(0, payload)
    expected = ExpectedPayload(fields, NOW + dt.timedelta(seconds=300))
    verify_signature(**world.args(payload=payload, signature=signature, expected=expected))


def _expected(fields):
    return ExpectedPayload(fields, NOW + dt.timedelta(seconds=300))


def _cases(w: World):
    """(name, args, reason) for every way to fail."""
    other_ca = CertificateAuthority.create(
        w.ca.directory.parent / "other",
        name="Banque Exemple",
        encryption=serialization.NoEncryption(),
        now=NOW,
    )
    other_ca.provision_device(w.device.serial, w.device.attestation_public_key(), now=NOW)
    point, att = w.device.generate(1)
    other_cert = other_ca.issue_certificate(point, att, "123456789", "01", now=NOW)
    other_der = other_cert.public_bytes(serialization.Encoding.DER)

    tampered = bytearray(w.payload)
    tampered[40] ^= 1  # amount
    record_differs = P.PaymentPayload(CHALLENGE, 125001, "EUR", IBAN, "ACME SARL")
    other_payee = P.PaymentPayload(CHALLENGE, 125000, "EUR", "DE89370400440532013000", "ACME SARL")
    new_challenge = P.PaymentPayload(b"\x01" * 32, 125000, "EUR", IBAN, "ACME SARL")
    login = P.LoginPayload(CHALLENGE, "https://banque.example", "123456789", "01")

    revoked = CrlRevocation(w.ca.revoke(f"{w.cert.serial_number:x}", now=NOW))

    stale = CrlRevocation(w.ca._make_crls(now=NOW - dt.timedelta(days=30), number=99))
    foreign_crls = CrlRevocation(other_ca.published_crls())

    class Failing:
        def status(self, certificate, issuer, now):
            raise OSError("CRL server down")

    class SaysUnknown:
        def status(self, certificate, issuer, now):
            return RevocationStatus.UNKNOWN

    good = CrlRevocation(w.ca._make_crls(now=NOW, number=100))
    k_ku, d_ku = w.leaf(
        ku=x509.KeyUsage(False, False, False, False, True, False, False, False, False)
    )
    k_kuc, d_kuc = w.leaf(ku_critical=False)
    k_pol, d_pol = w.leaf(policy=x509.ObjectIdentifier("2.25.1"))
    k_exp, d_exp = w.leaf(days=(-800, -1))
    k_nyv, d_nyv = w.leaf(days=(1, 30))
    k_384, d_384 = w.leaf(key=ec.generate_private_key(ec.SECP384R1()))
    k_crit, d_crit = w.leaf(
        extra=[(x509.UnrecognizedExtension(x509.ObjectIdentifier("2.25.7"), b"\x05\x00"), True)]
    )
    k_ca, d_ca = w.leaf(extra=[(x509.BasicConstraints(ca=True, path_length=0), True)])
    k_self = ec.generate_private_key(ec.SECP256R1())
    _, d_self = w.leaf(key=k_self, signer=k_self)
    high_s = _high_s(w.signature)

    return [
        ("tampered payload", w.args(payload=bytes(tampered)), Reason.PAYLOAD_MISMATCH),
        (
            "signed amount differs from record",
            w.args(expected=_expected(record_differs)),
            Reason.PAYLOAD_MISMATCH,
        ),
        (
            "signed payee differs from record",
            w.args(expected=_expected(other_payee)),
            Reason.PAYLOAD_MISMATCH,
        ),
        (
            "login signature for a payment",
            w.args(
                payload=bytes(login.to_bytes()), signature=w.device.sign(0, bytes(login.to_bytes()))
            ),
            Reason.PAYLOAD_MISMATCH,
        ),
        ("old challenge", w.args(expected=_expected(new_challenge)), Reason.CHALLENGE_MISMATCH),
        (
            "challenge expired",
            w.args(now=NOW + dt.timedelta(seconds=301)),
            Reason.CHALLENGE_EXPIRED,
        ),
        ("garbage payload", w.args(payload=b"\x01\x02garbage"), Reason.MALFORMED_PAYLOAD),
        ("payload not bytes", w.args(payload="text"), Reason.MALFORMED_PAYLOAD),
        (
            "signature by another key",
            w.args(signature=raw_signature(ec.generate_private_key(ec.SECP256R1()), w.payload)),
            Reason.BAD_SIGNATURE,
        ),
        (
            "tampered record and signature over the record",
            w.args(payload=None, signature=w.device.sign(0, bytes(record_differs.to_bytes()))),
            Reason.BAD_SIGNATURE,
        ),
        ("DER signature", w.args(signature=_der(w.signature)), Reason.MALFORMED_SIGNATURE),
        ("short signature", w.args(signature=w.signature[:63]), Reason.MALFORMED_SIGNATURE),
        ("r = 0", w.args(signature=bytes(32) + w.signature[32:]), Reason.MALFORMED_SIGNATURE),
        (
            "s = n",
            w.args(signature=w.signature[:32] + _N.to_bytes(32, "big")),
            Reason.MALFORMED_SIGNATURE,
        ),
        ("wrong user", w.args(registered_fingerprints={b"\x00" * 32}), Reason.NOT_REGISTERED),
        ("no certificate registered", w.args(registered_fingerprints=()), Reason.NOT_REGISTERED),
        ("revoked", w.args(revocation=revoked), Reason.REVOKED),
        ("revocation unknown: stale CRL", w.args(revocation=stale), Reason.REVOCATION_UNKNOWN),
        (
            "revocation unknown: no CRL",
            w.args(revocation=CrlRevocation([])),
            Reason.REVOCATION_UNKNOWN,
        ),
        (
            "revocation unknown: CRLs of another CA",
            w.args(revocation=foreign_crls),
            Reason.REVOCATION_UNKNOWN,
        ),
        (
            "revocation unknown: source fails",
            w.args(revocation=Failing()),
            Reason.REVOCATION_UNKNOWN,
        ),
        (
            "revocation unknown: source says so",
            w.args(revocation=SaysUnknown()),
            Reason.REVOCATION_UNKNOWN,
        ),
        (
            "other CA",
            w.args(
                certificate=other_der,
                revocation=foreign_crls,
                signature=w.device.sign(1, w.payload),
                registered_fingerprints={certificate_fingerprint(other_der)},
            ),
            Reason.UNTRUSTED_CHAIN,
        ),
        (
            "self-signed leaf",
            w.args_for_leaf(k_self, d_self, revocation=good),
            Reason.UNTRUSTED_CHAIN,
        ),
        (
            "unknown critical extension",
            w.args_for_leaf(k_crit, d_crit, revocation=good),
            Reason.UNTRUSTED_CHAIN,
        ),
        ("expired certificate", w.args_for_leaf(k_exp, d_exp, revocation=good), Reason.EXPIRED),
        ("not yet valid", w.args_for_leaf(k_nyv, d_nyv, revocation=good), Reason.NOT_YET_VALID),
        (
            "key usage without digitalSignature",
            w.args_for_leaf(k_ku, d_ku, revocation=good),
            Reason.KEY_USAGE,
        ),
        (
            "key usage not critical",
            w.args_for_leaf(k_kuc, d_kuc, revocation=good),
            Reason.KEY_USAGE,
        ),
        ("CA certificate as leaf", w.args_for_leaf(k_ca, d_ca, revocation=good), Reason.KEY_USAGE),
        ("other policy", w.args_for_leaf(k_pol, d_pol, revocation=good), Reason.POLICY),
        (
            "P-384 key",
            w.args(
                certificate=d_384,
                revocation=good,
                registered_fingerprints={certificate_fingerprint(d_384)},
            ),
            Reason.ALGORITHM,
        ),
        (
            "garbage certificate",
            w.args(certificate=b"\x30\x03\x02\x01\x01"),
            Reason.MALFORMED_INPUT,
        ),
        ("certificate not bytes", w.args(certificate=12), Reason.MALFORMED_INPUT),
        (
            "high-s form is fine, but then the record differs",
            w.args(signature=high_s, expected=_expected(record_differs)),
            Reason.PAYLOAD_MISMATCH,
        ),
    ]


_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _high_s(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:], "big")
    return sig[:32] + (_N - s).to_bytes(32, "big")


def _der(sig: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


def test_every_refusal_looks_the_same_outside_and_has_its_own_reason(world):
    cases = _cases(world)
    outward = set()
    for name, args, reason in cases:
        exc = refusal(args)
        assert exc.reason is reason, name
        outward.add((str(exc), repr(exc), exc.args))
        assert reason.value not in str(exc) + repr(exc)
    assert outward == {
        ("signature refused", "InvalidSignature('signature refused')", ("signature refused",))
    }
    # every reason the verifier knows is reachable
    assert {reason for _, _, reason in cases} == set(Reason)


def test_high_s_signature_is_accepted(world):
    verify_signature(**world.args(signature=_high_s(world.signature)))


def test_reason_survives_pickling_for_the_audit(world):
    exc = refusal(world.args(registered_fingerprints=()))
    again = pickle.loads(pickle.dumps(exc))
    assert again.reason is Reason.NOT_REGISTERED and str(again) == "signature refused"


def test_revocation_takes_effect_despite_the_cache(world):
    verify_signature(**world.args())
    verify_signature(**world.args())  # cached chain
    crls = world.ca.revoke(f"{world.cert.serial_number:x}", now=NOW)
    assert refusal(world.args(revocation=CrlRevocation(crls))).reason is Reason.REVOKED


def test_validity_is_checked_at_every_call_despite_the_cache(world):
    verify_signature(**world.args())
    end = world.cert.not_valid_after_utc
    crls = CrlRevocation(world.ca._make_crls(now=end, number=5))
    exp = ExpectedPayload(world.fields, end + dt.timedelta(seconds=300))
    late = world.args(revocation=crls, expected=exp, now=end + dt.timedelta(seconds=1))
    assert refusal(late).reason is Reason.EXPIRED
    verify_signature(**world.args(revocation=crls, expected=exp, now=end))


def test_certificate_not_registered_after_deactivation(world):
    """R19: the store drops the fingerprint when the certificate is deactivated; the very next
    verification fails, without waiting for a CRL."""
    fp = certificate_fingerprint(world.der)
    registered = {fp}
    verify_signature(**world.args(registered_fingerprints=registered))
    registered.discard(fp)
    assert refusal(world.args(registered_fingerprints=registered)).reason is Reason.NOT_REGISTERED


def test_client_chain_is_not_trusted(world, tmp_path):
    """Only the configured CAs count: a TrustConfig without the issuing CA cannot build a path,
    whatever the client would send."""
    bare = TrustConfig(anchors=(world.ca.root_certificate,), policy_oid=world.ca.policy_oid)
    assert refusal(world.args(trust=bare)).reason is Reason.UNTRUSTED_CHAIN


def test_policy_of_the_trust_config_decides(world):
    other = TrustConfig(
        anchors=(world.ca.root_certificate,),
        intermediates=(world.ca.issuing_certificate,),
        policy_oid=x509.ObjectIdentifier("2.25.2"),
    )
    assert refusal(world.args(trust=other)).reason is Reason.POLICY


def test_trust_config_refuses_weak_or_ambiguous_settings(world):
    with pytest.raises(ValueError):
        TrustConfig(anchors=(), policy_oid=world.ca.policy_oid)
    with pytest.raises(TypeError):
        TrustConfig(anchors=(world.der,), policy_oid=world.ca.policy_oid)
    with pytest.raises(TypeError):
        TrustConfig(anchors=(world.ca.root_certificate,), policy_oid="2.25.1")
    with pytest.raises(ValueError):
        TrustConfig(
            anchors=(world.ca.root_certificate,), policy_oid=world.ca.policy_oid, algorithms=()
        )


def test_expected_payload_needs_aware_time_and_payload_fields(world):
    with pytest.raises(TypeError):
        ExpectedPayload(world.fields, dt.datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        ExpectedPayload(world.payload, NOW)
    with pytest.raises(TypeError):
        verify_signature(**world.args(now=dt.datetime(2026, 11, 27, 14, 1)))
