# Test support for the link tests (test_*: never deployed to a board, no tests of its own):
# in-memory streams, a fake board and UI, the shared vector file, a parser for device output.
import asyncio
import sys

from link import frame


def repo_root():
    """The repository root: mptest.py passes it as argv[1]; otherwise the sys.path entry that ends
    in /firmware (as the simulator sets it up) gives it away."""
    cands = []
    if len(sys.argv) > 1:
        cands.append(sys.argv[1])
    for p in sys.path:
        if p.endswith("/firmware"):
            cands.append(p[: -len("/firmware")])
    for c in cands:
        try:
            open(c + "/docs/vectors/link_v1.json").close()
            return c
        except OSError:
            pass
    raise OSError("repository root not found")


def load_vectors():
    import json

    with open(repo_root() + "/docs/vectors/link_v1.json") as f:
        return json.load(f)


def unhex(s):
    return bytes.fromhex(s)


def parse(data):
    """Every frame and decoder error in `data`, as tuples (kind, rid, code, payload bytes) and
    ("CRC"|"TOO_LONG", rid)."""
    dec = frame.Decoder()
    out = []
    pos = 0
    while True:
        ev = dec.step()
        if ev == frame.NEED:
            k = dec.need
            if pos + k > len(data):
                return out
            dec.buf[dec.n : dec.n + k] = data[pos : pos + k]
            dec.n += k
            pos += k
        elif ev == frame.FRAME:
            p = bytes(dec.buf[frame.HEADER : frame.HEADER + dec.length])
            out.append((dec.kind, dec.rid, dec.code, p))
            dec.consume()
        elif ev == frame.TOO_LONG:
            out.append(("TOO_LONG", dec.rid))
        else:
            out.append(("CRC", dec.rid))


class FakeReader:
    """The host side of a stream: feed() bytes, close() for EOF. readinto() returns at most
    `chunk` bytes at a time (like a socket) unless exact=True (like rp2 stdin)."""

    def __init__(self, chunk=7):
        self.data = bytearray()
        self.closed = False
        self.chunk = chunk
        self.ev = asyncio.Event()

    def feed(self, b):
        self.data.extend(b)
        self.ev.set()

    def close(self):
        self.closed = True
        self.ev.set()

    async def _wait(self):
        while not self.data and not self.closed:
            self.ev.clear()
            await self.ev.wait()

    async def readinto(self, mv):
        await self._wait()
        if not self.data:
            return 0
        n = min(len(mv), len(self.data), self.chunk)
        mv[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


class ExactReader:
    """A stream with readexactly() only (the board contract's minimum)."""

    def __init__(self):
        self.r = FakeReader(chunk=1 << 16)

    def feed(self, b):
        self.r.feed(b)

    def close(self):
        self.r.close()

    async def readexactly(self, n):
        out = bytearray()
        while len(out) < n:
            await self.r._wait()
            if not self.r.data:
                raise EOFError
            k = min(n - len(out), len(self.r.data))
            out.extend(self.r.data[:k])
            self.r.data = self.r.data[k:]
        return bytes(out)


class FakeWriter:
    def __init__(self):
        self.out = bytearray()
        self.ev = asyncio.Event()

    def write(self, b):
        self.out.extend(b)
        self.ev.set()

    async def drain(self):
        await asyncio.sleep_ms(0)

    def frames(self):
        return parse(bytes(self.out))

    async def wait_frames(self, n, timeout_ms=2000):
        """Waits until at least n frames were written; returns them all."""
        async def _w():
            while len(self.frames()) < n:
                self.ev.clear()
                await self.ev.wait()

        await asyncio.wait_for_ms(_w(), timeout_ms)
        return self.frames()


class FakeBoard:
    name = "sim"
    serial = "0123456789abcdef"
    heap_total = 194560

    def __init__(self, inject=True):
        self.keys = []
        self.rebooted = 0
        if not inject:
            self.inject_key = None

    def inject_key(self, k):
        self.keys.append(k)

    def reboot(self):
        self.rebooted += 1


class FakeUi:
    def __init__(self):
        self.fb = bytes(range(256)) * 4
        self.lines = ["Choisir la fonction", "A CODE  B SIGNÉ"]

    def snapshot(self):
        return self.fb, self.lines
