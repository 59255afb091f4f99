# Ui: the device's screen and keypad, shared by the home loop and by link handlers.
#
# Keys: one pump task reads board.keypad and fills a small inbox; whoever owns the screen reads
# the inbox through ui.key(). The pump also wakes a blanked screen (that key is dropped).
# Ownership: an asyncio.Lock. The home loop (ui.run(), shell.py) holds it while it shows the home
# screen or runs a flow; a link handler takes it with `async with ui.foreground():`, which
# interrupts the home loop while it is idle at the home screen or in the MENU; a flow the person
# started (CODE, SIGN, an app's menu entry) finishes first, so a host cannot break into a PIN
# entry (flows time out). Giving the lock back redraws the home screen.
#
# The input primitives (digits, amount, choose, confirm, message) are in inputs.py, loaded while
# one runs (firmware/ondemand.py); the home loop and the MENU in shell.py, mixed into Ui.
import asyncio
from time import ticks_diff, ticks_ms

import ondemand

from . import i18n
from .keyqueue import KeyQueue
from .screen import COLS, LEFT, ROWS, Screen, wrap
from .shell import Shell


class _Foreground:
    # `async with ui.foreground():` -> the Ui. Reentrant for the task that owns the screen.
    def __init__(self, ui):
        self._ui = ui

    async def __aenter__(self):
        await self._ui._acquire()
        return self._ui

    async def __aexit__(self, exc_type, exc, tb):
        self._ui._release(exc_type)
        return False


class Ui(Shell):
    IDLE_MS = 60000  # home screen blanks after this long without a key
    INPUT_MS = 60000  # default inactivity timeout of the input primitives
    NOTICE_MS = 2000  # how long "Opération annulée" / "Erreur" stay before the home screen

    def __init__(self, board, store=None, version=""):
        self.board = board
        self.store = store
        self.version = version
        self.scr = Screen(board.display, getattr(board, "lab", False))
        self.cancelled = False  # the last input primitive ended with ANNULER
        self.last_error = None  # the last exception a flow raised (the screen said "Erreur")
        self._inbox = KeyQueue(8)
        self._ev = asyncio.Event()  # a key arrived, or a foreground task asks for the screen
        self._lock = asyncio.Lock()
        self._owner = None  # task holding the screen
        self._depth = 0
        self._fg_waiting = 0
        self._fg = _Foreground(self)
        self._pump_task = None
        self._activity = ticks_ms()
        self._functions = {}  # home key -> (label, flow)
        self._menu_items = []  # (label, flow)
        self._notice = None
        self._preemptible = False  # the MENU gives way to a foreground task at once

    # --- apps ----------------------------------------------------------------------------

    def add_function(self, key, label, flow):
        """Bind a home-screen key ("A" CODE, "B" SIGN) to `async def flow(ui)`."""
        if len(key) != 1 or key not in "0123456789ABCD*":
            raise ValueError("key")
        self._functions[key] = (label, flow)

    def add_menu_item(self, label, flow):
        """Add an entry to the MENU (#) list after "Infos appareil"."""
        self._menu_items.append((label, flow))

    # --- input primitives (ui/inputs.py has their arguments and what they return) ---------

    async def _input(self, name, args, kw):
        async with ondemand.use("ui.inputs") as m:
            return await getattr(m, name)(self, *args, **kw)

    def digits(self, *args, **kw):
        return self._input("digits", args, kw)

    def amount(self, *args, **kw):
        return self._input("amount", args, kw)

    def choose(self, *args, **kw):
        return self._input("choose", args, kw)

    def confirm(self, *args, **kw):
        return self._input("confirm", args, kw)

    def message(self, *args, **kw):
        return self._input("message", args, kw)

    # --- screen --------------------------------------------------------------------------

    def show(self, lines, title=None):
        """Title (inverted, up to 2 rows) then `lines` (str) wrapped at
        spaces to 16 columns; what does not fit is cut (the scroll bar says so)."""
        self._check_owner()
        self._paint(self._layout(lines), title)

    def snapshot(self):
        """(a view of the 1024-byte framebuffer, [text of each row shown]) for the link. A view, not
        a copy: the link copies it straight into its send buffer, and a 1 KB allocation can fail
        in a fragmented heap at the peak of a flow."""
        return memoryview(self.board.display), self.scr.lines()

    def _layout(self, lines):
        if isinstance(lines, str):  # one line given as a str
            lines = (lines,)
        rows = []
        for line in lines:
            wrap(line, COLS, rows)
        return rows

    def _paint(self, rows, title=None, top=0, align=LEFT, inv_a=-1, inv_b=-1):
        """Draw the title and rows[top:] (rows inv_a..inv_b-1 inverted), with a scroll bar when
        the rows do not all fit. Returns the number of content rows the screen has under the
        title."""
        scr = self.scr
        scr.clear()
        r = 0
        if title is not None:
            for text in wrap(title, COLS, [])[:2]:
                scr.row(r, text, True)
                r += 1
        avail = ROWS - r
        n = len(rows)
        for i in range(avail):
            j = top + i
            if j >= n:
                break
            scr.row(r + i, rows[j], inv_a <= j < inv_b, align)
        scr.scrollbar(r, avail, top, n)
        scr.flush()
        return avail

    # --- keys ----------------------------------------------------------------------------

    async def key(self, timeout_ms=None):
        """The next key pressed, or None after timeout_ms (None: wait forever)."""
        self._check_owner()
        self._ensure_pump()
        start = ticks_ms()
        while True:
            k = self._inbox.get_nowait()
            if k is not None:
                return k
            if self._preemptible and self._fg_waiting:
                return None  # browsing the MENU: let the link handler have the screen
            if timeout_ms is None:
                left = None
            else:
                left = timeout_ms - ticks_diff(ticks_ms(), start)
                if left <= 0:
                    return None
            await self._wait(left)

    async def _wait(self, ms):
        # Wait for a key or a foreground request (or ms). The caller checked the inbox first,
        # with no await in between, so no wake-up is lost.
        self._ev.clear()
        if ms is None:
            await self._ev.wait()
            return
        try:
            await asyncio.wait_for_ms(self._ev.wait(), ms)
        except asyncio.TimeoutError:
            pass

    def _ensure_pump(self):
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())

    async def _pump(self):
        async for k in self.board.keypad:
            self._activity = ticks_ms()
            if self.scr.blanked:
                self.scr.wake()  # this key only wakes the screen
            elif not self._inbox.put_nowait(k):
                self._beep()
            self._ev.set()

    def reset(self):
        """After an unexpected error (firmware/main.py): drop the keys typed ahead and any
        pending notice; the home loop, restarted, shows the first screen."""
        self._inbox.clear()
        self._notice = None
        self.cancelled = False

    def close(self):
        """Stop the key pump (tests, shutdown)."""
        t = self._pump_task
        self._pump_task = None
        if t is not None:
            t.cancel()

    def _beep(self):
        beep = getattr(self.board, "beep", None)
        if beep is not None:
            beep()

    # --- ownership -----------------------------------------------------------------------

    def foreground(self):
        """`async with ui.foreground():` takes the screen and keypad for a link handler."""
        return self._fg

    def _check_owner(self):
        o = self._owner
        if o is not None and o is not asyncio.current_task():
            raise RuntimeError("ui busy: use ui.foreground()")

    async def _acquire(self):
        me = asyncio.current_task()
        if self._owner is me:
            self._depth += 1
            return
        self._fg_waiting += 1
        self._ev.set()  # interrupts the home loop's wait at the home screen
        try:
            await self._lock.acquire()
        finally:
            self._fg_waiting -= 1
        self._owner = me
        self._depth = 1
        self.cancelled = False

    def _release(self, exc_type=None):
        self._depth -= 1
        if self._depth > 0:
            return
        if self.cancelled or (
            exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        ):
            self._notice = i18n.CANCELLED
        self._owner = None
        self._depth = 0
        self._activity = ticks_ms()
        self._lock.release()
