"""Frames of link protocol v1 over any byte stream that `serial.serial_for_url` opens.

`encode` and `Decoder` are the codec (docs/protocol.md, "Framing"); the same resynchronisation
rules as firmware/link/frame.py, kept byte-compatible by docs/vectors/link_v1.json. `Transport`
moves frames over `/dev/ttyACM0`, `socket://127.0.0.1:PORT`, `rfc2217://…`.

Frames are logged at level LOG_LEVEL_TRAFFIC (5, `capkey -vv`), their payloads redacted by field
type (`TRAFFIC_FIELDS`): key material, PIN blocks, codes and full PANs never reach a log.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, unique

import serial

from .errors import LinkError, NoDevice, PortBusy, TransportError

logger = logging.getLogger(__name__)

LOG_LEVEL_TRAFFIC = 5
logging.addLevelName(LOG_LEVEL_TRAFFIC, "TRAFFIC")

SYNC = b"\xca\x4b"
HEADER = 9
TRAILER = 2
MAX_PAYLOAD = 1024


@unique
class Kind(IntEnum):
    REQUEST = 0x01
    RESPONSE = 0x02
    KEEPALIVE = 0x03
    CANCEL = 0x04


@unique
class Keepalive(IntEnum):
    PROCESSING = 1
    WAITING_FOR_USER = 2


@dataclass(frozen=True)
class Frame:
    kind: int
    rid: int
    code: int
    payload: bytes = b""

    def __bytes__(self) -> bytes:
        return encode(self.kind, self.rid, self.code, self.payload)


@dataclass(frozen=True)
class FrameError:
    """A frame with a good header that could not be taken: `error` is ERR.CRC or ERR.TOO_LONG."""

    error: LinkError.ERR
    rid: int


def crc8(data: bytes | bytearray | memoryview) -> int:
    """CRC-8, poly 0x07, init 0 ("123456789" -> 0xF4)."""
    c = 0
    for b in data:
        c = _T8[c ^ b]
    return c


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE, poly 0x1021, init 0xFFFF ("123456789" -> 0x29B1)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _T16[(crc >> 8) ^ b]
    return crc


def _make_tables() -> tuple[list[int], list[int]]:
    t8, t16 = [], []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        t8.append(c)
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        t16.append(c)
    return t8, t16


_T8, _T16 = _make_tables()


def header(kind: int, rid: int, code: int, length: int) -> bytes:
    h = bytes((0xCA, 0x4B, kind, rid >> 8, rid & 0xFF, code, length >> 8, length & 0xFF))
    return h + bytes((crc8(h),))


def encode(kind: int, rid: int, code: int, payload: bytes = b"") -> bytes:
    """One frame. Refuses field values that do not fit and payloads over MAX_PAYLOAD."""
    if not (0 <= kind <= 0xFF and 0 <= rid <= 0xFFFF and 0 <= code <= 0xFF):
        raise ValueError("kind, rid or code out of range")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes, more than {MAX_PAYLOAD}")
    f = header(kind, rid, code, len(payload)) + payload
    return f + crc16(f).to_bytes(2, "big")


class Decoder:
    """Incremental decoder: `feed(bytes)` returns the frames and frame errors completed so far.

    Rules (identical to the firmware's): bytes before a SYNC are skipped; a header whose HCRC
    fails is skipped by one byte and the search goes on inside it; LEN over max_payload with a
    good HCRC gives FrameError(TOO_LONG) and the 9 header bytes are skipped; a bad CRC-16 gives
    FrameError(CRC) and everything after the SYNC's first byte is searched again."""

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()
        self.skipped = 0  # bytes dropped while searching for frames
        self.need = HEADER  # bytes that would complete what is held (a header, then a frame)

    @property
    def pending(self) -> int:
        """Bytes held that do not make a frame yet."""
        return len(self._buf)

    def reset(self) -> None:
        self.skipped += len(self._buf)
        self._buf.clear()
        self.need = HEADER

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        buf = self._buf
        buf += data
        out: list[Frame | FrameError] = []
        s = 0
        n = len(buf)
        while True:
            # 1. the next SYNC (a 0xCA as the last byte held may start one)
            while s < n and not (buf[s] == 0xCA and (s + 1 == n or buf[s + 1] == 0x4B)):
                s += 1
                self.skipped += 1
            if n - s < HEADER:
                self.need = HEADER - (n - s)
                break
            # 2. header
            if crc8(buf[s : s + 8]) != buf[s + 8]:
                s += 1
                self.skipped += 1
                continue
            rid = (buf[s + 3] << 8) | buf[s + 4]
            length = (buf[s + 6] << 8) | buf[s + 7]
            if length > self.max_payload:
                out.append(FrameError(LinkError.ERR.TOO_LONG, rid))
                s += HEADER
                self.skipped += HEADER
                continue
            total = HEADER + length + TRAILER
            if n - s < total:
                self.need = total - (n - s)
                break
            # 3. payload CRC
            e = s + HEADER + length
            if crc16(buf[s:e]) != int.from_bytes(buf[e : e + 2], "big"):
                out.append(FrameError(LinkError.ERR.CRC, rid))
                s += 1
                self.skipped += 1
                continue
            out.append(Frame(buf[s + 2], rid, buf[s + 5], bytes(buf[s + HEADER : e])))
            s += total
        del buf[:s]
        return out


def describe(kind: int, rid: int, code: int, payload: bytes) -> str:
    try:
        k = Kind(kind).name
    except ValueError:
        k = f"KIND_{kind:02x}"
    return f"{k} rid={rid} code=0x{code:02x} len={len(payload)}"


# -- what the traffic log shows of a payload ---------------------------------------------------
#
# A log is read by more people than the device's owner, and kept longer: the payloads that carry
# a secret (docs/protocol.md, "Host logging") are logged as their length only. The table names
# every command; a command it does not list, and a response whose request this transport did not
# send, is redacted whole, so a new command is hidden until someone decides what it carries.


def redacted(data: bytes) -> str:
    return f"<{len(data)} bytes redacted>"


def _public(data: bytes) -> str:
    return data.hex()


def mask_pan(pan: str) -> str:
    """Every digit but the last 4 masked (`************0010`), whatever the input showed."""
    return "*" * max(len(pan) - 4, 0) + pan[-4:]


def _card_status(data: bytes) -> str:
    # the device sends the PAN masked to its first 6 and last 4 digits; the log keeps 4
    return f"{data[:8].hex()} PAN {mask_pan(bytes(data[8:]).decode('ascii', 'replace'))}"


# APDU instructions whose command data is public: SELECT, READ RECORD, GET DATA, GET PROCESSING
# OPTIONS, GENERATE AC, GET RESPONSE. Any other (VERIFY's PIN block, a PIN change, an unknown
# instruction) has its data redacted.
_APDU_PUBLIC_INS = frozenset((0xA4, 0xB2, 0xCA, 0xA8, 0xAE, 0xC0))


def apdu_command_text(apdu: bytes) -> str:
    """A command APDU for a log: the header always, the data only for instructions that carry no
    PIN or key."""
    if len(apdu) <= 5 or apdu[1] in _APDU_PUBLIC_INS:
        return bytes(apdu).hex()
    return f"{bytes(apdu[:5]).hex()} {redacted(apdu[5:])}"


def apdu_response_text(response: bytes) -> str:
    """A response APDU for a log: its status word only (records hold the PAN, GENERATE AC the
    cryptogram a code is cut from)."""
    if len(response) < 2:
        return redacted(response)
    return f"{redacted(response[:-2])} SW {bytes(response[-2:]).hex()}"


@dataclass(frozen=True)
class Fields:
    """How the log shows one command's request payload and its OK response's payload (error
    payloads are tries left, a reason or versions: shown)."""

    name: str
    request: Callable[[bytes], str] = _public
    response: Callable[[bytes], str] = _public


TRAFFIC_FIELDS: dict[int, Fields] = {
    0x01: Fields("HELLO"),
    0x02: Fields("INFO"),
    0x03: Fields("PING"),
    0x04: Fields("REBOOT"),
    0x05: Fields("SCREEN", response=redacted),  # the display may show a code
    0x06: Fields("PRESS", request=redacted),  # the keys may be a PIN or a PUK
    0x07: Fields("HEAP"),
    0x08: Fields("MAINTENANCE"),
    0x09: Fields("SELFTEST", response=redacted),  # a key held down may be a PIN digit
    0x20: Fields("CARD_STATUS", response=_card_status),
    0x21: Fields("PERSONALISE", request=redacted),  # the card key, the PIN block, the PAN
    0x22: Fields("WIPE"),
    0x23: Fields("GET_CODE", response=redacted),  # the CAP code
    0x24: Fields("APDU", apdu_command_text, apdu_response_text),
    0x25: Fields("CARD_RESET"),
    # the certificate key: PINs and PUKs are typed on its keypad and never cross the link
    0x40: Fields("KEY_STATUS"),
    0x41: Fields("KEY_GENERATE"),
    0x42: Fields("KEY_LOAD_CERT"),
    0x43: Fields("KEY_SIGN"),
    0x44: Fields("KEY_ATTESTATION_KEY"),
    0x45: Fields("KEY_DELETE"),
    0x46: Fields("KEY_READ_CERT"),
    0x47: Fields("KEY_CHANGE_PIN"),
    0x48: Fields("KEY_UNBLOCK_PIN"),
}
_UNLISTED = Fields("unlisted", redacted, redacted)


def _pyserial_url(url: str) -> str:
    """An RFC 2217 URL with pyserial's ign_set_control: the server's acknowledgement of DTR and
    RTS is not awaited. ser2net on a pseudo-terminal (a simulator, a board behind another
    bridge) never sends it, and the link does not use the modem lines."""
    if url.startswith("rfc2217://") and "ign_set_control" not in url:
        return url + ("&" if "?" in url else "?") + "ign_set_control"
    return url


class Transport:
    """Frames over a pyserial port (or anything with read/write/close and a `timeout`)."""

    POLL = 0.05  # seconds per read: bounds how late a cancel or Ctrl-C is noticed
    GAP = 0.25  # a partial frame followed by this much silence is dropped (as on the device)

    def __init__(self, port, url: str = ""):
        self._port = port
        self.url = url
        self._decoder = Decoder()
        self._events: list[Frame | FrameError] = []
        self._last_rx = time.monotonic()
        self._requests: dict[int, int] = {}  # rid -> command in flight, to log its response
        self._closed = False

    @property
    def port(self):
        """The pyserial port the frames travel on (for a test that writes raw bytes)."""
        return self._port

    @classmethod
    def open(cls, url: str) -> Transport:
        """Opens `url` (`/dev/ttyACM0`, `socket://127.0.0.1:PORT`, `rfc2217://…`)."""
        try:
            port = serial.serial_for_url(_pyserial_url(url), timeout=cls.POLL, exclusive=True,
                                         do_not_open=True)
            if not url.startswith("rfc2217://"):
                # a write that cannot go out (a USB port whose host side stalled) fails after
                # 5 s; pyserial's RFC 2217 client refuses the setting (it writes to a socket)
                port.write_timeout = 5
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise _open_error(url, exc) from exc
        t = cls(port, url)
        try:
            port.reset_input_buffer()  # stale bytes of an earlier session
        except (serial.SerialException, OSError):
            pass
        return t

    def close(self) -> None:
        """Closes the port; a call waiting on it in another thread gets a TransportError."""
        self._closed = True
        try:
            self._port.close()
        except (serial.SerialException, OSError):
            pass

    def _closed_error(self) -> TransportError:
        return TransportError(f"the link to {self.url or 'the device'} was closed")

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, kind: int, rid: int, code: int, payload: bytes = b"") -> None:
        data = encode(kind, rid, code, payload)
        if kind == Kind.REQUEST:
            self._requests[rid] = code
        self._log("SEND", Frame(kind, rid, code, payload))
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"writing to {self.url or 'the device'} failed: {exc}") from exc

    def receive(self, timeout: float) -> Frame | FrameError | None:
        """The next frame or frame error, waiting at most `timeout` seconds (None: nothing)."""
        deadline = time.monotonic() + timeout
        while not self._events:
            if self._closed:
                raise self._closed_error()
            try:
                # as many bytes as complete the frame in progress: read() returns as soon as they
                # are there (pyserial's socket in_waiting is only 0 or 1)
                waiting = getattr(self._port, "in_waiting", 0)
                data = self._port.read(max(1, self._decoder.need, min(waiting, 4096)))
            except (serial.SerialException, OSError) as exc:
                if self._closed:
                    raise self._closed_error() from None
                raise TransportError(f"the link to {self.url or 'the device'} broke: {exc}") \
                    from exc
            except (AttributeError, TypeError):
                # pyserial's backends drop their socket or descriptor when closed under a read
                if not self._closed:
                    raise
                raise self._closed_error() from None
            now = time.monotonic()
            if data:
                self._last_rx = now
                for ev in self._decoder.feed(data):
                    self._received(ev)
                    self._events.append(ev)
                continue
            if self._decoder.pending and now - self._last_rx >= self.GAP:
                logger.debug("dropping %d bytes of a truncated frame", self._decoder.pending)
                self._decoder.reset()
            if now >= deadline:
                return None
        return self._events.pop(0)

    def _received(self, ev: Frame | FrameError) -> None:
        if isinstance(ev, FrameError):
            logger.log(LOG_LEVEL_TRAFFIC, "RECV bad frame %s rid=%d", ev.error.name, ev.rid)
            return
        command = self._requests.pop(ev.rid, None) if ev.kind == Kind.RESPONSE else None
        self._log("RECV", ev, command)

    def _log(self, direction: str, frame: Frame, command: int | None = None) -> None:
        """One frame at TRAFFIC level; a response is shown by the fields of `command`, the
        request it answers."""
        if not logger.isEnabledFor(LOG_LEVEL_TRAFFIC):
            return
        if frame.kind == Kind.REQUEST:
            fields = TRAFFIC_FIELDS.get(frame.code, _UNLISTED)
            text = f"{fields.name}: {fields.request(frame.payload)}"
        elif frame.kind == Kind.RESPONSE and frame.code == LinkError.ERR.OK:
            fields = TRAFFIC_FIELDS.get(command, _UNLISTED) if command is not None else _UNLISTED
            text = f"{fields.name}: {fields.response(frame.payload)}"
        else:  # error statuses, keepalives and cancels carry no secret
            text = _public(frame.payload)
        logger.log(LOG_LEVEL_TRAFFIC, "%s %s %s",
                   direction, describe(frame.kind, frame.rid, frame.code, frame.payload), text)


def _open_error(url: str, exc: BaseException) -> TransportError:
    text = str(exc)
    code = getattr(exc, "errno", None)
    low = text.lower()
    if code == errno.EBUSY or "exclusively lock" in low or "resource busy" in low:
        return PortBusy(f"{url} is in use by another program")
    if (code in (errno.ENOENT, errno.ECONNREFUSED, errno.ENODEV)
            or "no such file" in low or "connection refused" in low
            or "[errno 2]" in low or "[errno 111]" in low):
        return NoDevice(f"no device at {url}")
    if code == errno.EACCES or "permission denied" in low:
        return TransportError(f"no permission to open {url} (add yourself to the dialout group)")
    return TransportError(f"cannot open {url}: {text}")
