# The simulator board: the board contract of docs/architecture.md on the MicroPython unix port.
#
#   display     a 128x64 MONO_VLSB FrameBuffer; show() copies the drawing buffer to the glass,
#               read with glass() (all dark while power(False)). On a board that copy is the
#               panel controller's own memory, not the MCU's heap: here it is the file
#               .sim-glass beside the flash, so the heap figures count what a board's do
#   keypad      ui.keyqueue.KeyQueue, fed by inject_key() (the link's PRESS command, tests)
#   lab         a lab board (docs/boards.md, "Lab mode"): the strap is fitted unless
#               CAPKEY_SIM_LAB_STRAP=0, which stands for a field unit: no inject_key (PRESS
#               refused, as on a board) and no lab marker on the screen
#   host        one TCP connection on 127.0.0.1:PORT = one host session
#   storage     a folder; the serial number made at first boot lives in it, so it is stable
#               for the folder and a fresh folder is a fresh device
#   reboot()    exits with REBOOT_EXIT; the host launcher (capkey_dev.sim) starts it again
#               (machine.reset() at the maintenance REPL too, boards/sim/repl.py)
#   keys_held() CAPKEY_SIM_HELD_KEYS: the keys held down while the simulator powers up
#               ("*#" asks for maintenance mode, firmware/maintenance.py: when the firmware's
#               main() returns True for it, boards/sim/main.py serves a REPL on the TCP port
#               instead of the link, boards/sim/repl.py)
#   launcher    CAPKEY_SIM_PARENT=pid: the simulator exits when that process is gone
#
# Crash injection ("pulling the USB plug", boards/sim/crash.py, loaded only when asked for): with
# CAPKEY_CRASH_AT=N in the environment, the Nth call of store.write_point kills the process on
# the spot with SIGKILL; CAPKEY_CRASH_TAG=prefix counts only the points whose tag starts with it.
#
# Heap figures (CAPKEY_HEAP_STATS=1, capkey_dev.sim's heap_stats=True, for benchmarks): the garbage
# collector runs after every HEAP_STATS_THRESHOLD bytes allocated, and the heap in use is noted
# (firmware/ondemand.py note(), read with the HEAP link command) at every screen update and every
# store write point, besides the loads and releases of on-demand modules. gc.mem_alloc() then
# counts live objects plus at most the threshold of garbage: the peak is an upper bound of the
# live heap at those points, within HEAP_STATS_THRESHOLD. Slower; off by default.
import asyncio
import gc
import io
import os
import sys

import framebuf
from micropython import const

REBOOT_EXIT = 75  # host/dev/capkey_dev/sim.py restarts the simulator when it exits with this code
KEYS = "0123456789ABCD*#"
_SERIAL_FILE = const(".sim-serial")  # a leading dot keeps it out of the store's record names
_GLASS_FILE = const(".sim-glass")  # what the display shows (SimDisplay)
_PARENT_POLL_MS = const(1000)

HEAP_STATS_THRESHOLD = 512


class SimDisplay(framebuf.FrameBuffer):
    def __init__(self, width=128, height=64, glass=None):
        self.width = width
        self.height = height
        self.buffer = bytearray(width * height // 8)
        super().__init__(self.buffer, width, height, framebuf.MONO_VLSB)
        # what the glass shows: a file opened for update (the board's), or bytes in RAM (an
        # off-screen display, tests)
        self._glass = io.BytesIO() if glass is None else glass
        self.on = True
        self._to_glass()
        self.shows = 0
        self.sample = None  # fn() called at every show (heap figures)

    def show(self):
        self.shows += 1
        if self.sample is not None:
            self.sample()
        if self.on:
            self._to_glass()

    def power(self, on):
        self.on = bool(on)
        if self.on:
            self._to_glass()

    def _to_glass(self):
        self._glass.seek(0)
        self._glass.write(self.buffer)

    def glass(self):
        """The bytes the glass shows (MONO_VLSB, like the buffer)."""
        if not self.on:
            return bytes(len(self.buffer))
        self._glass.seek(0)
        return self._glass.read(len(self.buffer))


def _sampling(sample, then=None):
    # a write-point hook that notes the heap, then passes the tag on (crash injection)
    def hook(tag):
        sample()
        if then is not None:
            then(tag)

    return hook


def crash_hook_from_env(die=None):
    """The write-point hook CAPKEY_CRASH_AT asks for (boards/sim/crash.py, loaded only then), or
    None."""
    if not os.getenv("CAPKEY_CRASH_AT"):
        return None
    import crash

    return crash.from_env(die)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    part = "/" if path.startswith("/") else ""
    for piece in path.split("/"):
        if piece:
            part = part + piece if part in ("", "/") else part + "/" + piece
            if not _exists(part):
                os.mkdir(part)


def _hex(data):
    return "".join("%02x" % b for b in data)


def _known_profile(profile):
    """Is `profile` a board the simulator can stand for (catalog.py, generated from the host's
    board catalogue)? The table is dropped again: a resident copy would take heap from the flows
    on every simulated board, which a real board (whose board.py never imports it) does not pay."""
    import catalog

    try:
        return profile in catalog.BOARD_HEAP
    finally:
        sys.modules.pop("catalog", None)


class SimBoard:
    name = "sim"

    def __init__(self, port, storage, profile="rpi_pico"):
        from ui.keyqueue import KeyQueue

        if not _known_profile(profile):
            raise ValueError("unknown board profile " + profile)
        self.profile = profile
        self.port = port
        if len(storage) > 1 and storage.endswith("/"):
            storage = storage[:-1]
        _makedirs(storage)
        self.storage = storage
        self.serial = self._serial()
        self.display = SimDisplay(glass=open(storage + "/" + _GLASS_FILE, "w+b"))
        self.keypad = KeyQueue()
        self.lab = os.getenv("CAPKEY_SIM_LAB_STRAP") != "0"
        if not self.lab:
            self.inject_key = None
        gc.collect()
        self.heap_total = gc.mem_free() + gc.mem_alloc()
        self.listening = False

    def _serial(self):
        path = self.storage + "/" + _SERIAL_FILE
        try:
            with open(path) as f:
                serial = f.read().strip()
            if len(serial) == 16:
                return serial
        except OSError:
            pass
        serial = _hex(os.urandom(8))
        with open(path + ".new", "w") as f:
            f.write(serial + "\n")
        os.rename(path + ".new", path)
        return serial

    def random(self, n):
        return os.urandom(n)

    def inject_key(self, key):
        if len(key) != 1 or key not in KEYS:
            raise ValueError("not a key: " + key)
        self.keypad.put_nowait(key)

    def reboot(self):
        raise SystemExit(REBOOT_EXIT)

    def keys_held(self):
        return os.getenv("CAPKEY_SIM_HELD_KEYS") or ""  # checked by the launcher

    def install_crash_hook(self, die=None, hook=None):
        """Arms CAPKEY_CRASH_AT / CAPKEY_CRASH_TAG on store.write_point (or the given hook, when
        boards/sim/main.py shares one counter with firmware/slots.py); returns the hook."""
        import store

        if hook is None:
            hook = crash_hook_from_env(die)
        if self._sample is not None:
            hook = _sampling(self._sample, hook)
        store.set_hook(hook)
        return hook

    _sample = None

    def heap_stats(self, on=True):
        """Heap figures mode (see the top of this file): a low GC threshold, and the heap in use
        noted at every screen update and store write point (call before install_crash_hook)."""
        if not on:
            return
        import ondemand

        gc.threshold(HEAP_STATS_THRESHOLD)
        self._sample = ondemand.note
        self.display.sample = ondemand.note

    async def serve_host(self, handler):
        # CAPKEY_LINK_IDLE_MS: a short idle timeout for the tests of the link's connection limits
        # (the link server's IDLE_MS otherwise, docs/protocol.md "Connections")
        idle = os.getenv("CAPKEY_LINK_IDLE_MS")
        if idle:
            self.link_idle_ms = int(idle)

        async def connection(reader, writer):
            try:
                # the link server writes a frame as three pieces: with Nagle's algorithm on, TCP
                # would hold the later ones for the host's ACK (40 ms a frame)
                writer.s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (the unix port names neither)
                await handler(reader, writer)
            except OSError:
                pass  # the host went away mid-frame: a closed connection, not a device fault
            finally:
                try:
                    writer.close()
                    await writer.wait_closed()
                except OSError:
                    pass

        parent = os.getenv("CAPKEY_SIM_PARENT")
        if parent:
            asyncio.create_task(self._watch_parent(parent))
        server = await asyncio.start_server(connection, "127.0.0.1", self.port)
        self.listening = True
        print("capkey-sim listening on 127.0.0.1:%d" % self.port)
        try:
            await server.wait_closed()
        finally:
            self.listening = False
            server.close()


    async def _watch_parent(self, pid):
        # The launcher (capkey_dev.sim) names itself in CAPKEY_SIM_PARENT: when it dies without
        # stopping us (SIGKILL, a crashed test run), we go too instead of holding the port.
        path = "/proc/" + pid
        while _exists(path):
            await asyncio.sleep_ms(_PARENT_POLL_MS)
        sys.stderr.write("capkey-sim: launcher " + pid + " is gone, exiting\n")
        raise SystemExit(0)


BOARD = None


def configure(port, storage, profile="rpi_pico"):
    """Builds the board (boards/sim/main.py calls this before the firmware starts)."""
    global BOARD
    BOARD = SimBoard(port, storage, profile)
    return BOARD
