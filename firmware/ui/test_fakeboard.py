# A board for the UI's unit tests (run inside MicroPython): a framebuf display that counts
# show() and power() calls, a KeyQueue keypad the test feeds, and a dict store.
import asyncio

import framebuf

from ui.keyqueue import KeyQueue


class FakeDisplay(framebuf.FrameBuffer):
    def __init__(self):
        self.buffer = bytearray(128 * 64 // 8)
        super().__init__(self.buffer, 128, 64, framebuf.MONO_VLSB)
        self.shows = 0
        self.on = True
        self.power_calls = 0

    def show(self):
        self.shows += 1

    def power(self, on):
        self.on = bool(on)
        self.power_calls += 1


class FakeStore:
    def __init__(self):
        self.records = {}

    def load(self, name):
        return self.records.get(name)

    def save(self, name, data):
        self.records[name] = bytes(data)


class FakeBoard:
    name = "test"
    serial = "0123456789abcdef"
    heap_total = 194560

    def __init__(self):
        self.display = FakeDisplay()
        self.keypad = KeyQueue()
        self.beeps = 0

    def beep(self):
        self.beeps += 1

    def press(self, keys):
        for k in keys:
            self.keypad.put_nowait(k)


async def settle(ms=30):
    # let the pump, the home loop and the flows run
    await asyncio.sleep_ms(ms)


async def until(cond, ms=1000):
    """Poll cond() every 5 ms until it is true; AssertionError after ms."""
    for _ in range(ms // 5):
        if cond():
            return
        await asyncio.sleep_ms(5)
    if not cond():
        raise AssertionError("condition not met in %d ms" % ms)


async def accept(ui, board):
    """OK on the confirmation on screen: B until its end (the "D:OK *:ANNULER" hint, its last
    row) is shown, as a confirmation longer than the screen wants, then D."""
    for _ in range(30):
        if "D:OK *:ANNULER" in ui.snapshot()[1]:
            board.press("D")
            await settle()
            return
        board.press("B")
        await settle(5)
    raise AssertionError("no D:OK on %r" % ui.snapshot()[1])


def text(ui):
    """The rows shown, joined with spaces (the way a person reads wrapped text)."""
    return " ".join(ui.snapshot()[1])
