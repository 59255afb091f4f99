"""`capkey devices|info|screen|press|reboot` in-process, against a scripted device."""

from __future__ import annotations

import sys
import zlib

import pytest
import serial
from click.testing import CliRunner
from link_fakes import FakePort, hello_ok

from capkey._cli import __main__ as cli_main
from capkey._cli.util import CliFail
from capkey.link import device as device_mod
from capkey.link import transport
from capkey.link.device import DeviceCandidate
from capkey.link.errors import LinkError
from capkey.link.transport import Frame, Kind

INFO = bytes.fromhex("0105302e312e30" "020101" "030373696d" "040461626364" "050400010000"
                     "060400020000" "08020400" "0709636170" "2f302e312e30")
FB = bytes([0x01] * 1024)  # top row of each 8-pixel band lit


class Sim:
    """What the scripted device saw, and how it answers."""

    def __init__(self, press_ok=True, version=b"\x01"):
        self.keys = b""
        self.rebooted = False
        self.press_ok = press_ok
        self.version = version
        self.urls = []

    def handler(self, f: Frame):
        r = lambda code=0, p=b"": [Frame(Kind.RESPONSE, f.rid, code, p)]  # noqa: E731
        if f.code == 0x01:
            if self.version != b"\x01":
                return r(LinkError.ERR.VERSION, b"\x02\x02")
            return r(0, hello_ok())
        if f.code == 0x02:
            return r(0, INFO)
        if f.code == 0x05:
            return r(0, FB if f.payload == b"\x00" else b"Choisir la\nfonction")
        if f.code == 0x06:
            if not self.press_ok:
                return r(LinkError.ERR.UNSUPPORTED)
            self.keys += f.payload
            return r()
        if f.code == 0x04:
            self.rebooted = True
            return r()
        return r(LinkError.ERR.UNKNOWN_COMMAND)


@pytest.fixture
def sim(monkeypatch):
    s = Sim()

    def fake_open(url, **kw):
        s.urls.append(url)
        if url.endswith(":1"):
            raise serial.SerialException(f"Could not open port {url}: [Errno 111] Connection refused")
        if url == "/dev/ttyBUSY":
            raise serial.SerialException(
                "Could not exclusively lock port /dev/ttyBUSY: [Errno 11] Resource temporarily "
                "unavailable")
        return FakePort(s.handler)

    monkeypatch.setattr(transport.serial, "serial_for_url", fake_open)
    monkeypatch.setattr(device_mod, "scan_devices", lambda **kw: [])
    monkeypatch.setattr("capkey._cli.device.scan_devices", lambda **kw: [])
    monkeypatch.delenv("CAPKEY_DEVICE", raising=False)
    return s


def capkey_cli(*argv, env=None):
    """Runs the CLI in-process; re-raises anything that is neither a CliFail nor a click exit."""
    result = CliRunner().invoke(cli_main.cli, list(argv), env=env)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit | CliFail):
        raise exc
    return result


URL = "socket://127.0.0.1:4711"


def test_info(sim):
    r = capkey_cli("info", "--device", URL)
    assert r.exit_code == 0, r.output
    assert "Firmware      : 0.1.0" in r.output
    assert "Board         : sim" in r.output
    assert "Serial number : abcd" in r.output
    assert "Free memory   : 65536 / 131072 bytes" in r.output
    assert "Applications  : cap 0.1.0" in r.output
    assert sim.urls == [URL]


def test_device_from_environment(sim):
    r = capkey_cli("info", env={"CAPKEY_DEVICE": "socket://127.0.0.1:9"})
    assert r.exit_code == 0 and sim.urls == ["socket://127.0.0.1:9"]


def test_screen_png(sim, tmp_path):
    png = tmp_path / "s.png"
    r = capkey_cli("screen", "-d", URL, "--png", str(png), "--scale", "2")
    assert r.exit_code == 0
    assert r.output.splitlines() == ["Choisir la", "fonction"]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 256 and int.from_bytes(data[20:24], "big") == 128


def test_press(sim):
    r = capkey_cli("press", "-d", URL, "12#d*")
    assert r.exit_code == 0 and sim.keys == b"12#D*"


def test_press_refuses_bad_keys_before_opening(sim):
    r = capkey_cli("press", "-d", URL, "12x")
    assert r.exit_code == 2 and "keys are among" in r.output and sim.urls == []


def test_press_unsupported_is_one_sentence(sim):
    sim.press_ok = False
    r = capkey_cli("press", "-d", URL, "1")
    assert isinstance(r.exception, CliFail) and r.exception.status == 1
    assert str(r.exception) == 'this board cannot do that (a simulator or a lab board only: ' \
        'docs/boards.md, "Lab mode").'


def test_reboot(sim):
    r = capkey_cli("reboot", "-d", URL)
    assert r.exit_code == 0 and sim.rebooted


def run_main(*argv) -> int:
    """`capkey ARGV` through main(), the one place that turns failures into exit statuses; the
    output is in capsys."""
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as e:
        mp.setattr(sys, "argv", ["capkey", *argv])
        cli_main.main()
    return e.value.code


@pytest.mark.parametrize("url,setup,message", [
    ("socket://127.0.0.1:1", None, "Error: no device at socket://127.0.0.1:1"),
    ("/dev/ttyBUSY", None, "Error: /dev/ttyBUSY is in use by another program"),
    (URL, "version", "Error: protocol version mismatch: this host speaks 1..1, the device 2..2"),
])
def test_link_failures_are_one_line_and_exit_3(sim, capsys, url, setup, message):
    if setup == "version":
        sim.version = b"\x02"
    assert run_main("info", "-d", url) == 3
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_timeout_is_one_line(sim, monkeypatch, capsys):
    sim.handler = lambda f: []
    monkeypatch.setattr("capkey._cli.device.HELLO_TIMEOUT", 0.2)
    assert run_main("info", "-d", URL) == 3
    assert capsys.readouterr().err == (f"Error: no answer to HELLO from {URL}: is it a capkey "
                                       "running its firmware?\n")


def test_main_prints_one_line_and_exits_non_zero(sim, capsys):
    assert run_main("info", "-d", "socket://127.0.0.1:1") == 3
    assert capsys.readouterr().err == "Error: no device at socket://127.0.0.1:1\n"


def test_no_device_found(sim):
    r = capkey_cli("info")
    assert isinstance(r.exception, CliFail) and "no capkey device found" in str(r.exception)
    assert r.exception.status == 3


def test_several_devices_listed(sim, monkeypatch):
    two = [DeviceCandidate("/dev/ttyACM0", "usb", "Pico"), DeviceCandidate(URL, "sim", "sim")]
    monkeypatch.setattr("capkey._cli.device.scan_devices", lambda **kw: two)
    r = capkey_cli("info")
    assert isinstance(r.exception, CliFail)
    assert "--device" in str(r.exception) and URL in str(r.exception)


def test_single_device_found_is_used(sim, monkeypatch):
    monkeypatch.setattr("capkey._cli.device.scan_devices",
                        lambda **kw: [DeviceCandidate(URL, "sim", "sim")])
    assert capkey_cli("info").exit_code == 0 and sim.urls == [URL]


def test_devices_lists(sim, monkeypatch):
    monkeypatch.setattr("capkey._cli.device.scan_devices", lambda **kw: [
        DeviceCandidate("/dev/ttyACM0", "usb", "Raspberry Pi Pico", "E66")])
    r = capkey_cli("devices")
    assert r.output == "/dev/ttyACM0\tusb\tRaspberry Pi Pico  serial E66\n"


def test_png_pixels():
    from capkey.link.screen import to_png

    fb = bytearray(1024)
    fb[0] = 0x01  # pixel (0, 0)
    fb[127 + 7 * 128] = 0x80  # pixel (127, 63)
    png = to_png(bytes(fb), scale=1)
    # decode the IDAT back: rows of filter byte + RGB
    idat = png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    row = 1 + 128 * 3
    assert raw[1:4] == bytes((0xDC, 0xF0, 0xFF))  # (0,0) lit
    assert raw[4:7] == bytes((0x0B, 0x0E, 0x14))  # (1,0) dark
    assert raw[63 * row + 1 + 127 * 3 : 63 * row + 1 + 128 * 3] == bytes((0xDC, 0xF0, 0xFF))
    with pytest.raises(ValueError):
        to_png(b"\x00" * 10)
