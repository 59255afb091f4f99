"""A scripted device behind a fake serial port, for the link tests: it decodes what the host
writes with the host codec and answers through a handler, recording every byte written."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from capkey.link.transport import Decoder, Frame, Kind, encode

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "docs/vectors/link_v1.json").read_text())

Reply = Iterable[bytes | Frame]


def hello_ok(max_payload: int = 1024) -> bytes:
    return bytes((1,)) + max_payload.to_bytes(2, "big")


class FakePort:
    """pyserial-like port. `handler(frame) -> iterable of frames or raw bytes` answers each
    frame the host writes; the default answers HELLO and echoes PING."""

    def __init__(self, handler: Callable[[Frame], Reply] | None = None):
        self.handler = handler or self.default
        self.written = bytearray()
        self.requests: list[Frame] = []
        self._rx = bytearray()
        self._dec = Decoder()
        self.timeout = 0.05
        self.closed = False
        self._lock = threading.Lock()  # push() may come from another thread

    @staticmethod
    def default(f: Frame) -> Reply:
        if f.kind == Kind.REQUEST and f.code == 0x01:
            return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok())]
        if f.kind == Kind.REQUEST and f.code == 0x03:
            return [Frame(Kind.RESPONSE, f.rid, 0, f.payload)]
        return []

    # pyserial surface used by Transport
    def open(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> int:
        self.written += data
        for f in self._dec.feed(data):
            assert isinstance(f, Frame), f
            self.requests.append(f)
            for r in self.handler(f):
                self.push(bytes(r))
        return len(data)

    def flush(self) -> None:
        pass

    def read(self, n: int = 1) -> bytes:
        with self._lock:
            out = bytes(self._rx[:n])
            del self._rx[:n]
        return out

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def reset_input_buffer(self) -> None:
        with self._lock:
            self._rx.clear()

    def close(self) -> None:
        self.closed = True

    def push(self, data: bytes) -> None:
        """Bytes the device sends (also unprompted, from another thread)."""
        with self._lock:
            self._rx += data


def request(rid: int, cmd: int, payload: bytes = b"") -> bytes:
    return encode(Kind.REQUEST, rid, cmd, payload)
