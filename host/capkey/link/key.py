"""KeyClient: the certificate key functions of a capkey device (firmware/apps/key.py), over
`capkey.link.device.Device`.

    with Device.open(url) as dev:
        key = KeyClient(dev)
        for slot in key.status().slots: ...
        slot, signature = key.sign(payload, on_keepalive=print)   # the person picks the slot

Link commands 0x40-0x48 (docs/protocol.md, "Certificate key commands"; payloads and attestation
in docs/payloads.md). The PIN never crosses the link: GENERATE, SIGN, DELETE, CHANGE_PIN and
UNBLOCK_PIN wait for the person on the device (keepalives) and fail with DENIED (ANNULER), TIMEOUT,
PinInvalid(attempts_remaining) or PinBlocked.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, unique
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..cert.attestation import SLOTS, Attestation, AttestationError, load_public_key
from ..cert.payload import SignedPayload
from .errors import LinkError, ProtocolError

if TYPE_CHECKING:
    from .device import Device

__all__ = ["Cmd", "KeyClient", "KeyState", "KeyStatus", "SlotInfo", "enrol"]

# Waiting for a person: the device sends keepalives every 500 ms, each restarting this timeout.
_PERSON_TIMEOUT = 15.0
_CHUNK = 1000  # certificate bytes per KEY_LOAD_CERT / KEY_READ_CERT frame


@unique
class Cmd(IntEnum):
    KEY_STATUS = 0x40
    KEY_GENERATE = 0x41
    KEY_LOAD_CERT = 0x42
    KEY_SIGN = 0x43
    KEY_ATTESTATION_KEY = 0x44
    KEY_DELETE = 0x45
    KEY_READ_CERT = 0x46
    KEY_CHANGE_PIN = 0x47
    KEY_UNBLOCK_PIN = 0x48


@unique
class KeyState(IntEnum):
    FACTORY = 0  # no PIN chosen yet: the first GENERATE starts with the choice
    ACTIVE = 1


@dataclass(frozen=True)
class SlotInfo:
    slot: int
    public_key: bytes | None = None  # 65-byte uncompressed point if the slot holds a key
    subject: bytes | None = None  # the certificate's subject (DER Name) if it holds one

    @property
    def has_key(self) -> bool:
        return self.public_key is not None

    @property
    def certified(self) -> bool:
        return self.subject is not None


@dataclass(frozen=True)
class KeyStatus:
    """KEY_STATUS (docs/protocol.md): PIN/PUK tries left in total (`*_left`) and before the next
    power-up (`*_now`), and the slots."""

    state: KeyState
    pin_left: int
    pin_now: int
    puk_left: int
    puk_now: int
    slots: tuple[SlotInfo, ...] = ()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyStatus:
        def bad(why: str) -> ProtocolError:
            return ProtocolError(LinkError.ERR.INVALID_PARAMETER, b"", f"KEY_STATUS: {why}")

        if len(data) < 7 or data[0] != 1:
            raise bad("unknown version or too short")
        try:
            state = KeyState(data[1])
        except ValueError:
            raise bad("unknown state") from None
        pos, slots = 7, []
        for _ in range(data[6]):
            if pos + 2 > len(data):
                raise bad("truncated")
            slot, flags = data[pos], data[pos + 1]
            pos += 2
            public_key = subject = None
            if flags & 1:
                public_key = bytes(data[pos : pos + 65])
                pos += 65
            if flags & 2:
                n = int.from_bytes(data[pos : pos + 2], "big")
                subject = bytes(data[pos + 2 : pos + 2 + n])
                pos += 2 + n
            if pos > len(data) or (public_key is not None and len(public_key) != 65):
                raise bad("truncated")
            slots.append(SlotInfo(slot, public_key, subject))
        if pos != len(data):
            raise bad("trailing bytes")
        return cls(state, data[2], data[3], data[4], data[5], tuple(slots))


def _check_slot(slot: int) -> bytes:
    if not isinstance(slot, int) or slot not in SLOTS:
        raise ValueError(f"slot must be in {SLOTS.start}..{SLOTS.stop - 1}")
    return bytes((slot,))


def _on_change(callback: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """Calls `callback` only when the keepalive status changes (waiting for the person ->
    computing), not on every keepalive (every 500 ms)."""
    if callback is None:
        return None
    last: list[int] = []

    def relay(status: int) -> None:
        if not last or last[0] != status:
            last[:] = [status]
            callback(status)

    return relay


class KeyClient:
    """The certificate key of one connected device (`capkey.link.device.Device` or anything with its
    `call`)."""

    def __init__(self, device: Device):
        self.device = device

    def _call(
        self,
        cmd: Cmd,
        payload: bytes = b"",
        *,
        person: bool = False,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> bytes:
        return self.device.call(
            cmd,
            payload,
            timeout=_PERSON_TIMEOUT if person else 5.0,
            cancel=cancel,
            on_keepalive=_on_change(on_keepalive),
        )

    def status(self) -> KeyStatus:
        """State, PIN and PUK tries, and what each slot holds."""
        return KeyStatus.from_bytes(self._call(Cmd.KEY_STATUS))

    def certificate(self, slot: int) -> x509.Certificate | None:
        """The certificate loaded in `slot`, or None."""
        head = _check_slot(slot)
        der = bytearray()
        total = None
        while total is None or len(der) < total:
            try:
                answer = self._call(Cmd.KEY_READ_CERT, head + len(der).to_bytes(2, "big"))
            except ProtocolError as exc:
                if exc.code is LinkError.ERR.NOT_PERSONALISED and total is None:
                    return None
                raise
            n = int.from_bytes(answer[:2], "big")
            chunk = answer[2:]
            if len(answer) < 2 or (total is not None and n != total) or not chunk:
                raise ProtocolError(
                    LinkError.ERR.INVALID_PARAMETER, b"", "KEY_READ_CERT: bad chunk"
                )
            total = n
            der += chunk
        try:
            return x509.load_der_x509_certificate(bytes(der[:total]))
        except ValueError:
            raise ProtocolError(
                LinkError.ERR.INVALID_PARAMETER, b"", "the device holds a malformed certificate"
            ) from None

    def certificates(self) -> dict[int, x509.Certificate]:
        """Every loaded certificate by slot."""
        out = {}
        for info in self.status().slots:
            if info.certified:
                cert = self.certificate(info.slot)
                if cert is not None:
                    out[info.slot] = cert
        return out

    def attestation_key(self) -> bytes:
        """The device attestation public key (65-byte uncompressed P-256 point)."""
        point = self._call(Cmd.KEY_ATTESTATION_KEY)
        try:
            load_public_key(point)
        except AttestationError as exc:
            raise ProtocolError(
                LinkError.ERR.INVALID_PARAMETER, b"", f"KEY_ATTESTATION_KEY: {exc}"
            ) from None
        return point

    def generate(
        self,
        slot: int,
        *,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> Attestation:
        """Make a new key in an empty `slot` (the person confirms and types the PIN; on a new
        device they first choose the PIN and note the PUK); returns its attestation, which names
        the new public key."""
        raw = self._call(
            Cmd.KEY_GENERATE,
            _check_slot(slot),
            person=True,
            cancel=cancel,
            on_keepalive=on_keepalive,
        )
        try:
            attestation = Attestation(raw)
        except AttestationError as exc:
            raise ProtocolError(
                LinkError.ERR.INVALID_PARAMETER, b"", f"KEY_GENERATE: {exc}"
            ) from None
        if attestation.slot != slot:
            raise ProtocolError(
                LinkError.ERR.INVALID_PARAMETER, b"", "KEY_GENERATE: attestation of another slot"
            )
        return attestation

    def load_certificate(self, slot: int, certificate: x509.Certificate) -> None:
        """Store the slot key's certificate (sent in chunks; the device checks it holds the
        slot's public key)."""
        head = _check_slot(slot)
        der = certificate.public_bytes(serialization.Encoding.DER)
        total = len(der).to_bytes(2, "big")
        for offset in range(0, len(der), _CHUNK):
            self._call(
                Cmd.KEY_LOAD_CERT,
                head + offset.to_bytes(2, "big") + total + der[offset : offset + _CHUNK],
            )

    def sign(
        self,
        payload: SignedPayload | bytes,
        *,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> tuple[int, bytes]:
        """Ask the device to sign a canonical payload: it shows it, the person picks a
        certificate (when several slots hold one), confirms with OK and types the PIN. Returns
        (slot used, signature r||s)."""
        data = payload if isinstance(payload, SignedPayload) else SignedPayload(payload)
        answer = self._call(
            Cmd.KEY_SIGN, bytes(data), person=True, cancel=cancel, on_keepalive=on_keepalive
        )
        if len(answer) != 65 or answer[0] not in SLOTS:
            raise ProtocolError(LinkError.ERR.INVALID_PARAMETER, b"", "KEY_SIGN: malformed answer")
        return answer[0], bytes(answer[1:])

    def delete(
        self,
        slot: int,
        *,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> None:
        """Erase the key and certificate of `slot` (the person confirms with the PIN)."""
        self._call(
            Cmd.KEY_DELETE, _check_slot(slot), person=True, cancel=cancel, on_keepalive=on_keepalive
        )

    def change_pin(
        self,
        *,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> None:
        """The person changes the PIN on the device (old PIN, new PIN twice)."""
        self._call(Cmd.KEY_CHANGE_PIN, person=True, cancel=cancel, on_keepalive=on_keepalive)

    def unblock_pin(
        self,
        *,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> None:
        """The person unblocks the PIN with the PUK on the device (PUK, new PIN twice)."""
        self._call(Cmd.KEY_UNBLOCK_PIN, person=True, cancel=cancel, on_keepalive=on_keepalive)


class _Issuer(Protocol):
    def issue_certificate(
        self, public_key: ec.EllipticCurvePublicKey, attestation: Attestation, subscription: str,
        user: str, *, now: dt.datetime
    ) -> x509.Certificate: ...


def enrol(
    key: KeyClient,
    issuer: _Issuer,
    *,
    slot: int,
    subscription: str,
    user: str,
    now: dt.datetime,
    cancel: threading.Event | None = None,
    on_keepalive: Callable[[int], None] | None = None,
) -> x509.Certificate:
    """Enrolment: the device makes a key in `slot` and attests it, the CA checks the attestation
    and certifies the key for (subscription, user), and the certificate goes into the slot."""
    attestation = key.generate(slot, cancel=cancel, on_keepalive=on_keepalive)
    certificate = issuer.issue_certificate(
        attestation.public_key(), attestation, subscription, user, now=now
    )
    key.load_certificate(slot, certificate)
    return certificate
