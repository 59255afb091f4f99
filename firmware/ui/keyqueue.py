# Preallocated ring buffer of key characters, consumed with `async for key in queue`.
#
# One producer (the keypad matrix scanner task, the simulator's PRESS command, a test) and one
# consumer (the UI's key pump). put_nowait() never allocates; a full queue drops the key and
# counts it. Producers are asyncio tasks, so the wake-up is an asyncio.Event: the unix port can
# only poll a ThreadSafeFlag (a 1 ms busy loop that made every link round trip ~7 ms).
import asyncio


class KeyQueue:
    def __init__(self, size=16):
        if size < 1:
            raise ValueError("size")
        self._n = size + 1  # one slot stays free: read == write means empty
        self._buf = bytearray(self._n)
        self._r = 0
        self._w = 0
        self._ready = asyncio.Event()
        self.dropped = 0  # keys lost because the queue was full

    def put_nowait(self, key):
        """Queue one key character ("0"-"9", "A"-"D", "*", "#"). Returns False (and counts a
        drop) when the queue is full. No allocation."""
        w = self._w + 1
        if w == self._n:
            w = 0
        if w == self._r:
            self.dropped += 1
            return False
        self._buf[self._w] = ord(key)
        self._w = w
        self._ready.set()
        return True

    def get_nowait(self):
        """The oldest key, or None when the queue is empty."""
        r = self._r
        if r == self._w:
            return None
        c = self._buf[r]
        self._buf[r] = 0  # a typed PIN digit does not stay behind in the ring
        r += 1
        self._r = 0 if r == self._n else r
        return chr(c)

    def clear(self):
        """Drop the queued keys (and wipe them)."""
        while self.get_nowait() is not None:
            pass

    def __len__(self):
        d = self._w - self._r
        return d + self._n if d < 0 else d

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            key = self.get_nowait()
            if key is not None:
                return key
            self._ready.clear()
            if self._r != self._w:
                continue
            # Cancelling this wait loses nothing: the key stays queued until it is taken above.
            await self._ready.wait()
