"""The simulator as a serial device: a pseudo-terminal bridged to its TCP port, the way a board's
USB CDC port is a tty. For what only a tty exercises (termios, DTR, a port that goes away and
comes back) and for the programs that only take a tty (ser2net, labgrid's exporter).

    with Simulator(tmp) as sim, SimTty(sim, tmp / "ttyCAPKEY0") as tty:
        Device.open(str(tty.path))          # a /dev/tty… path like any other
        sim.kill()                          # unplugged: the node goes, an open port fails
        sim.start(); tty.wait_plugged()     # plugged back: a new pty at the same path

The node follows the simulator like a USB device node follows the board: `path`, a symbolic link
to the current pty (as /dev/serial/by-id/… is to /dev/ttyACM0), exists while the bridge holds
its TCP connection to the running simulator; when the simulator stops, the link goes and the pty
is closed; when it is back, a new pty takes the same path. The bridge's one connection is the
link's one stream, as a board's link sees one USB stream.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from pathlib import Path

from capkey_dev.sim import Simulator

_CHUNK = 4096
_POLL = 0.05


class SimTty:
    def __init__(self, sim: Simulator, path: str | os.PathLike):
        self.sim = sim
        self.path = Path(path)
        self._master: int | None = None
        self._slave: int | None = None
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def wait_plugged(self, timeout: float = 15.0) -> None:
        """Waits until the node is there (the simulator running and connected)."""
        self._wait(True, timeout)

    def wait_unplugged(self, timeout: float = 15.0) -> None:
        """Waits until the node is gone (the simulator stopped)."""
        self._wait(False, timeout)

    def _wait(self, plugged: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.plugged != plugged:
            if time.monotonic() > deadline:
                state = "did not appear" if plugged else "was still there"
                raise TimeoutError(f"{self.path} {state} after {timeout:g} s")
            time.sleep(_POLL)

    def start(self) -> SimTty:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.wait_plugged()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self._unplug()

    def __enter__(self) -> SimTty:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the device node -------------------------------------------------------------------

    def _plug(self, sock: socket.socket) -> None:
        master, slave = os.openpty()
        # raw, no echo, from the start: what the simulator sends before the host opens the port
        # must not come back to it as if the host had sent it
        tty.setraw(slave)
        os.set_blocking(master, False)  # a host that does not read must not stall the bridge
        self._sock, self._master, self._slave = sock, master, slave
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.path)

    def _unplug(self) -> None:
        # the node goes first, then the pty: a host that has it open reads an error
        self.path.unlink(missing_ok=True)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None

    # -- the bridge ------------------------------------------------------------------------

    def _connect(self) -> socket.socket | None:
        if not self.sim.running:
            return None
        try:
            sock = socket.create_connection(("127.0.0.1", self.sim.port), timeout=1)
        except OSError:
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sock is None:
                sock = self._connect()
                if sock is None:
                    self._stop.wait(_POLL)
                    continue
                self._plug(sock)
            master, sock = self._master, self._sock
            assert master is not None and sock is not None
            ready, _, _ = select.select([master, sock], [], [], _POLL)
            if master in ready:
                try:
                    data = os.read(master, _CHUNK)
                except OSError:  # nothing after all
                    data = b""
                if data:
                    try:
                        sock.sendall(data)
                    except OSError:
                        self._unplug()  # the simulator went
                        continue
            if sock in ready:
                try:
                    data = sock.recv(_CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._unplug()
                    continue
                with contextlib.suppress(OSError):  # full: nobody reads, the bytes are lost
                    os.write(master, data)
