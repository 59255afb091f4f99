"""A labgrid place with a capkey board in it, all on 127.0.0.1: a labgrid coordinator, an exporter
that exports the board's serial port through ser2net (RFC 2217), and a lab-mode simulator behind a
pseudo-terminal standing in for the board on its USB cable, its power switched by labgrid's
ExternalPowerDriver. What CI runs the HIL suite under labgrid on (host/tests/test_lab.py), and how
a lab engineer tries the setup before a rig exists (docs/boards.md, "The lab on labgrid").

    python -m capkey_dev.lab up DIR          # the place, until Ctrl-C or SIGTERM; prints how to
                                             # run the suite
    python -m capkey_dev.lab power on|off DIR   # the power driver's commands (DIR/env.yaml)
    pytest --lg-env DIR/env.yaml hil_tests     # the env names the coordinator

The serial node is /dev/ttyCAPKEY-<name> (labgrid's exporter exports only ports under /dev/):
creating it needs root. Power off stops the simulator, and the node goes, as a board's USB node
goes when its hub port is switched off; power on starts it again from the same flash folder.

Exit statuses of the command: 0 done, 1 the lab could not start or a power command failed,
2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from capkey_dev.sim import Simulator, free_port
from capkey_dev.simtty import SimTty

PLACE = "capkey-1"
EXPORTER = "capkey-lab"
ENV_FILE = "env.yaml"
EXPORTER_FILE = "exporter.yaml"
_POWER_SOCKET = "power.sock"
_START_TIMEOUT = 30.0


_URL_SCRIPT = """
import sys
from labgrid import Environment
from labgrid.resource import NetworkSerialPort
env = Environment(sys.argv[1])
try:
    port = env.get_target("main").get_resource(NetworkSerialPort)
    print(f"rfc2217://{port.host}:{port.port}")
finally:
    env.cleanup()
"""


class LabError(Exception):
    """The lab did not start, or a power command failed (one line)."""


def _tool(name: str) -> str:
    # labgrid's commands sit next to the interpreter running this (the venv)
    path = Path(sys.executable).with_name(name)
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise LabError(f"{name} not found: install labgrid (pip install labgrid)")
    return found


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise LabError(f"{what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise LabError(f"{what} did not listen on 127.0.0.1:{port} within {_START_TIMEOUT:g} s")
        time.sleep(0.1)


class Rig:
    """The place: `with Rig(folder) as rig:` starts everything, then rig.env (the labgrid
    environment file for pytest --lg-env) and rig.coordinator (for LG_COORDINATOR) are set."""

    def __init__(self, folder: str | os.PathLike, name: str = "lab0"):
        self.folder = Path(folder).resolve()
        self.node = Path(f"/dev/ttyCAPKEY-{name}")
        self.env = self.folder / ENV_FILE
        self.coordinator = ""
        self.sim: Simulator | None = None
        self._tty: SimTty | None = None
        self._procs: list[subprocess.Popen] = []
        self._log: IO[bytes] | None = None  # labgrid.log, the labgrid processes' output
        self._power: socket.socket | None = None
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Rig:
        if not os.access("/dev", os.W_OK):
            raise LabError(f"cannot create {self.node}: labgrid exports serial ports under /dev/ "
                           "only, and /dev is writable by root only")
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start_board()
            self._start_labgrid()
        except BaseException:
            self.close()
            raise
        return self

    def _start_board(self) -> None:
        self.sim = Simulator(self.folder / "flash", register=False)  # lab strap fitted
        self.sim.start()
        self._tty = SimTty(self.sim, self.node).start()
        sock_path = self.folder / _POWER_SOCKET
        sock_path.unlink(missing_ok=True)
        self._power = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._power.bind(str(sock_path))
        self._power.listen(2)
        threading.Thread(target=self._serve_power, daemon=True).start()

    def _start_labgrid(self) -> None:
        port = free_port()
        self.coordinator = f"127.0.0.1:{port}"
        self._log = log = open(self.folder / "labgrid.log", "ab")  # noqa: SIM115 (closed in close())
        coord = subprocess.Popen([_tool("labgrid-coordinator"), "-l", self.coordinator],
                                 stdout=log, stderr=log, cwd=self.folder)
        self._procs.append(coord)
        _wait_port(port, coord, "labgrid-coordinator")
        (self.folder / EXPORTER_FILE).write_text(exporter_config(self.node))
        exporter = subprocess.Popen(
            [_tool("labgrid-exporter"), "-c", self.coordinator, "-n", EXPORTER,
             "--hostname", "127.0.0.1", str(self.folder / EXPORTER_FILE)],
            stdout=log, stderr=log, cwd=self.folder)
        self._procs.append(exporter)
        self.env.write_text(environment(self.folder, self.coordinator))
        self._client("create")
        self._client("add-match", f"{EXPORTER}/{PLACE}/*")
        self._wait_exported()
        self._client("acquire")

    def _client(self, *args: str) -> str:
        proc = subprocess.run([_tool("labgrid-client"), "-x", self.coordinator, "-p", PLACE, *args],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise LabError(f"labgrid-client {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def _wait_exported(self) -> None:
        # the exporter registers its resources a moment after it starts
        deadline = time.monotonic() + _START_TIMEOUT
        while "RawSerialPort" not in self._client("show"):
            if self._procs[-1].poll() is not None:
                raise LabError(f"labgrid-exporter exited (see {self.folder / 'labgrid.log'})")
            if time.monotonic() > deadline:
                raise LabError(f"the exporter's serial port did not reach the place within "
                               f"{_START_TIMEOUT:g} s (see {self.folder / 'labgrid.log'})")
            time.sleep(0.2)

    def serial_url(self) -> str:
        """The rfc2217:// URL of the board's port as the place exports it (ser2net's port),
        asked through labgrid's API in a process of its own: labgrid runs its client on the
        calling thread's asyncio loop, which a caller (a test run) may be running already."""
        proc = subprocess.run([sys.executable, "-c", _URL_SCRIPT, str(self.env)],
                              capture_output=True, text=True, timeout=60)
        url = proc.stdout.strip()
        if proc.returncode != 0 or not url.startswith("rfc2217://"):
            raise LabError(f"no serial port on the place: {proc.stderr.strip()[-300:]}")
        return url

    def close(self) -> None:
        if self.coordinator and self._procs:
            with contextlib.suppress(LabError, subprocess.TimeoutExpired):
                self._client("release")
        for proc in reversed(self._procs):  # the exporter stops its ser2net on SIGTERM
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._power is not None:
            self._power.close()
            self._power = None
            (self.folder / _POWER_SOCKET).unlink(missing_ok=True)
        if self._tty is not None:
            self._tty.close()
            self._tty = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- power -----------------------------------------------------------------------------

    def power(self, on: bool) -> None:
        """Switches the board on (start, node back) or off (stopped at once, node gone)."""
        sim, tty = self.sim, self._tty
        assert sim is not None and tty is not None
        with self._lock:
            if on:
                if not sim.running:
                    sim.start()
                tty.wait_plugged()
            else:
                if sim.running:
                    sim.kill()
                tty.wait_unplugged()

    def _serve_power(self) -> None:
        server = self._power
        while server is not None:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the lab stops
                return
            with conn:
                word = conn.makefile("r").readline().strip()
                try:
                    if word not in ("on", "off"):
                        raise LabError(f"unknown power command {word!r}")
                    self.power(word == "on")
                    conn.sendall(b"ok\n")
                except Exception as exc:  # told to the command, which exits 1
                    conn.sendall(f"error: {exc}\n".encode())


def exporter_config(node: Path) -> str:
    """labgrid-exporter's resources: the board's serial port, which it exports with ser2net."""
    return (f"{PLACE}:\n"
            "  RawSerialPort:\n"
            f"    port: {node}\n"
            "    speed: 115200\n")


def environment(folder: Path, coordinator: str) -> str:
    """The labgrid environment of the HIL suite for this place: the serial port comes from the
    place (NetworkSerialPort), power from ExternalPowerDriver running `capkey_dev.lab power`."""
    power = f"{sys.executable} -m capkey_dev.lab power"
    return ("options:\n"
            f"  coordinator_address: {coordinator}\n"
            "targets:\n"
            "  main:\n"
            "    resources:\n"
            "      RemotePlace:\n"
            f"        name: {PLACE}\n"
            "    drivers:\n"
            "      ExternalPowerDriver:\n"
            f"        cmd_on: \"{power} on {folder}\"\n"
            f"        cmd_off: \"{power} off {folder}\"\n")


def power_command(folder: str | os.PathLike, word: str) -> None:
    """Asks the rig running in `folder` to switch the board on or off; LabError if it cannot."""
    path = Path(folder) / _POWER_SOCKET
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(_START_TIMEOUT + 5)
            s.connect(str(path))
            s.sendall(word.encode() + b"\n")
            answer = s.makefile("r").readline().strip()
    except OSError as exc:
        raise LabError(f"no lab running in {folder}: {exc.strerror or exc}") from None
    if answer != "ok":
        raise LabError(answer or "the lab closed the connection")


def _raise_interrupt() -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capkey_dev.lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the place and keep it until Ctrl-C")
    up.add_argument("folder")
    pw = sub.add_parser("power", help="switch the place's board on or off")
    pw.add_argument("state", choices=("on", "off"))
    pw.add_argument("folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "power":
            power_command(args.folder, args.state)
            return 0
        # SIGTERM stops the place as Ctrl-C does: its processes and its /dev node go with it
        signal.signal(signal.SIGTERM, lambda *_: _raise_interrupt())
        with Rig(args.folder) as rig:
            print(f"labgrid place {PLACE} up: board on {rig.node} and {rig.serial_url()}, "
                  f"coordinator {rig.coordinator}")
            print(f"run: pytest --lg-env {rig.env} hil_tests", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except LabError as exc:
        print(f"capkey lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
