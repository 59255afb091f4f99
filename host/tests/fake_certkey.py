"""TEST DOUBLE of the certificate key's behaviour, for host unit tests only.

It models what firmware/applets/signer.py does as seen from the host (attestation key, key slots,
attested key generation, certificate storage, signing of canonical payloads after the person
confirms) with `cryptography` keys, so the CA, the verifier and the agent can be tested without a
device. It proves nothing about the device: device integration is tested by hil_tests/ against
the simulator and real boards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from capkey.cert.attestation import Attestation
from capkey.cert.payload import SignedPayload


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


@dataclass
class FakeCertKey:
    serial: str = "e6614103e7a1b22c"
    firmware: str = "0.1.0"
    attestation_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    slots: dict[int, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    certificates: dict[int, bytes] = field(default_factory=dict)
    shown: list[list[str]] = field(default_factory=list)
    person_confirms: bool = True

    def attestation_public_key(self) -> bytes:
        return point(self.attestation_key.public_key())

    def generate(self, slot: int) -> tuple[bytes, Attestation]:
        key = ec.generate_private_key(ec.SECP256R1())
        self.slots[slot] = key
        self.certificates.pop(slot, None)
        statement = Attestation.build_statement(
            slot=slot, serial=self.serial, firmware=self.firmware, public_key=key.public_key()
        )
        return point(key.public_key()), Attestation(
            statement + raw_signature(self.attestation_key, statement)
        )

    def load_certificate(self, slot: int, der: bytes) -> None:
        if slot not in self.slots:
            raise ValueError("empty slot")
        self.certificates[slot] = der

    def sign(self, slot: int, payload: bytes) -> bytes:
        """Parse (refusing non-canonical bytes), show, wait for the person, sign r||s."""
        parsed = SignedPayload(payload)
        self.shown.append(parsed.display_lines())
        if not self.person_confirms:
            raise PermissionError("ANNULER")
        return raw_signature(self.slots[slot], bytes(parsed))


class FakeKeyLink:
    """TEST DOUBLE of the device's link for the key commands as docs/protocol.md specifies them
    ("Certificate key commands"), on a FakeCertKey: answers `call(cmd, payload, ...)` as
    capkey.link.device.Device does. `chosen_slot` is the certificate the person picks on the device;
    `refuse` makes the person press ANNULER."""

    def __init__(self, key: FakeCertKey, *, chosen_slot: int = 0):
        self.key = key
        self.chosen_slot = chosen_slot
        self.refuse = False
        self.calls: list[tuple[int, bytes]] = []
        self._loading = bytearray()

    def info(self):
        from capkey.link.device import DeviceInfo

        return DeviceInfo(firmware_version=self.key.firmware, board="sim", serial=self.key.serial)

    def call(self, cmd, payload=b"", *, timeout=5.0, cancel=None, on_keepalive=None):
        from cryptography import x509

        from capkey.link.errors import LinkError, error_for
        from capkey.link.key import Cmd

        def fail(code, data=b""):
            raise error_for(code, data)

        self.calls.append((int(cmd), bytes(payload)))
        key = self.key
        if cmd == Cmd.KEY_STATUS:
            out = bytearray((1, 1 if key.slots else 0, 8, 3, 8, 3, 4))
            for slot in range(4):
                flags = (1 if slot in key.slots else 0) | (2 if slot in key.certificates else 0)
                out += bytes((slot, flags))
                if flags & 1:
                    out += point(key.slots[slot].public_key())
                if flags & 2:
                    cert = x509.load_der_x509_certificate(key.certificates[slot])
                    subject = cert.subject.public_bytes()
                    out += len(subject).to_bytes(2, "big") + subject
            return bytes(out)
        if cmd == Cmd.KEY_READ_CERT:
            der = key.certificates.get(payload[0])
            if der is None:
                fail(LinkError.ERR.NOT_PERSONALISED)
            offset = int.from_bytes(payload[1:3], "big")
            return len(der).to_bytes(2, "big") + der[offset : offset + 1000]
        if cmd == Cmd.KEY_ATTESTATION_KEY:
            return key.attestation_public_key()
        if cmd == Cmd.KEY_GENERATE:
            if payload[0] in key.slots:
                fail(LinkError.ERR.WRONG_STATE)
            if on_keepalive:
                on_keepalive(2)
                on_keepalive(2)
                on_keepalive(1)
            return bytes(key.generate(payload[0])[1])
        if cmd == Cmd.KEY_LOAD_CERT:
            slot, offset = payload[0], int.from_bytes(payload[1:3], "big")
            total = int.from_bytes(payload[3:5], "big")
            if offset == 0:
                self._loading = bytearray()
            if offset != len(self._loading):
                fail(LinkError.ERR.INVALID_PARAMETER)
            self._loading += payload[5:]
            if len(self._loading) == total:
                key.load_certificate(slot, bytes(self._loading))
            return b""
        if cmd == Cmd.KEY_SIGN:
            slot = self.chosen_slot
            if slot not in key.certificates:
                fail(LinkError.ERR.NOT_PERSONALISED)
            if on_keepalive:
                on_keepalive(2)
            if self.refuse or (cancel is not None and cancel.is_set()):
                fail(LinkError.ERR.DENIED)
            return bytes((slot,)) + key.sign(slot, bytes(payload))
        if cmd == Cmd.KEY_DELETE:
            key.slots.pop(payload[0], None)
            key.certificates.pop(payload[0], None)
            return b""
        fail(LinkError.ERR.UNKNOWN_COMMAND)
