"""PC/SC: expose a CAP card to pcscd through vsmartcard's virtual reader (vpcd), and a host-side
CAP reader that drives any card through APDUs (pyscard, the bridge, a device).

    pcscd (with /etc/reader.conf.d/vpcd)  <── TCP 127.0.0.1:35963 ──  VpcdClient(card)
          ▲ PC/SC (pyscard, opensc-tool)                                   │
                                                    card = SoftCardProcess (firmware applet in
                                                    MicroPython) or LinkCard (a device, link APDU)

vpcd protocol: each message is a 2-byte big-endian length and a payload. From the reader a 1-byte
payload is a control: 00 power off, 01 power on, 02 reset (no answer), 04 "send the ATR" (answer:
the ATR); any longer payload is a command APDU, answered with the response APDU.

:class:`CapReader` is what a CAP reader does (docs/cap.md §1, §3; the brief §2): SELECT, GPO, READ
RECORD, VERIFY, GENERATE AC ×2, then the OTP from the card's IPB/IAF. It builds the CDOL1 data by
walking the card's CDOL1 with the reader constants of the matching profile and refuses tags it does
not know.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..emv import hazmat as emv
from ..emv import tlv
from ..errors import Error
from .transport import LOG_LEVEL_TRAFFIC, apdu_command_text, apdu_response_text

__all__ = [
    "VPCD_HOST",
    "VPCD_PORT",
    "CardEndpoint",
    "SoftCardProcess",
    "LinkCard",
    "VpcdClient",
    "CapReader",
    "CapReadout",
    "CardError",
    "WrongPin",
    "PinBlocked",
]

logger = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963  # /etc/reader.conf.d/vpcd: CHANNELID 0x8C7B

_CTRL_OFF = 0x00
_CTRL_ON = 0x01
_CTRL_RESET = 0x02
_CTRL_ATR = 0x04
_ROOT = Path(__file__).resolve().parents[3]  # the checkout: firmware/ for SoftCardProcess


# ---------------------------------------------------------------------------------------------
# Cards


class CardEndpoint(abc.ABC):
    """Something that answers APDUs like a contact card."""

    @abc.abstractmethod
    def atr(self) -> bytes: ...

    @abc.abstractmethod
    def power(self, on: bool) -> None: ...

    @abc.abstractmethod
    def transmit(self, apdu: bytes) -> bytes: ...

    def reset(self) -> None:
        self.power(False)
        self.power(True)

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def _frame(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("frame too long")
    return struct.pack(">H", len(data)) + data


class SoftCardProcess(CardEndpoint):
    """The firmware's soft card (firmware/applets/emv_card.py) running in the MicroPython unix
    port (boards/sim/card_bridge.py), with its store in `storage`."""

    def __init__(self, storage: str | Path, *, micropython: str | Path | None = None, root: Path = _ROOT):
        self._mp = str(micropython or Path(sys.executable).with_name("micropython"))
        self._root = root
        self._storage = str(storage)
        self._proc = subprocess.Popen(
            [self._mp, "-X", "heapsize=190k", str(root / "boards/sim/card_bridge.py"), str(root), self._storage],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._lock = threading.Lock()
        self._atr: bytes | None = None

    @classmethod
    def personalise(
        cls, storage: str | Path, data: bytes | bytearray, *, micropython: str | Path | None = None, root: Path = _ROOT
    ) -> None:
        """Loads PERSONALISE data into a factory-state soft card store (sent on the bridge's
        stdin: it holds the card key and the PIN block)."""
        mp = str(micropython or Path(sys.executable).with_name("micropython"))
        out = subprocess.run(
            [mp, "-X", "heapsize=190k", str(root / "boards/sim/card_bridge.py"), str(root), str(storage),
             "personalise"],
            input=bytes(data).hex().encode(),
            capture_output=True,
            timeout=30,
        )
        if out.returncode != 0:
            raise RuntimeError(f"soft card personalisation failed: {out.stderr.decode(errors='replace')[-300:]}")

    def _exchange(self, payload: bytes, answer: bool) -> bytes:
        with self._lock:
            if self._proc.poll() is not None:
                raise ConnectionError("soft card process has exited")
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(_frame(payload))
            self._proc.stdin.flush()
            if not answer:
                return b""
            hdr = self._proc.stdout.read(2)
            if len(hdr) != 2:
                raise ConnectionError("soft card closed its output")
            (n,) = struct.unpack(">H", hdr)
            data = self._proc.stdout.read(n)
            if len(data) != n:
                raise ConnectionError("truncated answer from the soft card")
            return data

    def atr(self) -> bytes:
        if self._atr is None:
            self._atr = self._exchange(bytes((_CTRL_ATR,)), True)
        return self._atr

    def power(self, on: bool) -> None:
        self._exchange(bytes((_CTRL_ON if on else _CTRL_OFF,)), False)

    def reset(self) -> None:
        self._exchange(bytes((_CTRL_RESET,)), False)

    def transmit(self, apdu: bytes) -> bytes:
        return self._exchange(bytes(apdu), True)

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class LinkCard(CardEndpoint):
    """The card applet of a capkey device, over the link's APDU command (docs/protocol.md)."""

    def __init__(self, client):
        # client: capkey.link.card.CardClient (its apdu() and card_reset() methods)
        self._client = client
        self._atr: bytes | None = None

    def atr(self) -> bytes:
        # vpcd also asks for the ATR to poll for the card's presence: answer from the cache, a
        # reset here would end the transaction in progress.
        if self._atr is None:
            self._atr = self._client.card_reset()
        return self._atr

    def power(self, on: bool) -> None:
        if on:
            self._atr = self._client.card_reset()

    def reset(self) -> None:
        self._atr = self._client.card_reset()

    def transmit(self, apdu: bytes) -> bytes:
        return self._client.apdu(apdu)


# ---------------------------------------------------------------------------------------------
# vpcd client


class VpcdClient:
    """Connects to pcscd's vpcd driver and answers it with `card` until stopped or disconnected."""

    def __init__(self, card: CardEndpoint, host: str = VPCD_HOST, port: int = VPCD_PORT):
        self.card = card
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._stop = threading.Event()

    def connect(self, timeout: float = 10.0) -> None:
        """Connects, retrying while pcscd is starting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=2)
                self._sock.settimeout(0.5)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _recv_exactly(self, n: int) -> bytes | None:
        assert self._sock is not None
        buf = b""
        while len(buf) < n:
            if self._stop.is_set():
                return None
            try:
                chunk = self._sock.recv(n - len(buf))
            except TimeoutError:
                continue
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self, msg: bytes) -> bytes | None:
        """One message from vpcd → the answer to send (None: no answer)."""
        if len(msg) == 1:
            c = msg[0]
            logger.debug("vpcd control %02X", c)
            if c == _CTRL_OFF:
                self.card.power(False)
            elif c == _CTRL_ON:
                self.card.power(True)
            elif c == _CTRL_RESET:
                self.card.reset()
            elif c == _CTRL_ATR:
                return self.card.atr()
            else:
                logger.debug("vpcd: unknown control %02X", c)
            return None
        logger.log(LOG_LEVEL_TRAFFIC, "vpcd > %s", apdu_command_text(msg))
        resp = self.card.transmit(msg)
        logger.log(LOG_LEVEL_TRAFFIC, "vpcd < %s", apdu_response_text(resp))
        return resp

    def serve(self) -> None:
        """Answers until stop() or until vpcd closes the connection."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        try:
            while not self._stop.is_set():
                hdr = self._recv_exactly(2)
                if hdr is None:
                    return
                (n,) = struct.unpack(">H", hdr)
                msg = self._recv_exactly(n) if n else b""
                if msg is None:
                    return
                answer = self.handle(msg)
                if answer is not None:
                    self._sock.sendall(_frame(answer))
        finally:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        self.connect()
        t = threading.Thread(target=self.serve, name="vpcd-client", daemon=True)
        t.start()
        return t


# ---------------------------------------------------------------------------------------------
# Host-side CAP reader


class CardError(Error):
    """The card answered with an unexpected status word."""

    def __init__(self, what: str, sw: int):
        super().__init__(f"{what}: SW {sw:04X}")
        self.sw = sw


class WrongPin(CardError):
    def __init__(self, tries_left: int):
        super().__init__("wrong PIN", 0x63C0 | tries_left)
        self.tries_left = tries_left


class PinBlocked(CardError):
    def __init__(self):
        super().__init__("PIN blocked", 0x6983)


@dataclass(frozen=True)
class CapReadout:
    """What one CAP session produced."""

    otp: int
    aid: bytes
    pan: str
    psn: int
    atc: int
    response: emv.GenerateAcResponse
    ipb: bytes
    iaf: int


_CAP_AIDS = (bytes.fromhex("A0000000038002"), bytes.fromhex("A0000000048002"))


class CapReader:
    """A CAP reader in software, over `transmit(apdu) -> response APDU` (data ‖ SW1 SW2)."""

    def __init__(self, transmit: Callable[[bytes], bytes]):
        self._transmit = transmit

    def _send(self, apdu: bytes, what: str, ok: Sequence[int] = (0x9000,)) -> tuple[bytes, int]:
        resp = self._transmit(bytes(apdu))
        if len(resp) < 2:
            raise CardError(what, 0)
        data, sw = resp[:-2], resp[-2] << 8 | resp[-1]
        if sw >> 8 == 0x61:  # T=0: more data
            return self._send(bytes.fromhex("00C00000") + bytes([sw & 0xFF]), what, ok)
        if sw >> 8 == 0x6C:  # T=0: wrong Le
            return self._send(bytes(apdu[:4]) + bytes([sw & 0xFF]) if len(apdu) <= 5 else bytes(apdu[:-1]) + bytes([sw & 0xFF]), what, ok)
        if sw not in ok:
            raise CardError(what, sw)
        return data, sw

    def select(self) -> tuple[bytes, bytes]:
        """SELECT the first CAP AID the card has → (AID, FCI)."""
        for aid in _CAP_AIDS:
            resp = self._transmit(bytes.fromhex("00A40400") + bytes([len(aid)]) + aid + b"\x00")
            if resp[-2:] == b"\x90\x00":
                return aid, resp[:-2]
        raise CardError("no CAP application", resp[-2] << 8 | resp[-1])

    def read_pin_tries(self) -> int:
        data, _ = self._send(bytes.fromhex("80CA9F1700"), "GET DATA 9F17")
        v = tlv.find(data, 0x9F17)
        if v is None or len(v) != 1:
            raise CardError("GET DATA 9F17: bad answer", 0x9000)
        return v[0]

    def run(
        self,
        *,
        pin: str | bytes | bytearray,
        un: bytes = bytes(4),
        amount: int = 0,
        tds: Sequence[str] | None = None,
    ) -> CapReadout:
        """One CAP session: the code for UN `un` and amount `amount` (minor units)."""
        from ..emv.profiles import PROFILES

        aid, _fci = self.select()
        profile = next((p for p in PROFILES.values() if p.aid == aid), None)
        if profile is None:
            raise CardError("unknown CAP application", 0x9000)
        gpo, _ = self._send(bytes.fromhex("80A80000028300") + b"\x00", "GET PROCESSING OPTIONS")
        objs = tlv.parse_dict(gpo)
        if 0x80 in objs:
            afl = objs[0x80][2:]
        elif 0x77 in objs:
            afl = tlv.parse_dict(objs[0x77]).get(0x94, b"")
        else:
            raise CardError("GPO: unknown format", 0x9000)
        if not afl or len(afl) % 4:
            raise CardError("GPO: bad AFL", 0x9000)
        rec: dict[int, bytes] = {}
        for i in range(0, len(afl), 4):
            sfi = afl[i] >> 3
            for r in range(afl[i + 1], afl[i + 2] + 1):
                data, _ = self._send(bytes([0x00, 0xB2, r, (sfi << 3) | 4, 0x00]), "READ RECORD")
                body = tlv.parse_dict(data).get(0x70)
                if body is None:
                    raise CardError("READ RECORD: not a record template", 0x9000)
                rec.update(tlv.parse_dict(body))
        try:
            cdol1, cdol2, ipb = rec[0x8C], rec[0x8D], rec[0x9F56]
            pan = rec[0x5A].hex().rstrip("fF")
        except KeyError as exc:
            raise CardError(f"records lack {exc}", 0x9000) from None
        iaf = rec.get(0x9F55, b"\x00")[0]
        psn_b = rec.get(0x5F34, b"\x00")
        psn = int(psn_b.hex())
        block = emv.pin_block_format2(pin)
        resp = self._transmit(bytes.fromhex("0020008008") + block)
        sw = resp[-2] << 8 | resp[-1]
        if sw == 0x6983:
            raise PinBlocked()
        if sw >> 4 == 0x63C:
            raise WrongPin(sw & 0x0F)
        if sw != 0x9000:
            raise CardError("VERIFY", sw)
        values = dict(profile.reader)
        values[0x9F37] = emv.check_bytes("un", un, 4)
        values[0x9F02] = emv.pack_bcd(str(amount), 6)
        values[0x8A] = b"Z3"
        data1 = _dol_data(cdol1, values)
        ac1, _ = self._send(bytes.fromhex("80AE8000") + bytes([len(data1)]) + data1 + b"\x00", "GENERATE AC (ARQC)")
        response = emv.GenerateAcResponse(ac1)
        # Always close the transaction (docs/cap.md §1), even if the ARQC is refused below.
        data2 = _dol_data(cdol2, values)
        self._send(bytes.fromhex("80AE0000") + bytes([len(data2)]) + data2 + b"\x00", "GENERATE AC (AAC)")
        if response.cid != 0x80:
            raise CardError("the card declined (no ARQC)", 0x9000)
        otp = emv.cap_otp(response, ipb, psn=psn if iaf & 0x40 else None, tds=tds)
        return CapReadout(otp, aid, pan, psn, int.from_bytes(response.atc, "big"), response, ipb, iaf)


def _dol_data(dol: bytes, values: dict[int, bytes]) -> bytes:
    out = b""
    for tag, length in tlv.parse_dol(dol):
        v = values.get(tag)
        if v is None or len(v) != length:
            raise CardError(f"CDOL asks for {tag:X} ({length} bytes), which this reader does not fill", 0x9000)
        out += v
    return out
