"""Verify a certificate-key signature for the bank (rules.md R7, R8, R9, R16, R17, R19).

Pure: no I/O, no clock, no global state. The caller passes the signed payload and signature as
received, the certificate the client presented, the server's own record of what should have been
signed (`ExpectedPayload`), the trust configuration, a revocation source, the fingerprints of the
certificates registered to the user, and `now`.

`verify_signature(...)` returns None or raises `InvalidSignature`, whose text is the same for
every failure: a portal or API that forwards it cannot become an oracle. The precise reason is on
`exc.reason` (a `Reason`) for the audit trail only; `check_signature(...)` returns it as a
`Verdict` for callers that record outcomes without exceptions.

What the client claims (PIN verified, middleware version, "new computer") is not an input: only
the cryptographic evidence is (R17).

Parsed certificate chains and CRL look-ups are cached per certificate, so a verification costs
one ECDSA verify plus dictionary look-ups (docs/targets.md: >= 0.8x the bare verify rate).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import Enum, unique
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import verification as _v
from cryptography.x509.oid import SignatureAlgorithmOID

from ..errors import Error
from . import payload as _payload

__all__ = [
    "Algorithm",
    "CrlRevocation",
    "ExpectedPayload",
    "InvalidSignature",
    "Reason",
    "RevocationSource",
    "RevocationStatus",
    "TrustConfig",
    "Verdict",
    "certificate_fingerprint",
    "check_signature",
    "verify_signature",
]

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SIGNATURE_SIZE = 64
_MAX_CHAIN_DEPTH = 3
_CACHE_LIMIT = 4096


@unique
class Algorithm(Enum):
    """Signature algorithms a bank may allow for the device signature."""

    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"


@unique
class Reason(Enum):
    """Why a signature was refused: for the audit trail, never for the client."""

    MALFORMED_INPUT = "malformed_input"
    MALFORMED_SIGNATURE = "malformed_signature"
    MALFORMED_PAYLOAD = "malformed_payload"
    UNTRUSTED_CHAIN = "untrusted_chain"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    KEY_USAGE = "key_usage"
    POLICY = "policy"
    ALGORITHM = "algorithm"
    REVOCATION_UNKNOWN = "revocation_unknown"
    REVOKED = "revoked"
    NOT_REGISTERED = "not_registered"
    BAD_SIGNATURE = "bad_signature"
    CHALLENGE_MISMATCH = "challenge_mismatch"
    CHALLENGE_EXPIRED = "challenge_expired"
    PAYLOAD_MISMATCH = "payload_mismatch"


class InvalidSignature(Error):
    """The signature is refused. The message never says why; `reason` does, for the audit."""

    def __init__(self, reason: Reason):
        super().__init__("signature refused")
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidSignature], tuple[Reason]]:  # keep `reason` when pickled
        return (type(self), (self.reason,))


@dataclass(frozen=True)
class Verdict:
    reason: Reason | None  # None: accepted

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class ExpectedPayload:
    """The server's own record of the operation: the payload fields it expects (rebuilt from its
    transaction record, including the challenge it issued) and when that challenge expires.
    Single use is the store's job: it consumes the challenge atomically (R9)."""

    fields: _payload.Payload
    expires_at: dt.datetime

    def __post_init__(self) -> None:
        if not isinstance(self.fields, _payload.Payload):
            raise TypeError("fields must be a capkey.cert.payload payload")
        _check_aware("expires_at", self.expires_at)
        # Encoded once: the comparison is over bytes.
        object.__setattr__(self, "_bytes", bytes(self.fields.to_bytes()))


@unique
class RevocationStatus(Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class RevocationSource(Protocol):
    def status(
        self, certificate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> RevocationStatus: ...


class CrlRevocation:
    """Revocation from CRLs. A certificate's status is GOOD only if a CRL from its issuer, with a
    valid signature by the issuer's key, covers `now` (this_update <= now < next_update) and does
    not list its serial number; REVOKED if listed (and the revocation date is not in the future);
    otherwise UNKNOWN. Immutable: load new CRLs into a new instance."""

    def __init__(self, crls: Iterable[x509.CertificateRevocationList]):
        self._by_issuer: dict[bytes, list[_CrlEntry]] = {}
        for crl in crls:
            if not isinstance(crl, x509.CertificateRevocationList):
                raise TypeError("crls must be x509.CertificateRevocationList objects")
            entry = _CrlEntry(crl)
            self._by_issuer.setdefault(entry.issuer_der, []).append(entry)
        # id(issuer certificate) -> (that certificate, the CRLs with its name and a valid
        # signature by its key). Keyed by identity because the verifier passes the same parsed
        # chain objects on every call; the stored reference keeps the id from being reused.
        self._for_issuer: dict[int, tuple[x509.Certificate, list[_CrlEntry]]] = {}

    def _entries(self, issuer: x509.Certificate) -> list[_CrlEntry]:
        hit = self._for_issuer.get(id(issuer))
        if hit is not None and hit[0] is issuer:
            return hit[1]
        candidates = self._by_issuer.get(issuer.subject.public_bytes(), [])
        entries = [e for e in candidates if e.signed_by(issuer)]
        if len(self._for_issuer) >= _CACHE_LIMIT:
            self._for_issuer.clear()
        self._for_issuer[id(issuer)] = (issuer, entries)
        return entries

    def status(
        self, certificate: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
    ) -> RevocationStatus:
        result = RevocationStatus.UNKNOWN
        for entry in self._entries(issuer):
            if not entry.this_update <= now < entry.next_update:
                continue
            revoked_at = entry.revoked.get(certificate.serial_number)
            if revoked_at is not None and revoked_at <= now:
                return RevocationStatus.REVOKED
            result = RevocationStatus.GOOD
        return result


class _CrlEntry:
    def __init__(self, crl: x509.CertificateRevocationList):
        self.crl = crl
        self.issuer_der = crl.issuer.public_bytes()
        self.this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        # A CRL without nextUpdate can never be shown current: it never makes a status known.
        self.next_update = next_update if next_update is not None else self.this_update
        self.revoked = {r.serial_number: r.revocation_date_utc for r in crl}

    def signed_by(self, issuer: x509.Certificate) -> bool:
        try:
            return self.crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False


def certificate_fingerprint(certificate: x509.Certificate | bytes) -> bytes:
    """SHA-256 over the DER certificate: the value the store registers per user."""
    if isinstance(certificate, x509.Certificate):
        return certificate.fingerprint(hashes.SHA256())
    return hashlib.sha256(certificate).digest()


@dataclass(frozen=True, eq=False)
class TrustConfig:
    """The bank's trust settings: its CA certificates (`anchors`, self-signed roots), the issuing
    CA certificates a client need not send (`intermediates`), the certificate policy OID the
    leaf must carry, and the allowed signature algorithms. Holds the per-certificate cache."""

    anchors: tuple[x509.Certificate, ...]
    policy_oid: x509.ObjectIdentifier
    intermediates: tuple[x509.Certificate, ...] = ()
    algorithms: frozenset[Algorithm] = frozenset({Algorithm.ECDSA_P256_SHA256})
    _cache: dict[bytes, _Checked | Reason] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchors", tuple(self.anchors))
        object.__setattr__(self, "intermediates", tuple(self.intermediates))
        object.__setattr__(self, "algorithms", frozenset(self.algorithms))
        if not self.anchors:
            raise ValueError("TrustConfig needs at least one bank CA certificate")
        for cert in self.anchors + self.intermediates:
            if not isinstance(cert, x509.Certificate):
                raise TypeError("anchors and intermediates must be x509.Certificate objects")
        if not isinstance(self.policy_oid, x509.ObjectIdentifier):
            raise TypeError("policy_oid must be an x509.ObjectIdentifier")
        if not self.algorithms or not all(isinstance(a, Algorithm) for a in self.algorithms):
            raise ValueError("algorithms must be a non-empty set of Algorithm values")
        object.__setattr__(self, "_store", _v.Store(list(self.anchors)))

    # -- the cached, time-independent part of the certificate checks --

    def _checked(self, der: bytes) -> _Checked | Reason:
        hit = self._cache.get(der)
        if hit is not None:
            return hit
        result = self._check_certificate(der)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[der] = result
        return result

    def _check_certificate(self, der: bytes) -> _Checked | Reason:
        try:
            cert = x509.load_der_x509_certificate(der)
            key = cert.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):  # not a certificate, unknown key type
            return Reason.MALFORMED_INPUT
        # Algorithm: the leaf key and the CA's signature on it.
        if not (
            isinstance(key, ec.EllipticCurvePublicKey)
            and isinstance(key.curve, ec.SECP256R1)
            and Algorithm.ECDSA_P256_SHA256 in self.algorithms
        ):
            return Reason.ALGORITHM
        # Profile of the leaf, checked here (not by the path builder) to keep reasons distinct.
        try:
            reason = self._leaf_profile(cert)
        except ValueError:  # duplicate or unparsable extensions
            return Reason.MALFORMED_INPUT
        if reason is not None:
            return reason
        chain = self._build_chain(cert)
        if chain is None:
            return Reason.UNTRUSTED_CHAIN
        if any(
            c.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256 for c in chain[:-1]
        ):
            return Reason.ALGORITHM
        return _Checked(
            certificate=cert,
            public_key=key,
            fingerprint=hashlib.sha256(der).digest(),
            chain=tuple(chain),
            not_before=max(c.not_valid_before_utc for c in chain),
            not_after=min(c.not_valid_after_utc for c in chain),
        )

    def _leaf_profile(self, cert: x509.Certificate) -> Reason | None:
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        except x509.ExtensionNotFound:
            return Reason.KEY_USAGE
        if not usage.critical or not usage.value.digital_signature:
            return Reason.KEY_USAGE
        try:
            basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            if basic.value.ca:
                return Reason.KEY_USAGE
        except x509.ExtensionNotFound:
            pass
        try:
            policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        except x509.ExtensionNotFound:
            return Reason.POLICY
        if not any(p.policy_identifier == self.policy_oid for p in policies):
            return Reason.POLICY
        for ext in cert.extensions:
            if ext.critical and not isinstance(ext.value, x509.KeyUsage | x509.BasicConstraints):
                return Reason.UNTRUSTED_CHAIN  # an unknown critical extension (RFC 5280 4.2)
        return None

    def _build_chain(self, cert: x509.Certificate) -> list[x509.Certificate] | None:
        """Path validation by cryptography's RFC 5280 verifier. Validity against `now` is checked
        on every call from the chain's windows, so the path is validated at a time when the leaf
        is valid: its notBefore, or a later CA notBefore inside its validity."""
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        times = sorted(
            {start}
            | {
                c.not_valid_before_utc
                for c in self.anchors + self.intermediates
                if start < c.not_valid_before_utc <= end
            }
        )
        for when in times:
            verifier = (
                _v.PolicyBuilder()
                .store(self._store)  # type: ignore[attr-defined]
                .time(when)
                .max_chain_depth(_MAX_CHAIN_DEPTH)
                .extension_policies(
                    ca_policy=_v.ExtensionPolicy.webpki_defaults_ca(),
                    ee_policy=_v.ExtensionPolicy.permit_all(),
                )
                .build_client_verifier()
            )
            try:
                return list(verifier.verify(cert, list(self.intermediates)).chain)
            except _v.VerificationError:
                continue
        return None


@dataclass(frozen=True)
class _Checked:
    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    fingerprint: bytes
    chain: tuple[x509.Certificate, ...]  # leaf ... anchor
    not_before: dt.datetime
    not_after: dt.datetime


def _check_aware(name: str, value: object) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise TypeError(f"{name} must be a timezone-aware datetime")


def _as_der(certificate: object) -> bytes | None:
    if isinstance(certificate, x509.Certificate):
        from cryptography.hazmat.primitives.serialization import Encoding

        return certificate.public_bytes(Encoding.DER)
    if isinstance(certificate, bytes | bytearray | memoryview):
        return bytes(certificate)
    return None


def _signature_der(signature: object) -> bytes | None:
    if not isinstance(signature, bytes | bytearray | memoryview):
        return None
    raw = bytes(signature)
    if len(raw) != _SIGNATURE_SIZE:
        return None
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        return None
    return encode_dss_signature(r, s)


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def check_signature(
    *,
    payload: bytes | None = None,
    signature: bytes,
    certificate: x509.Certificate | bytes,
    expected: ExpectedPayload,
    trust: TrustConfig,
    revocation: RevocationSource,
    registered_fingerprints: Collection[bytes],
    now: dt.datetime,
) -> Verdict:
    """Every check of `verify_signature`, returning the first failing reason (or None).

    All checks run whatever fails first, so a refusal costs about what an acceptance costs."""
    if not isinstance(expected, ExpectedPayload) or not isinstance(trust, TrustConfig):
        raise TypeError("expected must be an ExpectedPayload and trust a TrustConfig")
    _check_aware("now", now)
    reasons: list[Reason] = []

    # The payload: exactly the bytes the server expects (R7/R8/R9).
    expected_bytes: bytes = expected._bytes  # type: ignore[attr-defined]
    if payload is None:
        payload = expected_bytes  # the client sent only a signature: verify over the record
    elif not isinstance(payload, bytes | bytearray | memoryview):
        reasons.append(Reason.MALFORMED_PAYLOAD)
        payload = b""
    payload = bytes(payload)
    if not hmac.compare_digest(payload, expected_bytes):
        reasons.append(_mismatch_reason(payload, expected))
    if now > expected.expires_at:
        reasons.append(Reason.CHALLENGE_EXPIRED)

    # The certificate (R16): cached chain and profile, then validity, registration, revocation.
    der = _as_der(certificate)
    checked = trust._checked(der) if der is not None else Reason.MALFORMED_INPUT
    if isinstance(checked, Reason):
        reasons.append(checked)
        public_key = None
    else:
        if now < checked.not_before:
            reasons.append(Reason.NOT_YET_VALID)
        elif now > checked.not_after:
            reasons.append(Reason.EXPIRED)
        if checked.fingerprint not in registered_fingerprints:
            reasons.append(Reason.NOT_REGISTERED)
        reasons.extend(_revocation_reasons(checked.chain, revocation, now))
        public_key = checked.public_key

    # The signature over the payload as received.
    sig_der = _signature_der(signature)
    if sig_der is None:
        reasons.append(Reason.MALFORMED_SIGNATURE)
    elif public_key is not None:
        try:
            public_key.verify(sig_der, payload, _ECDSA_SHA256)
        except _CryptoInvalidSignature:
            reasons.append(Reason.BAD_SIGNATURE)
    return Verdict(reasons[0] if reasons else None)


def _mismatch_reason(payload: bytes, expected: ExpectedPayload) -> Reason:
    try:
        received = _payload.parse(payload)
    except _payload.PayloadError:
        return Reason.MALFORMED_PAYLOAD
    if not hmac.compare_digest(received.challenge, expected.fields.challenge):
        return Reason.CHALLENGE_MISMATCH
    return Reason.PAYLOAD_MISMATCH


def _revocation_reasons(
    chain: tuple[x509.Certificate, ...], revocation: RevocationSource, now: dt.datetime
) -> list[Reason]:
    """Every certificate below the anchor needs a known, good status."""
    for cert, issuer in zip(chain[:-1], chain[1:], strict=True):
        try:
            status = revocation.status(cert, issuer, now)
        except Exception:  # a failing source is an unknown status, never a pass
            status = RevocationStatus.UNKNOWN
        if status is RevocationStatus.REVOKED:
            return [Reason.REVOKED]
        if status is not RevocationStatus.GOOD:
            return [Reason.REVOCATION_UNKNOWN]
    return []


def verify_signature(
    *,
    payload: bytes | None = None,
    signature: bytes,
    certificate: x509.Certificate | bytes,
    expected: ExpectedPayload,
    trust: TrustConfig,
    revocation: RevocationSource,
    registered_fingerprints: Collection[bytes],
    now: dt.datetime,
) -> None:
    """Accept (return None) or raise `InvalidSignature` with the reason on `exc.reason`.

    `payload`: the signed bytes as received (None: the client sent none, verify over the bytes
    rebuilt from `expected`); `signature`: raw r||s (64 bytes); `certificate`: the
    certificate presented (DER bytes or x509.Certificate); `expected`: the server's own record;
    `registered_fingerprints`: SHA-256 fingerprints of the certificates active for this user
    (see `certificate_fingerprint`); `now`: an aware datetime."""
    verdict = check_signature(
        payload=payload,
        signature=signature,
        certificate=certificate,
        expected=expected,
        trust=trust,
        revocation=revocation,
        registered_fingerprints=registered_fingerprints,
        now=now,
    )
    if verdict.reason is not None:
        raise InvalidSignature(verdict.reason)
