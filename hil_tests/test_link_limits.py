"""The simulator's link connections (docs/protocol.md, "Connections"): idle TCP connections can
neither exhaust the device's heap nor lock the host out, a connection beyond the bound is told
BUSY and closed, and idle ones are closed after the idle timeout."""

from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest
from cap_support import InThread
from click.testing import CliRunner

from capkey._cli.__main__ import cli
from capkey.link.device import CMD_HELLO
from capkey.link.errors import Cancelled, LinkError
from capkey.link.transport import Decoder, Frame, Kind, encode

pytestmark = pytest.mark.sim_only

MAX_CONNECTIONS = 3  # docs/protocol.md, "Connections"
IDLE_S = 4.0  # the simulator's idle timeout here (CAPKEY_LINK_IDLE_MS); the default is minutes
KEY_GENERATE = 0x41  # waits for the person: a request that stays in flight


@pytest.fixture
def short_idle_sim(new_sim, monkeypatch):
    """A simulator of its own whose idle timeout is IDLE_S."""
    monkeypatch.setenv("CAPKEY_LINK_IDLE_MS", str(int(IDLE_S * 1000)))
    return new_sim()


def closed_within(socks: list[socket.socket], seconds: float, want: int) -> set[socket.socket]:
    """The sockets the device closed (EOF or reset), waiting up to `seconds` for `want` of them."""
    gone: set[socket.socket] = set()
    with selectors.DefaultSelector() as sel:
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while len(gone) < want and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                s = key.fileobj
                try:
                    if s.recv(4096):
                        continue  # an answer is not a close
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                gone.add(s)
                sel.unregister(s)
    return gone


def assert_console_clean(sim) -> None:
    for bad in ("MemoryError", "Traceback"):
        assert bad not in sim.console, sim.console


def test_64_idle_connections_cannot_lock_the_host_out(short_idle_sim):
    sim = short_idle_sim
    held = [socket.create_connection(("127.0.0.1", sim.port)) for _ in range(64)]
    try:
        result = CliRunner().invoke(cli, ["info", "--device", sim.url])
        assert result.exit_code == 0, result.output
        assert "Board         : sim" in result.output
        # all but the last few were closed at once: their places went to newer connections
        early = closed_within(held, IDLE_S / 2, len(held) - MAX_CONNECTIONS)
        assert len(early) >= len(held) - MAX_CONNECTIONS
        # and the rest after the idle timeout, their buffers given back for the next host
        late = closed_within([s for s in held if s not in early], IDLE_S + 3, len(held))
        assert len(early) + len(late) == len(held)
        assert_console_clean(sim)
        assert sim.running
        result = CliRunner().invoke(cli, ["info", "--device", sim.url])
        assert result.exit_code == 0, result.output
    finally:
        for s in held:
            s.close()


def test_a_connection_beyond_the_bound_is_answered_busy_and_closed(short_idle_sim, connect):
    sim = short_idle_sim
    devices = [connect(sim.url) for _ in range(MAX_CONNECTIONS)]
    stop = threading.Event()
    calls = [InThread(d.call, KEY_GENERATE, b"\x00", timeout=60, cancel=stop) for d in devices]
    try:
        time.sleep(0.5)  # every connection now has a request in flight: none is idle
        extra = socket.create_connection(("127.0.0.1", sim.port))
        try:
            extra.sendall(encode(Kind.REQUEST, 7, CMD_HELLO, bytes((1, 1))))
            extra.settimeout(5)
            got = b""
            while chunk := extra.recv(4096):  # until the device closes it
                got += chunk
        finally:
            extra.close()
        assert Decoder().feed(got) == [Frame(Kind.RESPONSE, 7, LinkError.ERR.BUSY, b"")]
        stop.set()
        for c in calls:  # the connections in use were not touched: their requests still ran
            with pytest.raises(Cancelled):
                c.join(10)
    finally:
        stop.set()
        for d in devices:
            d.close()
    assert_console_clean(sim)
