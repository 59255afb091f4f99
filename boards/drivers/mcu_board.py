# The board object for real microcontrollers (see docs/architecture.md, "The board contract").
# Each boards/<name>/board.py only states its pin map and calls McuBoard: the wiring is data.
import asyncio
import gc
import os
import sys

import machine
import micropython
from drivers.keypad_matrix import KeypadMatrix
from drivers.ssd1306 import SSD1306
from ui.keyqueue import KeyQueue

STORAGE = "/data"


class McuBoard:
    # Keys come only from the physical keypad on a field unit: PRESS is refused. A lab board
    # (its strap pin tied to ground at power-up, docs/boards.md "Lab mode") takes them from the
    # link too, and shows the lab marker on every frame.
    inject_key = None
    lab = False
    link_connections = 1  # the USB CDC stream: the link server makes one receive buffer

    def __init__(self, name, pins, i2c_id):
        self.name = name
        self.pins = pins
        i2c = machine.I2C(
            i2c_id, sda=machine.Pin(pins["sda"]), scl=machine.Pin(pins["scl"]), freq=400_000
        )
        self.display = SSD1306(i2c, addr=pins.get("oled_addr", 0x3C))
        self.keypad = KeyQueue()
        rows = [machine.Pin(p, machine.Pin.OUT, value=1) for p in pins["rows"]]
        cols = [machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP) for p in pins["cols"]]
        self.matrix = KeypadMatrix(rows, cols, self.keypad)
        strap = pins.get("lab")
        if strap is not None:
            # read once, at power-up: a strap fitted later changes nothing until the next boot
            self.lab = machine.Pin(strap, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0
        if self.lab:
            self.inject_key = self.keypad.put_nowait  # PRESS checked the keys
        self.serial = "".join("%02x" % b for b in machine.unique_id())
        gc.collect()
        self.heap_total = gc.mem_free() + gc.mem_alloc()
        try:
            os.mkdir(STORAGE)
        except OSError:
            pass  # already there
        self.storage = STORAGE

    def random(self, n):
        return os.urandom(n)

    def reboot(self):
        machine.reset()

    def keys_held(self):
        """The keys down now (firmware/maintenance.py checks its combination at power-up)."""
        return self.matrix.held()

    async def serve_host(self, handler):
        # USB CDC is the REPL's stream: stop Ctrl-C (0x03) from interrupting the firmware when
        # it appears inside a binary frame.
        micropython.kbd_intr(-1)
        try:
            await self._serve(handler)
        finally:
            micropython.kbd_intr(3)  # an error that stops the firmware leaves a usable REPL

    async def _serve(self, handler):
        self.matrix.start()
        import select

        stdin = sys.stdin.buffer
        stream = asyncio.StreamReader(stdin)
        arrived = select.poll()
        arrived.register(stdin, select.POLLIN)
        one = bytearray(1)

        def more():
            for _ in arrived.ipoll(0):  # ipoll: no list made per byte
                return True
            return False

        class Usb:
            # stdin.readinto() returns only once the whole buffer is full and blocks the event
            # loop until then: a host that stops mid-frame would freeze the device and the link
            # server's gap timer (docs/protocol.md) could never drop the partial frame. So wait
            # for one byte in the event loop, then take only the bytes already received.
            async def readinto(self, mv):
                n = await stream.readinto(one)
                if n:
                    mv[0] = one[0]
                    while n < len(mv) and more():
                        stdin.readinto(one)
                        mv[n] = one[0]
                        n += 1
                return n

        reader = Usb()
        writer = asyncio.StreamWriter(sys.stdout.buffer, {})
        while True:  # one host stream that never ends: the server returning means start again
            await handler(reader, writer)
