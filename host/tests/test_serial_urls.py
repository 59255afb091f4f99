"""Every pyserial URL a user gives --device: a /dev/tty… path (termios, DTR, the port gone and
back, through a pseudo-terminal bridged to a simulator: capkey_dev.simtty) and rfc2217:// (a
board in a remote rig, through ser2net on that pseudo-terminal)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import termios
import time
from pathlib import Path

import pytest
import serial
from capkey_dev.sim import Simulator
from capkey_dev.simtty import SimTty
from test_cli_hygiene import run

from capkey.link.device import Device
from capkey.link.errors import LinkError, TransportError
from capkey.link.transport import Transport, _pyserial_url


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with Simulator(tmp_path_factory.mktemp("urls") / "flash", register=False) as s:
        yield s


@pytest.fixture
def tty(sim, tmp_path):
    with SimTty(sim, tmp_path / "ttyCAPKEY0") as t:
        yield t


def test_a_tty_path_is_a_raw_terminal(tty):
    with Transport.open(str(tty.path)) as transport:
        port = transport._port
        assert isinstance(port, serial.Serial) and port.isOpen()
        attrs = termios.tcgetattr(port.fileno())  # a real terminal, raw for the link's bytes
        assert not attrs[3] & (termios.ICANON | termios.ECHO)
        assert port.dtr  # raised at open (a pty has no modem lines: pyserial lets that pass)
    with Device.open(str(tty.path)) as dev:
        assert dev.info().board == "sim"
        dev.ping(b"over a tty")


def test_a_tty_unplugged_is_one_error_and_opens_again_once_back(sim, tty):
    dev = Device.open(str(tty.path)).__enter__()
    try:
        sim.kill()  # the board unplugged: the node goes
        with pytest.raises(LinkError) as gone:
            dev.ping(b"x")
        assert "\n" not in str(gone.value)
    finally:
        dev.close()
    assert not tty.path.exists()
    with pytest.raises(TransportError, match="no device at"):
        Transport.open(str(tty.path))
    sim.start()
    tty.wait_plugged()
    with Device.open(str(tty.path)) as dev:
        dev.ping(b"back")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rfc2217(tty, tmp_path):
    """ser2net serving the simulator's tty over RFC 2217 on 127.0.0.1, as in a rig."""
    ser2net = shutil.which("ser2net") or "/usr/sbin/ser2net"
    if not Path(ser2net).exists():
        pytest.fail("ser2net is not installed (make system)")
    port = _free_port()
    config = tmp_path / "ser2net.yaml"
    config.write_text(
        "connection: &capkey\n"
        f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
        f"  connector: serialdev,{tty.path},115200n81,local\n"
        "  options:\n"
        "    kickolduser: true\n"
    )
    proc = subprocess.Popen([ser2net, "-n", "-d", "-c", str(config), "-P", str(tmp_path / "pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "ser2net did not start"
            time.sleep(0.05)
    yield f"rfc2217://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(5)


def test_an_rfc2217_url_reaches_the_device(rfc2217, capsys):
    with Device.open(rfc2217) as dev:
        assert dev.info().board == "sim"
        dev.ping(b"over RFC 2217")
    status, out, err = run(capsys, "info", "--device", rfc2217)
    assert status == 0, err
    assert "sim" in out


def test_rfc2217_urls_do_not_wait_for_modem_line_acknowledgements():
    assert _pyserial_url("rfc2217://rig:4001") == "rfc2217://rig:4001?ign_set_control"
    assert _pyserial_url("rfc2217://rig:4001?timeout=3") == \
        "rfc2217://rig:4001?timeout=3&ign_set_control"
    assert _pyserial_url("rfc2217://rig:4001?ign_set_control") == "rfc2217://rig:4001?ign_set_control"
    assert _pyserial_url("/dev/ttyACM0") == "/dev/ttyACM0"
