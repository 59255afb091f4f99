"""Both codecs together: the host library against the firmware's link server in the MicroPython
unix port (Pico heap) over TCP, including random garbage on the wire. Two devices:

- "link": firmware/link alone (host/tests/link_mp_server.py, fake board and UI): the two ends of
  the protocol, nothing else;
- "sim": the whole simulator (capkey_dev.sim), firmware/main.py with its UI and apps.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capkey.link.device import Device
from capkey.link.errors import LinkError
from capkey.link.transport import Frame, FrameError, Kind, Transport, encode, header

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))


class _LinkOnly:
    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [MICROPYTHON, "-X", "heapsize=190k", str(HERE / "link_mp_server.py"), str(ROOT),
             str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline()
        if b"listening" not in line:
            self.proc.kill()
            raise RuntimeError(f"link server did not start: {line!r}")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module", params=["link", "sim"])
def dut(request, tmp_path_factory):
    if request.param == "link":
        s = _LinkOnly()
        yield s
        s.stop()
        return
    sim_mod = pytest.importorskip("capkey_dev.sim")
    s = sim_mod.Simulator(tmp_path_factory.mktemp("link-sim"), register=False)
    s.start()
    yield s
    s.stop()


def _raw(dut) -> Transport:
    return Transport.open(dut.url)


def _frames_until(t: Transport, rid: int, timeout: float = 3.0) -> list[Frame | FrameError]:
    out: list[Frame | FrameError] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ev = t.receive(end - time.monotonic())
        if ev is None:
            break
        out.append(ev)
        if isinstance(ev, Frame) and ev.kind == Kind.RESPONSE and ev.rid == rid:
            return out
    raise AssertionError(f"no response for rid {rid}: {out}")


def test_hello_info_ping(dut):
    with Device.open(dut.url) as dev:
        assert dev.protocol_version == 1 and dev.max_payload == 1024
        info = dev.info()
        assert info.board == "sim" and info.protocol_version == 1
        assert 0 < info.heap_free <= 190 * 1024 and info.heap_total <= 190 * 1024
        for n in (0, 1, 255, 1024):
            dev.ping(bytes(random.getrandbits(8) for _ in range(n)))


def test_screen(dut):
    with Device.open(dut.url) as dev:
        fb, lines = dev.screen()
    if isinstance(dut, _LinkOnly):  # the fake UI of test_support.py
        assert fb == bytes(range(256)) * 4 and lines == ["Choisir la fonction", "A CODE  B SIGNÉ"]
    else:
        assert len(fb) == 1024 and any(fb)
        assert "Choisir la fonction" in " ".join(lines)


def test_unknown_command(dut):
    with Device.open(dut.url) as dev:
        with pytest.raises(LinkError) as e:
            dev.call(0x1E)
    assert e.value.code is LinkError.ERR.UNKNOWN_COMMAND


def test_oversize_bad_crc_truncated_then_valid(dut):
    with _raw(dut) as t:
        port = t._port
        port.write(header(Kind.REQUEST, 0x0101, 0x03, 4000) + b"\x00" * 16)
        assert _frames_until(t, 0x0101)[-1] == Frame(Kind.RESPONSE, 0x0101, LinkError.ERR.TOO_LONG)
        bad = bytearray(encode(Kind.REQUEST, 0x0102, 0x03, b"abc"))
        bad[-1] ^= 0x55
        port.write(bytes(bad))
        assert _frames_until(t, 0x0102)[-1] == Frame(Kind.RESPONSE, 0x0102, LinkError.ERR.CRC)
        port.write(encode(Kind.REQUEST, 0x0103, 0x03, b"0123456789")[:15])  # then silence
        assert _frames_until(t, 0x0103)[-1] == Frame(Kind.RESPONSE, 0x0103,
                                                      LinkError.ERR.INVALID_FRAME)
        port.write(encode(Kind.REQUEST, 0x0104, 0x03, b"alive"))
        assert _frames_until(t, 0x0104)[-1] == Frame(Kind.RESPONSE, 0x0104, 0, b"alive")


def test_random_garbage_against_the_running_simulator(dut):
    rng = random.Random(1234)
    with _raw(dut) as t:
        port = t._port
        for i in range(40):
            junk = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
            for _ in range(rng.randrange(3)):  # sprinkle SYNCs and real-looking headers
                at = rng.randrange(len(junk))
                junk[at:at] = header(rng.randrange(1, 5), rng.randrange(65536), 3,
                                     rng.randrange(0, 2048))[: rng.randrange(2, 10)]
            port.write(bytes(junk))
            if i % 8 == 7:
                time.sleep(0.3)  # let the gap rule drop whatever partial frame is held
        time.sleep(0.3)
        port.write(encode(Kind.REQUEST, 0xABCD, 0x03, b"still alive"))
        evs = _frames_until(t, 0xABCD, timeout=5.0)
    assert evs[-1] == Frame(Kind.RESPONSE, 0xABCD, 0, b"still alive")
    for ev in evs[:-1]:  # garbage only ever earns error responses
        assert isinstance(ev, Frame) and ev.kind == Kind.RESPONSE, ev
        assert ev.code in (LinkError.ERR.CRC, LinkError.ERR.TOO_LONG, LinkError.ERR.INVALID_FRAME,
                           LinkError.ERR.UNKNOWN_COMMAND, LinkError.ERR.INVALID_PARAMETER), ev
    with Device.open(dut.url) as dev:
        dev.ping(b"and for a new connection")
