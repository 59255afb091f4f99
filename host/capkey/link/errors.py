"""Errors raised by the capkey link layer (`capkey.link.transport`, `capkey.link.device`).

Every error is a :class:`LinkError`. What a device answers is a :class:`ProtocolError` carrying a
:class:`LinkError.ERR` code; the codes that callers act on differently have their own subclass
(:class:`PinInvalid`, :class:`PinBlocked`, :class:`DeviceBusy`, :class:`Cancelled`,
:class:`VersionMismatch`), chosen by :func:`error_for`. Failures below the protocol are
:class:`TransportError` (:class:`NoDevice`, :class:`PortBusy`) and :class:`DeviceTimeout`.

The numbers are those of docs/protocol.md and of firmware/link/codes.py.
"""

from __future__ import annotations

from enum import IntEnum, unique

from ..errors import Error


class LinkError(Error):
    """Base class of every error of the device link."""

    @unique
    class ERR(IntEnum):
        OK = 0x00
        INVALID_FRAME = 0x01
        CRC = 0x02
        TOO_LONG = 0x03
        UNKNOWN_COMMAND = 0x04
        INVALID_PARAMETER = 0x05
        VERSION = 0x06
        BUSY = 0x07
        CANCELLED = 0x08
        TIMEOUT = 0x09
        DENIED = 0x0A
        PIN_INVALID = 0x0B
        PIN_BLOCKED = 0x0C
        NOT_PERSONALISED = 0x0D
        ALREADY_PERSONALISED = 0x0E
        WRONG_STATE = 0x0F
        UNSUPPORTED = 0x10
        INTERNAL = 0x7F
        UNKNOWN = 0xFF  # host only: a code this library does not know (never sent)

        @classmethod
        def _missing_(cls, value: object) -> LinkError.ERR:
            return cls.UNKNOWN


_MESSAGES = {
    LinkError.ERR.INVALID_FRAME: "the device rejected a malformed frame",
    LinkError.ERR.CRC: "the device received a corrupted frame (CRC)",
    LinkError.ERR.TOO_LONG: "the frame is longer than the device accepts",
    LinkError.ERR.UNKNOWN_COMMAND: "the device does not know this command",
    LinkError.ERR.INVALID_PARAMETER: "the device rejected the command's parameters",
    LinkError.ERR.VERSION: "no protocol version in common with the device",
    LinkError.ERR.BUSY: "the device is busy with other requests",
    LinkError.ERR.CANCELLED: "the request was cancelled",
    LinkError.ERR.TIMEOUT: "the person did not answer on the device in time",
    LinkError.ERR.DENIED: "the person refused on the device",
    LinkError.ERR.PIN_INVALID: "wrong PIN",
    LinkError.ERR.PIN_BLOCKED: "the PIN is blocked",
    LinkError.ERR.NOT_PERSONALISED: "the device is not personalised",
    LinkError.ERR.ALREADY_PERSONALISED: "the device is already personalised",
    LinkError.ERR.WRONG_STATE: "the device is not in a state that allows this command",
    LinkError.ERR.UNSUPPORTED: "this board does not support the command",
    LinkError.ERR.INTERNAL: "internal error in the device",
}


class ProtocolError(LinkError):
    """The device answered a request with an error status."""

    def __init__(self, code: int, payload: bytes = b"", message: str | None = None):
        self.raw_code = int(code)
        self.code = LinkError.ERR(code)
        self.payload = bytes(payload)
        if message is None:
            message = _MESSAGES.get(self.code, f"device error 0x{self.raw_code:02x}")
        super().__init__(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, raw=0x{self.raw_code:02x})"


class PinInvalid(ProtocolError):
    """Wrong PIN; `attempts_remaining` tries are left before it blocks."""

    def __init__(self, attempts_remaining: int, payload: bytes = b""):
        self.attempts_remaining = attempts_remaining
        super().__init__(
            LinkError.ERR.PIN_INVALID, payload, f"wrong PIN, {attempts_remaining} attempt(s) left"
        )


class PinBlocked(ProtocolError):
    """The PIN is blocked (no attempt remaining)."""

    def __init__(self, attempts_remaining: int = 0, payload: bytes = b""):
        self.attempts_remaining = attempts_remaining
        super().__init__(LinkError.ERR.PIN_BLOCKED, payload)


class DeviceBusy(ProtocolError):
    """The device already runs as many requests as it can."""

    def __init__(self, payload: bytes = b""):
        super().__init__(LinkError.ERR.BUSY, payload)


class Cancelled(ProtocolError):
    """The request was cancelled (by this host, through CANCEL)."""

    def __init__(self, payload: bytes = b""):
        super().__init__(LinkError.ERR.CANCELLED, payload)


class VersionMismatch(ProtocolError):
    """Host and device have no protocol version in common."""

    def __init__(self, host: tuple[int, int], device: tuple[int, int] | None):
        self.host = host
        self.device = device
        dev = f"{device[0]}..{device[1]}" if device else "unknown"
        super().__init__(
            LinkError.ERR.VERSION,
            bytes(device or ()),
            f"protocol version mismatch: this host speaks {host[0]}..{host[1]}, "
            f"the device {dev}; update the host package or the firmware",
        )


class TransportError(LinkError):
    """The byte stream to the device failed (unplugged, closed, I/O error)."""


class NoDevice(TransportError):
    """No device at the given URL, or none found."""


class PortBusy(TransportError):
    """The serial port is held by another program."""


class DeviceTimeout(LinkError):
    """The device did not answer in time (no response and no keepalive)."""


def error_for(code: int, payload: bytes = b"") -> ProtocolError:
    """The exception for a device error status: one place that folds codes into what callers act
    on (wrong PIN with attempts left, blocked PIN, busy, cancelled, version) and a plain
    ProtocolError for the rest, unknown codes included."""
    err = LinkError.ERR(code)
    if err is LinkError.ERR.PIN_INVALID:
        left = payload[0] if payload else 0
        return PinInvalid(left, payload) if left else PinBlocked(0, payload)
    if err is LinkError.ERR.PIN_BLOCKED:
        return PinBlocked(0, payload)
    if err is LinkError.ERR.BUSY:
        return DeviceBusy(payload)
    if err is LinkError.ERR.CANCELLED:
        return Cancelled(payload)
    return ProtocolError(code, payload)
