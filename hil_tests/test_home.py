"""First HIL tests: the home screen and menu through the keypad, a link that survives bad bytes,
the simulator's heap, and a power cut while a setting is saved."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from capkey_dev.sim import PROFILES

from capkey.link.device import CMD_PING
from capkey.link.errors import LinkError
from capkey.link.transport import MAX_PAYLOAD, Frame, Kind, Transport, encode, header

HOME = "Choisir la fonction"
APPS_DIR = Path(__file__).resolve().parents[1] / "firmware" / "apps"
GAP = 0.3  # longer than the device's 250 ms truncated-frame gap


def test_home_menu_and_back(operator):
    operator.wait_for_text(HOME)
    operator.press("#")
    lines = operator.wait_for_text("Menu")
    assert "Infos appareil" in " ".join(lines)
    operator.press("*")
    operator.wait_for_text(HOME)
    assert "#:MENU" in operator.screen_lines()


def test_power_up_shows_choisir_la_fonction(power, operator):
    operator.wait_for_text(HOME)
    operator.press("#")
    operator.wait_for_text("Menu")
    serial_before = operator.info().serial
    power.off()  # pull the plug while the menu is open
    power.on()
    lines = operator.wait_for_text(HOME)
    assert lines[-1] == "#:MENU"
    assert operator.info().serial == serial_before  # the same device


def test_reboot_command_restarts_on_the_first_screen(sim, device, operator):
    operator.press("#")
    operator.wait_for_text("Menu")
    reboots = sim.reboots
    device.reboot()
    deadline = time.monotonic() + 15
    while sim.reboots == reboots and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.reboots == reboots + 1
    sim.wait_ready()
    operator.wait_for_text(HOME, timeout=10)


# -- bad bytes on the link -----------------------------------------------------------------


class RawLink:
    """A connection on which the test writes raw bytes and reads the device's frames."""

    def __init__(self, url: str):
        self.transport = Transport.open(url)  # every URL as the host opens it (RFC 2217 too)
        self.port = self.transport.port

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def response(self, rid: int, timeout: float = 5.0) -> Frame:
        """The RESPONSE to `rid`; other frames (answers to rids made of garbage) are skipped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.transport.receive(deadline - time.monotonic())
            if isinstance(ev, Frame) and ev.kind == Kind.RESPONSE and ev.rid == rid:
                return ev
        raise AssertionError(f"no RESPONSE for rid {rid} within {timeout:g} s")

    def ping(self, rid: int, data: bytes = b"still here") -> None:
        self.write(encode(Kind.REQUEST, rid, CMD_PING, data))
        r = self.response(rid)
        assert (r.code, r.payload) == (LinkError.ERR.OK, data)

    def close(self) -> None:
        self.port.close()  # pyserial: closing twice is harmless


@pytest.fixture
def raw(device_url):
    link = RawLink(device_url)
    yield link
    link.close()


def test_garbage_truncated_and_oversize_frames_are_survived(raw, device_url, connect):
    rng = random.Random(20261127)
    raw.ping(1)

    # garbage, including lone SYNC bytes: skipped; the next frame is answered
    raw.write(bytes(rng.randrange(256) for _ in range(3000)) + b"\xca\x4b\xca")
    time.sleep(GAP)
    raw.ping(2)

    # truncated: a header announcing 10 bytes, 3 of them, then silence
    raw.write(encode(Kind.REQUEST, 3, CMD_PING, b"0123456789")[:12])
    time.sleep(GAP)
    assert raw.response(3).code == LinkError.ERR.INVALID_FRAME
    raw.ping(4)

    # oversize: a good header whose LEN is over the maximum
    raw.write(header(Kind.REQUEST, 5, CMD_PING, MAX_PAYLOAD + 1) + bytes(64))
    assert raw.response(5).code == LinkError.ERR.TOO_LONG
    time.sleep(GAP)
    raw.ping(6)
    raw.write(header(Kind.REQUEST, 7, CMD_PING, 0xFFFF))
    assert raw.response(7).code == LinkError.ERR.TOO_LONG
    raw.ping(8)

    # a flipped bit in the payload: CRC error for that frame, then business as usual
    bad = bytearray(encode(Kind.REQUEST, 9, CMD_PING, b"payload"))
    bad[10] ^= 0x04
    raw.write(bytes(bad))
    assert raw.response(9).code == LinkError.ERR.CRC
    raw.ping(10)

    # unknown command and a wrong frame kind: explicit errors
    raw.write(encode(Kind.REQUEST, 11, 0xEE))
    assert raw.response(11).code == LinkError.ERR.UNKNOWN_COMMAND
    raw.write(encode(Kind.RESPONSE, 12, 0))
    assert raw.response(12).code == LinkError.ERR.INVALID_FRAME
    raw.ping(13)

    # random bursts, each followed by a valid request on the same connection
    for i in range(16):
        n = rng.choice((1, 2, 9, 10, 64, 500, 1500))
        burst = bytearray(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5:  # a SYNC inside makes the decoder try a header
            at = rng.randrange(len(burst))
            burst[at : at + 2] = b"\xca\x4b"
        raw.write(bytes(burst))
        time.sleep(GAP)
        raw.ping(1000 + i, b"burst %d" % i)

    # and a fresh connection is served too (a USB port opens once: close ours first)
    raw.close()
    dev = connect(device_url)
    try:
        dev.ping(b"new connection")
    finally:
        dev.close()


def test_link_dropped_mid_frame_is_survived(device_url):
    for cut in (1, 5, 9, 12):
        link = RawLink(device_url)
        link.write(encode(Kind.REQUEST, 77, CMD_PING, b"0123456789")[:cut])
        link.close()  # the host goes away mid-frame
    link = RawLink(device_url)
    try:
        link.ping(78)
    finally:
        link.close()


@pytest.mark.sim_only
def test_simulator_heap_is_not_larger_than_a_pico(device):
    info = device.info()
    assert info.board == "sim"
    assert 128 * 1024 < info.heap_total <= PROFILES["rpi_pico"]
    assert 0 < info.heap_free < info.heap_total


def test_every_app_fits_in_the_heap(device):
    """The firmware skips an app that does not fit in memory (the device stays reachable);
    here that is a failure: every app in firmware/apps must be installed."""
    present = sorted(p.stem for p in APPS_DIR.glob("*.py") if not p.stem.startswith("test_"))
    installed = sorted(name for name, _ in device.info().apps)
    assert installed == present, "apps not installed (see the simulator's console): " + \
        ", ".join(sorted(set(present) - set(installed)))
