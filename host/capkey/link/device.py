"""Typed client of a capkey device over link protocol v1 (docs/protocol.md).

    with Device.open("socket://127.0.0.1:4711") as dev:
        print(dev.info().board)
        fb, lines = dev.screen()

`scan_devices()` finds boards by USB VID/PID and running simulators by their registry files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..catalog.boards import USB_IDS
from .errors import (
    Cancelled,
    DeviceTimeout,
    LinkError,
    ProtocolError,
    TransportError,
    VersionMismatch,
    error_for,
)
from .transport import Frame, FrameError, Kind, Transport

logger = logging.getLogger(__name__)

PROTOCOL_VERSIONS = (1, 1)  # (min, max) this host speaks

CMD_HELLO = 0x01
CMD_INFO = 0x02
CMD_PING = 0x03
CMD_REBOOT = 0x04
CMD_SCREEN = 0x05
CMD_PRESS = 0x06
CMD_MAINTENANCE = 0x08
CMD_SELFTEST = 0x09

KEYS = "0123456789ABCD*#"
_CANCEL_GRACE = 1.0  # seconds to wait for the device's answer to a CANCEL
_SEND_ATTEMPTS = 2  # a request that reached the device damaged is sent once more
_DAMAGED = (LinkError.ERR.CRC, LinkError.ERR.INVALID_FRAME)


@dataclass(frozen=True)
class DeviceInfo:
    """What INFO reports (TLV, docs/protocol.md). Unknown tags are ignored."""

    firmware_version: str = ""
    protocol_version: int = 0
    board: str = ""
    serial: str = ""
    heap_free: int = 0
    heap_total: int = 0
    max_payload: int = 0
    apps: tuple[tuple[str, str], ...] = ()
    micropython: str = ""  #: the interpreter's version ("1.29.0"); "" from older firmware
    platform: str = ""  #: its sys.platform ("rp2", "esp32", "linux" for the simulator)
    flash_free: int = 0  #: bytes free on the store's filesystem (0: not reported)
    flash_total: int = 0
    #: the app slot running ("a", "b trial", "a failed=b"; docs/boards.md "Update and rollback");
    #: "" when the board did not boot from a slot
    slot: str = ""

    _TAGS = {1: "firmware_version", 2: "protocol_version", 3: "board", 4: "serial",
             5: "heap_free", 6: "heap_total", 8: "max_payload", 9: "micropython",
             10: "platform", 11: "flash_free", 12: "flash_total", 13: "slot"}
    _INTS = {"protocol_version", "heap_free", "heap_total", "max_payload", "flash_free",
             "flash_total"}

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceInfo:
        fields: dict[str, object] = {}
        apps = []
        for tag, value in _tlv_items(data, "INFO"):
            if tag == 7:
                name, _, version = value.decode("utf-8", "replace").partition("/")
                apps.append((name, version))
            elif tag in cls._TAGS:
                name = cls._TAGS[tag]
                fields[name] = (int.from_bytes(value, "big") if name in cls._INTS
                                else value.decode("utf-8", "replace"))
        return cls(apps=tuple(apps), **fields)  # type: ignore[arg-type]


def _tlv_items(data: bytes, what: str) -> Iterator[tuple[int, bytes]]:
    """(tag, value) of a TLV list (tag u8, length u8, value); ValueError if truncated."""
    i = 0
    while i < len(data):
        if i + 2 > len(data) or i + 2 + data[i + 1] > len(data):
            raise ValueError(f"{what}: truncated TLV")
        yield data[i], bytes(data[i + 2 : i + 2 + data[i + 1]])
        i += 2 + data[i + 1]


@dataclass(frozen=True)
class SelfTest:
    """What SELFTEST reports (docs/protocol.md): the panel answered (or the driver's error), the
    keys down at every sample of a quarter second (stuck, or held by someone), the time since
    power-up, and the board's wall clock when it has one set (UTC)."""

    display_ok: bool
    display_error: str
    keys_down: str
    uptime_ms: int
    clock: datetime | None

    @classmethod
    def from_bytes(cls, data: bytes) -> SelfTest:
        items = dict(_tlv_items(data, "SELFTEST"))
        if 1 not in items or 4 not in items:
            raise ValueError("SELFTEST: display or uptime missing")
        clock = items.get(5)
        return cls(display_ok=items[1] == b"\x00",
                   display_error=items.get(2, b"").decode("utf-8", "replace"),
                   keys_down=items.get(3, b"").decode("ascii", "replace"),
                   uptime_ms=int.from_bytes(items[4], "big"),
                   clock=None if clock is None else datetime.fromtimestamp(
                       int.from_bytes(clock, "big"), UTC))


@dataclass(frozen=True)
class DeviceCandidate:
    """A device found by scan_devices(): a USB board or a running simulator."""

    url: str
    kind: str  # "usb" or "sim"
    description: str = ""
    serial_number: str = ""
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)


class Device:
    """One connection to a device. Calls may run at once from several threads, as the protocol
    allows requests in flight side by side (a SIGN waiting for the person while SCREEN reads the
    display): a board's serial port opens once, so its one connection must serve them all. One
    caller at a time reads the stream and hands the frames of the others' requests over."""

    def __init__(self, transport: Transport, *, hello: bool = True, hello_timeout: float = 3.0):
        self._t = transport
        self._rids = itertools.count()
        self._send_lock = threading.Lock()  # a frame goes out whole
        self._rx = threading.Condition()  # guards _reading and _inbox
        self._reading = False  # a caller is reading the stream
        self._inbox: dict[int, list[Frame | FrameError]] = {}  # rid in flight -> its frames
        self._info: DeviceInfo | None = None
        self.protocol_version = 0
        self.max_payload = 0
        if hello:
            self._hello(hello_timeout)

    @classmethod
    @contextlib.contextmanager
    def open(cls, url: str, *, hello_timeout: float = 3.0) -> Iterator[Device]:
        """Opens `url` and negotiates the protocol version (HELLO)."""
        transport = Transport.open(url)
        try:
            yield cls(transport, hello_timeout=hello_timeout)
        finally:
            transport.close()

    @property
    def url(self) -> str:
        return self._t.url

    def close(self) -> None:
        self._t.close()

    def _hello(self, timeout: float) -> None:
        lo, hi = PROTOCOL_VERSIONS
        try:
            r = self.call(CMD_HELLO, bytes((lo, hi)), timeout=timeout)
        except ProtocolError as exc:
            if exc.code is LinkError.ERR.VERSION:
                dev = (exc.payload[0], exc.payload[1]) if len(exc.payload) >= 2 else None
                raise VersionMismatch(PROTOCOL_VERSIONS, dev) from None
            raise
        except DeviceTimeout:
            raise DeviceTimeout(
                f"no answer to HELLO from {self.url or 'the device'}: "
                "is it a capkey running its firmware?"
            ) from None
        if len(r) < 3 or not lo <= r[0] <= hi:
            raise VersionMismatch(PROTOCOL_VERSIONS, (r[0], r[0]) if r else None)
        self.protocol_version = r[0]
        self.max_payload = int.from_bytes(r[1:3], "big")

    def _next_rid(self) -> int:
        return next(self._rids) % 0xFFFF + 1  # 1..65535

    def _send(self, kind: Kind, rid: int, code: int, payload: bytes = b"") -> None:
        with self._send_lock:
            self._t.send(kind, rid, code, payload)

    def _receive(self, rid: int, timeout: float) -> Frame | FrameError | None:
        """The next frame for `rid` within `timeout`, or None. Whoever is not reading waits for
        the reader to post its frames or to give the stream up."""
        deadline = time.monotonic() + timeout
        with self._rx:
            while True:
                box = self._inbox.get(rid)
                if box:
                    return box.pop(0)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if not self._reading:
                    self._reading = True
                    break
                self._rx.wait(min(left, Transport.POLL))
        ev = None
        try:
            ev = self._t.receive(min(left, Transport.POLL))
        finally:
            with self._rx:
                self._reading = False
                if ev is not None and ev.rid != rid:
                    box = self._inbox.get(ev.rid)
                    if box is not None:
                        box.append(ev)
                    else:
                        # the kind only: a payload may hold a secret (no log carries one)
                        what = ev.kind if isinstance(ev, Frame) else ev.error
                        logger.debug("ignoring %s for rid %d (not in flight)", what, ev.rid)
                    ev = None
                self._rx.notify_all()
        return ev

    def call(
        self,
        cmd: int,
        payload: bytes = b"",
        *,
        timeout: float = 5.0,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> bytes:
        """Sends a REQUEST and returns the payload of its OK RESPONSE.

        Each KEEPALIVE restarts the `timeout` and is passed to `on_keepalive(status)`. If `cancel`
        is set, or Ctrl-C interrupts, a CANCEL is sent and Cancelled (or KeyboardInterrupt) is
        raised. Error statuses raise ProtocolError (see errors.error_for); no answer in time
        raises DeviceTimeout after telling the device to cancel.

        A request the device received damaged (ERR_CRC, or ERR_INVALID_FRAME for a truncated
        one) never ran, so it is sent once more, under a new RID."""
        for attempt in range(_SEND_ATTEMPTS):
            try:
                return self._call_once(cmd, payload, timeout, cancel, on_keepalive)
            except ProtocolError as exc:
                if exc.code not in _DAMAGED or attempt + 1 == _SEND_ATTEMPTS:
                    raise
                logger.info("request 0x%02x arrived damaged (%s): sending it again", cmd,
                            exc.code.name)
        raise AssertionError("unreachable")

    def _call_once(self, cmd: int, payload: bytes, timeout: float, cancel: threading.Event | None,
                   on_keepalive: Callable[[int], None] | None) -> bytes:
        rid = self._next_rid()
        with self._rx:
            self._inbox[rid] = []
        try:
            self._send(Kind.REQUEST, rid, cmd, payload)
            return self._await(rid, timeout, cancel, on_keepalive)
        finally:
            with self._rx:
                self._inbox.pop(rid, None)

    def _await(self, rid: int, timeout: float, cancel: threading.Event | None,
               on_keepalive: Callable[[int], None] | None) -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    self._cancel(rid)
                    raise Cancelled()
                left = deadline - time.monotonic()
                if left <= 0:
                    self._cancel(rid, wait=False)
                    raise DeviceTimeout(f"no answer from the device within {timeout:g} s")
                ev = self._receive(rid, min(left, Transport.POLL) if cancel is not None else left)
                if ev is None:
                    continue
                if isinstance(ev, FrameError):
                    raise TransportError(f"the device's answer was corrupted ({ev.error.name})")
                if ev.kind == Kind.KEEPALIVE:
                    deadline = time.monotonic() + timeout
                    if on_keepalive is not None:
                        on_keepalive(ev.code)
                elif ev.kind == Kind.RESPONSE:
                    if ev.code == LinkError.ERR.OK:
                        return ev.payload
                    raise error_for(ev.code, ev.payload)
        except KeyboardInterrupt:
            self._cancel(rid)
            raise

    def _cancel(self, rid: int, wait: bool = True) -> None:
        # Best effort: tell the device, then drain its answer so the next call starts clean.
        try:
            self._send(Kind.CANCEL, rid, 0)
            end = time.monotonic() + (_CANCEL_GRACE if wait else 0)
            while wait and time.monotonic() < end:
                ev = self._receive(rid, end - time.monotonic())
                if isinstance(ev, Frame) and ev.kind == Kind.RESPONSE:
                    return
        except TransportError:
            pass

    # -- system commands -------------------------------------------------------------------

    def info(self) -> DeviceInfo:
        """The device's INFO, read once per connection."""
        if self._info is None:
            self._info = DeviceInfo.from_bytes(self.call(CMD_INFO))
        return self._info

    def ping(self, data: bytes = b"") -> None:
        """Round trip; raises TransportError if the echo differs."""
        if self.call(CMD_PING, data) != data:
            raise TransportError("PING echo differs from what was sent")

    def reboot(self) -> None:
        """Asks the device to restart; the connection is unusable afterwards and is closed."""
        self.call(CMD_REBOOT)
        self.close()

    def maintenance(self, *, on_keepalive: Callable[[int], None] | None = None) -> None:
        """Asks the device for maintenance mode (docs/boards.md): the person confirms on the
        keypad, then the device restarts with its REPL on the port instead of the link. The
        connection is closed. Refused on the keypad: ProtocolError(ERR.DENIED); no answer on the
        device: ProtocolError(ERR.TIMEOUT)."""
        self.call(CMD_MAINTENANCE, on_keepalive=on_keepalive)
        self.close()

    def selftest(self) -> SelfTest:
        """The board's own check of its panel, keypad and clocks (`capkey doctor`); changes
        nothing. Firmware older than SELFTEST: ProtocolError(ERR.UNKNOWN_COMMAND)."""
        return SelfTest.from_bytes(self.call(CMD_SELFTEST, timeout=5.0))

    def screen(self) -> tuple[bytes, list[str]]:
        """The display: 1024 bytes of 128x64 MONO_VLSB framebuffer and the screen's text lines."""
        fb = self.call(CMD_SCREEN, b"\x00")
        text = self.call(CMD_SCREEN, b"\x01").decode("utf-8", "replace")
        return fb, text.split("\n") if text else []

    def press(self, keys: str) -> None:
        """Presses keys on the keypad (a simulator or a lab board; ERR.UNSUPPORTED on a field
        unit: docs/boards.md, "Lab mode")."""
        bad = [k for k in keys if k not in KEYS]
        if bad or not keys:
            raise ValueError(f"keys must be among {KEYS}")
        for i in range(0, len(keys), 64):
            self.call(CMD_PRESS, keys[i : i + 64].encode("ascii"), timeout=10.0)

    def takes_keys(self) -> bool:
        """Whether PRESS works on this device (a simulator or a lab board), asked with an empty
        PRESS, which presses nothing: a field unit refuses it as UNSUPPORTED before looking at
        the keys, a board that takes keys as INVALID_PARAMETER."""
        try:
            self.call(CMD_PRESS, b"")
        except ProtocolError as exc:
            if exc.code == LinkError.ERR.UNSUPPORTED:
                return False
            if exc.code == LinkError.ERR.INVALID_PARAMETER:
                return True
            raise
        raise ProtocolError(LinkError.ERR.INTERNAL, message="the device accepted an empty PRESS")


# -- discovery -------------------------------------------------------------------------------

def sims_dir() -> Path:
    """Where running simulators register: ~/.cache/capkey/sims/*.json."""
    return Path.home() / ".cache" / "capkey" / "sims"


def pid_alive(pid: int) -> bool:
    """Whether a process exists (a simulator's registry entry may outlive it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


PLUG_WAIT = 2.0  # seconds scan_devices() waits for a board just plugged in to enumerate
_PLUG_POLL = 0.1


def _usb_candidates() -> list[DeviceCandidate]:
    from serial.tools import list_ports

    return [
        DeviceCandidate(p.device, "usb", USB_IDS[(p.vid, p.pid)], p.serial_number or "")
        for p in sorted(list_ports.comports(), key=lambda p: p.device)
        if (p.vid, p.pid) in USB_IDS
    ]


def _sim_candidates(directory: Path) -> list[DeviceCandidate]:
    found: list[DeviceCandidate] = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        try:
            entry = json.loads(path.read_text())
            url, pid = str(entry["url"]), int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid_alive(pid):
            storage = str(entry.get("storage", ""))
            found.append(DeviceCandidate(url, "sim", f"simulator pid {pid} ({storage})", "",
                                         {"pid": pid, "storage": storage}))
    return found


def scan_devices(*, sim_dir: Path | None = None, usb: bool = True,
                 wait: float = PLUG_WAIT) -> list[DeviceCandidate]:
    """USB serial ports whose VID/PID is a capkey board's, then running simulators. Opens none.

    When it finds none, it lists the USB ports again every 0.1 s for up to `wait` seconds, so a
    board plugged in just before the command is found once it has enumerated."""
    sims = _sim_candidates(sims_dir() if sim_dir is None else sim_dir)
    boards = _usb_candidates() if usb else []
    polls = round(wait / _PLUG_POLL) if usb else 0
    while not boards and not sims and polls > 0:
        time.sleep(_PLUG_POLL)
        polls -= 1
        boards = _usb_candidates()
    return boards + sims
