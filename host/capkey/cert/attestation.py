"""Device attestation of a new signing key (spec: docs/payloads.md, "Attestation").

When the certificate key generates a key pair in a slot it returns an attestation: a statement
naming the device (serial, firmware version), the slot and the new public key, signed by the
device's attestation key (made at provisioning, like PIV slot F9). The bank CA certifies a key only
if the statement verifies under the attestation public key it recorded for that device serial at
provisioning, so it certifies only keys generated inside a genuine device.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..errors import Error

__all__ = ["MAGIC", "Attestation", "AttestationError", "load_public_key", "SLOTS"]

MAGIC = b"CKAT"
VERSION = 1
SLOTS = range(4)
_POINT_SIZE = 65
_SIGNATURE_SIZE = 64
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SERIAL_CHARS = frozenset("0123456789abcdef")
_PRINTABLE = frozenset(chr(c) for c in range(0x21, 0x7F))


class AttestationError(Error, ValueError):
    """The attestation is malformed, or does not verify under the device's attestation key."""


def load_public_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its 65-byte uncompressed SEC1 encoding (0x04 || X || Y)."""
    if not isinstance(point, bytes | bytearray) or len(point) != _POINT_SIZE or point[0] != 4:
        raise AttestationError("public key must be 65 bytes, uncompressed")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(point))
    except ValueError:
        raise AttestationError("public key is not a point of P-256") from None


class Attestation(bytes):
    """`statement || signature` as returned by GENERATE. Parsed on construction; `verify` checks
    the signature over the statement bytes exactly as received.

    statement = "CKAT" version(1) slot(1) serial(str) firmware(str) public_key(65)
    str       = length(1) ASCII
    """

    slot: int
    serial: str
    firmware: str
    public_key_bytes: bytes
    statement: bytes
    signature: bytes

    def __new__(cls, data: bytes) -> Attestation:
        self = super().__new__(cls, data)
        raw = bytes(self)
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(raw):
                raise AttestationError("attestation is truncated")
            chunk = raw[pos : pos + n]
            pos += n
            return chunk

        def text(charset: frozenset[str]) -> str:
            value = take(take(1)[0])
            try:
                decoded = value.decode("ascii")
            except UnicodeDecodeError:
                raise AttestationError("attestation string is not ASCII") from None
            if not 1 <= len(decoded) <= 32 or not set(decoded) <= charset:
                raise AttestationError("attestation string is malformed")
            return decoded

        if take(4) != MAGIC or take(1)[0] != VERSION:
            raise AttestationError("not a version 1 attestation statement")
        self.slot = take(1)[0]
        if self.slot not in SLOTS:
            raise AttestationError("slot out of range")
        self.serial = text(_SERIAL_CHARS)
        self.firmware = text(_PRINTABLE)
        self.public_key_bytes = take(_POINT_SIZE)
        load_public_key(self.public_key_bytes)
        self.statement = raw[:pos]
        self.signature = take(_SIGNATURE_SIZE)
        if pos != len(raw):
            raise AttestationError("trailing bytes after the attestation")
        return self

    @classmethod
    def build_statement(
        cls, *, slot: int, serial: str, firmware: str, public_key: ec.EllipticCurvePublicKey
    ) -> bytes:
        """The statement bytes a device signs (used by the test double and by tests)."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        point = public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        s, f = serial.encode("ascii"), firmware.encode("ascii")
        return MAGIC + bytes((VERSION, slot, len(s))) + s + bytes((len(f),)) + f + point

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return load_public_key(self.public_key_bytes)

    def verify(self, attestation_key: ec.EllipticCurvePublicKey) -> None:
        """Raise AttestationError unless `signature` (raw r||s) verifies over `statement`."""
        r = int.from_bytes(self.signature[:32], "big")
        s = int.from_bytes(self.signature[32:], "big")
        if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
            raise AttestationError("attestation signature out of range")
        try:
            attestation_key.verify(
                encode_dss_signature(r, s), self.statement, ec.ECDSA(hashes.SHA256())
            )
        except InvalidSignature:
            raise AttestationError("attestation signature does not verify") from None
