"""The bank's certificate authority for certificate keys, on `cryptography.x509`.

Two levels: a root CA (the trust anchor the verifier is configured with) and an issuing CA that
signs the device keys' certificates and the CRL of those certificates; the root signs the issuing
CA certificate and its own CRL (the revocation list of CA certificates). The verifier needs a
current CRL for every certificate below the root (`CertificateAuthority.revocation`).

A device key is certified only with an attestation that verifies under the attestation public key
recorded for that device at provisioning (`provision_device`, the factory step: see
docs/threat-model.md) and that names the very public key being certified.

State lives in one folder:

    ca.json            name, policy OID, lifetimes
    root.crt.pem       root certificate             root.key.pem      its key, encrypted
    issuing.crt.pem    issuing CA certificate       issuing.key.pem   its key, encrypted
    devices.json       device serial -> attestation public key (provisioning registry)
    issued.json        every certificate issued: subject, device, slot, revocation
    root.crl.pem, issuing.crl.pem   the latest CRLs

Keys at rest are PKCS#8 encrypted with `BestAvailableEncryption(password)`; clear keys need an
explicit `NoEncryption()` (R18). The signing keys are `ec.EllipticCurvePrivateKey` objects: an HSM
or KMS key that implements that interface (registered with the ABC) can replace a software key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..errors import Error
from .attestation import Attestation, AttestationError, load_public_key
from .verifier import CrlRevocation, TrustConfig

__all__ = [
    "DEFAULT_POLICY_OID",
    "CaError",
    "CertificateAuthority",
    "DeviceRecord",
    "IssuedRecord",
    "RevocationReason",
]

#: The capkey demo bank's certificate policy, under the UUID arc 2.25 (ITU-T X.667), which anyone
#: may allocate from without registration. A real bank configures its own policy OID.
DEFAULT_POLICY_OID = x509.ObjectIdentifier("2.25.145721884933017529066407493279194584098")

_ROOT_DAYS = 20 * 365
_ISSUING_DAYS = 10 * 365
_CERT_DAYS = 2 * 365
_CRL_DAYS = 7
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class CaError(Error):
    """A CA operation was refused (bad attestation, unknown device, bad input, wrong state)."""


class RevocationReason(Enum):
    unspecified = x509.ReasonFlags.unspecified
    key_compromise = x509.ReasonFlags.key_compromise
    affiliation_changed = x509.ReasonFlags.affiliation_changed
    superseded = x509.ReasonFlags.superseded
    cessation_of_operation = x509.ReasonFlags.cessation_of_operation


@dataclass(frozen=True)
class DeviceRecord:
    serial: str
    attestation_key: str  # uncompressed point, hex
    provisioned_at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class IssuedRecord:
    serial_number: str  # certificate serial, hex
    fingerprint: str  # SHA-256 of the DER certificate, hex
    subscription: str
    user: str
    device_serial: str
    slot: int
    not_before: str
    not_after: str
    pem: str
    revoked_at: str | None = None
    reason: str | None = None


def _utc(now: dt.datetime) -> dt.datetime:
    if not isinstance(now, dt.datetime) or now.tzinfo is None:
        raise TypeError("now must be a timezone-aware datetime")
    return now.astimezone(dt.UTC).replace(microsecond=0)


def _check_ident(name: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 32 or not set(value) <= _IDENT_CHARS:
        raise CaError(f"{name}: 1 to 32 characters of A-Z a-z 0-9 - _ .")
    return value


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _ca_certificate(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    issuer_public_key: ec.EllipticCurvePublicKey,
    path_length: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
        .sign(signing_key, hashes.SHA256())
    )


class CertificateAuthority:
    """The bank CA kept in `directory`. Create one with `create`, open it with `load`."""

    def __init__(
        self,
        directory: Path,
        *,
        name: str,
        policy_oid: x509.ObjectIdentifier,
        root_certificate: x509.Certificate,
        root_key: ec.EllipticCurvePrivateKey,
        issuing_certificate: x509.Certificate,
        issuing_key: ec.EllipticCurvePrivateKey,
        certificate_days: int = _CERT_DAYS,
        crl_days: int = _CRL_DAYS,
    ):
        self.directory = Path(directory)
        self.name = name
        self.policy_oid = policy_oid
        self.root_certificate = root_certificate
        self.issuing_certificate = issuing_certificate
        self._root_key = root_key
        self._issuing_key = issuing_key
        self.certificate_days = certificate_days
        self.crl_days = crl_days

    # -- creation and loading --

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        name: str,
        encryption: serialization.KeySerializationEncryption,
        now: dt.datetime,
        policy_oid: x509.ObjectIdentifier = DEFAULT_POLICY_OID,
        certificate_days: int = _CERT_DAYS,
        crl_days: int = _CRL_DAYS,
        root_key: ec.EllipticCurvePrivateKey | None = None,
        issuing_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> CertificateAuthority:
        """Make the root and issuing CA in an empty or new `directory`. `encryption` is
        `BestAvailableEncryption(password)`, or `NoEncryption()` to store the keys in clear."""
        if not isinstance(encryption, serialization.KeySerializationEncryption):
            raise TypeError("encryption must be BestAvailableEncryption(...) or NoEncryption()")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise CaError("the CA name is 1 to 64 characters")
        if not 1 <= certificate_days <= _ISSUING_DAYS or not 1 <= crl_days <= 366:
            raise CaError("certificate_days or crl_days out of range")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise CaError(f"{path} is not empty")
        now = _utc(now)
        root_key = root_key or ec.generate_private_key(ec.SECP256R1())
        issuing_key = issuing_key or ec.generate_private_key(ec.SECP256R1())
        org = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)]
        root_name = x509.Name([*org, x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA")])
        issuing_name = x509.Name(
            [*org, x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Certificate Key CA")]
        )
        root_cert = _ca_certificate(
            subject=root_name,
            issuer=root_name,
            public_key=root_key.public_key(),
            signing_key=root_key,
            issuer_public_key=root_key.public_key(),
            path_length=1,
            not_before=now,
            not_after=now + dt.timedelta(days=_ROOT_DAYS),
        )
        issuing_cert = _ca_certificate(
            subject=issuing_name,
            issuer=root_name,
            public_key=issuing_key.public_key(),
            signing_key=root_key,
            issuer_public_key=root_key.public_key(),
            path_length=0,
            not_before=now,
            not_after=now + dt.timedelta(days=_ISSUING_DAYS),
        )
        ca = cls(
            path,
            name=name,
            policy_oid=policy_oid,
            root_certificate=root_cert,
            root_key=root_key,
            issuing_certificate=issuing_cert,
            issuing_key=issuing_key,
            certificate_days=certificate_days,
            crl_days=crl_days,
        )
        config = {
            "name": name,
            "policy_oid": policy_oid.dotted_string,
            "certificate_days": certificate_days,
            "crl_days": crl_days,
        }
        _write_atomic(path / "ca.json", json.dumps(config, indent=1).encode())
        for stem, cert, key in (
            ("root", root_cert, root_key),
            ("issuing", issuing_cert, issuing_key),
        ):
            _write_atomic(path / f"{stem}.crt.pem", cert.public_bytes(serialization.Encoding.PEM))
            key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
            _write_atomic(path / f"{stem}.key.pem", key_pem, mode=0o600)
        ca._save_json("devices.json", {})
        ca._save_json("issued.json", [])
        ca.publish_crls(now=now)
        return ca

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, password: bytes | None
    ) -> CertificateAuthority:
        """Open the CA in `directory`; `password` decrypts its keys (None for clear keys)."""
        path = Path(directory)
        try:
            config = json.loads((path / "ca.json").read_text())
            certs = {
                stem: x509.load_pem_x509_certificate((path / f"{stem}.crt.pem").read_bytes())
                for stem in ("root", "issuing")
            }
            keys = {
                stem: serialization.load_pem_private_key(
                    (path / f"{stem}.key.pem").read_bytes(), password
                )
                for stem in ("root", "issuing")
            }
        except FileNotFoundError as exc:
            raise CaError(f"no CA in {path} ({exc.filename} missing)") from None
        except (TypeError, ValueError):
            raise CaError("the CA keys cannot be opened: wrong or missing password") from None
        for key in keys.values():
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CaError("the CA keys must be EC keys")
        return cls(
            path,
            name=config["name"],
            policy_oid=x509.ObjectIdentifier(config["policy_oid"]),
            root_certificate=certs["root"],
            root_key=keys["root"],  # type: ignore[arg-type]
            issuing_certificate=certs["issuing"],
            issuing_key=keys["issuing"],  # type: ignore[arg-type]
            certificate_days=int(config["certificate_days"]),
            crl_days=int(config["crl_days"]),
        )

    # -- persistence --

    def _load_json(self, name: str):
        return json.loads((self.directory / name).read_text())

    def _save_json(self, name: str, value: object) -> None:
        _write_atomic(self.directory / name, json.dumps(value, indent=1).encode())

    # -- devices (provisioning) --

    def provision_device(
        self, serial: str, attestation_public_key: bytes, *, now: dt.datetime
    ) -> DeviceRecord:
        """Record a device's attestation public key (65-byte uncompressed point) at the factory.
        A serial is provisioned once; the same key again is a no-op, another key is refused."""
        if (
            not isinstance(serial, str)
            or not 1 <= len(serial) <= 32
            or not set(serial) <= set("0123456789abcdef")
        ):
            raise CaError("device serial: 1 to 32 lower-case hex digits")
        try:
            load_public_key(attestation_public_key)
        except AttestationError as exc:
            raise CaError(f"attestation key: {exc}") from None
        devices = self._load_json("devices.json")
        record = DeviceRecord(serial, bytes(attestation_public_key).hex(), _utc(now).isoformat())
        existing = devices.get(serial)
        if existing is not None:
            if existing["attestation_key"] != record.attestation_key:
                raise CaError(f"device {serial} is already provisioned with another key")
            return DeviceRecord(**existing)
        devices[serial] = asdict(record)
        self._save_json("devices.json", devices)
        return record

    def devices(self) -> list[DeviceRecord]:
        return [DeviceRecord(**d) for d in self._load_json("devices.json").values()]

    def _attestation_key(self, serial: str) -> ec.EllipticCurvePublicKey:
        record = self._load_json("devices.json").get(serial)
        if record is None:
            raise CaError(f"device {serial} was never provisioned")
        return load_public_key(bytes.fromhex(record["attestation_key"]))

    # -- certificates --

    def issue_certificate(
        self,
        public_key: ec.EllipticCurvePublicKey | bytes,
        attestation: Attestation | bytes,
        subscription: str,
        user: str,
        *,
        now: dt.datetime,
        days: int | None = None,
    ) -> x509.Certificate:
        """Certify a device key for (subscription, user) after checking its attestation: it must
        parse, come from a provisioned device, verify under that device's attestation key and
        name exactly `public_key`. The certificate: keyUsage digitalSignature (critical),
        basicConstraints CA=false (critical), the bank's certificate policy, subject
        O=<bank>, OU=<subscription> (Identifiant client), UID=<user> (numéro Utilisateur),
        CN="<subscription> <user>"; valid `days` (default: the CA's) from `now`, never past the
        issuing CA's own end."""
        now = _utc(now)
        subscription = _check_ident("subscription", subscription)
        user = _check_ident("user", user)
        try:
            if isinstance(public_key, bytes | bytearray):
                public_key = load_public_key(bytes(public_key))
            att = attestation if isinstance(attestation, Attestation) else Attestation(attestation)
        except AttestationError as exc:
            raise CaError(f"attestation refused: {exc}") from None
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise CaError("only P-256 keys are certified")
        try:
            att.verify(self._attestation_key(att.serial))
        except AttestationError as exc:
            raise CaError(f"attestation refused: {exc}") from None
        if att.public_key() != public_key:
            raise CaError("attestation refused: it names another public key")
        days = self.certificate_days if days is None else days
        if not 1 <= days <= _ISSUING_DAYS:
            raise CaError("validity out of range")
        not_after = min(now + dt.timedelta(days=days), self.issuing_certificate.not_valid_after_utc)
        if not_after <= now:
            raise CaError("the issuing CA has expired")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, subscription),
                x509.NameAttribute(NameOID.USER_ID, user),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{subscription} {user}"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.issuing_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.CertificatePolicies([x509.PolicyInformation(self.policy_oid, None)]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._issuing_key.public_key()),
                critical=False,
            )
            .sign(self._issuing_key, hashes.SHA256())
        )
        issued = self._load_json("issued.json")
        issued.append(
            asdict(
                IssuedRecord(
                    serial_number=f"{cert.serial_number:x}",
                    fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
                    subscription=subscription,
                    user=user,
                    device_serial=att.serial,
                    slot=att.slot,
                    not_before=now.isoformat(),
                    not_after=not_after.isoformat(),
                    pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                )
            )
        )
        self._save_json("issued.json", issued)
        return cert

    def issued(self) -> list[IssuedRecord]:
        return [IssuedRecord(**r) for r in self._load_json("issued.json")]

    def find(self, ref: str) -> IssuedRecord:
        """An issued certificate by serial number (hex) or SHA-256 fingerprint (hex)."""
        ref = ref.lower().removeprefix("0x").replace(":", "")
        matches = [r for r in self.issued() if ref in (r.serial_number, r.fingerprint)]
        if len(matches) != 1:
            raise CaError(f"no issued certificate {ref}")
        return matches[0]

    def revoke(
        self,
        ref: str,
        *,
        now: dt.datetime,
        reason: RevocationReason = RevocationReason.unspecified,
    ) -> list[x509.CertificateRevocationList]:
        """Revoke an issued certificate (serial or fingerprint, hex) and publish new CRLs at once.
        Revoking twice is refused. Returns the new CRLs."""
        now = _utc(now)
        record = self.find(ref)
        if record.revoked_at is not None:
            raise CaError(f"certificate {record.serial_number} is already revoked")
        issued = self._load_json("issued.json")
        for r in issued:
            if r["serial_number"] == record.serial_number:
                r["revoked_at"] = now.isoformat()
                r["reason"] = reason.name
        self._save_json("issued.json", issued)
        return self.publish_crls(now=now)

    # -- CRLs and the verifier's view --

    def _make_crls(self, *, now: dt.datetime, number: int) -> list[x509.CertificateRevocationList]:
        """Fresh CRLs (valid from `now` for `crl_days`): the root's over CA certificates (empty:
        the issuing CA is never revoked in place, a new CA is made instead) and the issuing CA's
        over the certificates it issued."""
        now = _utc(now)
        next_update = now + dt.timedelta(days=self.crl_days)
        revoked = [r for r in self.issued() if r.revoked_at is not None]
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuing_certificate.subject)
            .last_update(now)
            .next_update(next_update)
        )
        for r in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(r.serial_number, 16))
                .revocation_date(dt.datetime.fromisoformat(r.revoked_at))  # type: ignore[arg-type]
                .add_extension(
                    x509.CRLReason(RevocationReason[r.reason or "unspecified"].value),
                    critical=False,
                )
                .build()
            )
        issuing_crl = self._with_crl_extensions(builder, self._issuing_key, number)
        root_crl = self._with_crl_extensions(
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.root_certificate.subject)
            .last_update(now)
            .next_update(next_update),
            self._root_key,
            number,
        )
        return [root_crl, issuing_crl]

    def _with_crl_extensions(
        self,
        builder: x509.CertificateRevocationListBuilder,
        key: ec.EllipticCurvePrivateKey,
        number: int,
    ) -> x509.CertificateRevocationList:
        return (
            builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
            .add_extension(x509.CRLNumber(number), critical=False)
            .sign(key, hashes.SHA256())
        )

    def publish_crls(self, *, now: dt.datetime) -> list[x509.CertificateRevocationList]:
        """Make fresh CRLs with the next CRL number and write them to root.crl.pem and
        issuing.crl.pem. Run it at least every `crl_days` (a stale CRL makes every verification
        fail: revocation unknown)."""
        config = self._load_json("ca.json")
        number = int(config.get("crl_number", 0)) + 1
        root_crl, issuing_crl = self._make_crls(now=now, number=number)
        for stem, crl in (("root", root_crl), ("issuing", issuing_crl)):
            _write_atomic(
                self.directory / f"{stem}.crl.pem", crl.public_bytes(serialization.Encoding.PEM)
            )
        config["crl_number"] = number
        self._save_json("ca.json", config)
        return [root_crl, issuing_crl]

    def published_crls(self) -> list[x509.CertificateRevocationList]:
        return [
            x509.load_pem_x509_crl((self.directory / f"{stem}.crl.pem").read_bytes())
            for stem in ("root", "issuing")
        ]

    def trust_config(self) -> TrustConfig:
        """The verifier's trust settings for this CA."""
        return TrustConfig(
            anchors=(self.root_certificate,),
            intermediates=(self.issuing_certificate,),
            policy_oid=self.policy_oid,
        )

    def revocation(
        self, crls: Iterable[x509.CertificateRevocationList] | None = None
    ) -> CrlRevocation:
        """A revocation source over `crls` (default: the published ones)."""
        return CrlRevocation(self.published_crls() if crls is None else crls)


def load_trust(directory: str | os.PathLike[str]) -> tuple[TrustConfig, CrlRevocation]:
    """The verifier's side of a CA folder, from its public files only (certificates, ca.json,
    published CRLs): what a verifying service needs, without the CA's keys or their password."""
    path = Path(directory)
    try:
        config = json.loads((path / "ca.json").read_text())
        root, issuing = (x509.load_pem_x509_certificate((path / f"{stem}.crt.pem").read_bytes())
                         for stem in ("root", "issuing"))
        crls = [x509.load_pem_x509_crl((path / f"{stem}.crl.pem").read_bytes())
                for stem in ("root", "issuing")]
        trust = TrustConfig(anchors=(root,), intermediates=(issuing,),
                            policy_oid=x509.ObjectIdentifier(config["policy_oid"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CaError(f"{path}: not a CA folder ({exc})") from exc
    return trust, CrlRevocation(crls)
