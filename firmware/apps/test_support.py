# What the app tests share: the install context an app gets from main.py (fake board, RAM store,
# a real Ui, a link that records handlers) and a link request. No tests here; the `test_` name
# keeps it off the boards.
import asyncio
import os

from applets.test_fakes import RamStore
from ui.core import Ui
from ui.test_fakeboard import FakeBoard


class Board(FakeBoard):
    def random(self, n):
        return os.urandom(n)


class FakeLink:
    def __init__(self):
        self.handlers = {}

    def register(self, cmd, handler):
        async def call(req):
            req.cmd = cmd  # as the link server's request slot carries it
            return await handler(req)

        self.handlers[cmd] = call


class Ctx:
    def __init__(self):
        self.board = Board()
        self.store = RamStore()
        self.ui = Ui(self.board, version="0.1.0")
        self.ui.NOTICE_MS = 50
        self.link = FakeLink()


class Req:
    def __init__(self, payload=b""):
        self._buf = bytearray(payload)
        self.payload = memoryview(self._buf)
        self.statuses = []

    async def keepalive(self, status=1):
        self.statuses.append(status)
        await asyncio.sleep_ms(0)
