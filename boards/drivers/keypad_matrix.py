# 4x4 membrane keypad scanned as a matrix: rows are driven low one at a time, columns are read
# with pull-ups (a pressed key reads 0). Pins arrive as callables so that the simulator and the
# tests can pass closures and the boards pass machine.Pin objects (Pin(n)(0) sets, Pin(n)() reads).
import asyncio
import time

from micropython import const

LAYOUT = "123A456B789C*0#D"  # row-major, as printed on the keypad
_NONE = const(-1)


class KeypadMatrix:
    # Class attributes so tests can shorten them.
    SCAN_MS = 5
    DEBOUNCE_MS = 20

    def __init__(self, rows, cols, queue, layout=LAYOUT):
        if len(rows) * len(cols) != len(layout):
            raise ValueError("layout does not match the matrix")
        self.rows = rows
        self.cols = cols
        self.queue = queue
        self.layout = layout
        self._candidate = _NONE  # scan code seen but not yet stable
        self._since = 0
        self._stable = _NONE  # scan code reported as pressed
        self._task = None
        for row in rows:
            row(1)

    def scan_code(self):
        """Index into the layout of the one pressed key, or -1. With several keys down the
        first in scan order wins: a PIN pad has no chords."""
        rows = self.rows
        cols = self.cols
        ncols = len(cols)
        for r in range(len(rows)):  # range loops do not allocate; enumerate would
            rows[r](0)
            for c in range(ncols):
                if not cols[c]():
                    rows[r](1)
                    return r * ncols + c
            rows[r](1)
        return _NONE

    def held(self):
        """Every key down now, in layout order: the boot-time check of a key combination
        (maintenance mode). Two keys of one row or one column read true; three in a rectangle
        can add a ghost fourth, as on any matrix without diodes."""
        rows = self.rows
        cols = self.cols
        ncols = len(cols)
        out = ""
        for r in range(len(rows)):
            rows[r](0)
            for c in range(ncols):
                if not cols[c]():
                    out += self.layout[r * ncols + c]
            rows[r](1)
        return out

    def poll(self, now_ms):
        """One scan step; pushes a key to the queue when a press has been stable DEBOUNCE_MS."""
        code = self.scan_code()
        if code != self._candidate:
            self._candidate = code
            self._since = now_ms
            return
        if code == self._stable or time.ticks_diff(now_ms, self._since) < self.DEBOUNCE_MS:
            return
        self._stable = code
        if code != _NONE:
            self.queue.put_nowait(self.layout[code])

    async def _run(self):
        while True:
            self.poll(time.ticks_ms())
            await asyncio.sleep_ms(self.SCAN_MS)

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def deinit(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
