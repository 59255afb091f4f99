# Link server: reads frames from the board's host stream, runs each REQUEST as an asyncio task,
# sends keepalives for long ones and handles CANCEL (docs/protocol.md).
#
#   link = LinkServer(board, ui)
#   link.register(0x20, handler)       # async def handler(req) -> bytes | bytearray | None
#   await board.serve_host(link.serve)
#
# A handler reads req.payload (a memoryview, valid until it returns), may call
# `await req.keepalive(KA_WAITING_FOR_USER)` and raises LinkError(code, payload) for an error reply.
# A CANCEL from the host throws CancelledError into the handler's task; the reply is ERR_CANCELLED.
import asyncio
import time

from micropython import const

from link import LinkError
from link.codes import (
    ERR_BUSY,
    ERR_CANCELLED,
    ERR_CRC,
    ERR_INTERNAL,
    ERR_INVALID_FRAME,
    ERR_OK,
    ERR_TOO_LONG,
    ERR_UNKNOWN_COMMAND,
    KA_PROCESSING,
)
from link.frame import (
    BAD_CRC,
    FRAME,
    HEADER,
    KIND_CANCEL,
    KIND_KEEPALIVE,
    KIND_REQUEST,
    KIND_RESPONSE,
    MAX_PAYLOAD,
    NEED,
    TOO_LONG,
    TRAILER,
    Decoder,
    crc16,
    put_header,
)

_MAX_ACTIVE = const(3)  # requests in flight at once; more get ERR_BUSY
_KEEPALIVE_MS = const(500)  # keepalive period while a handler runs
_TICK_MS = const(100)  # keepalive scheduler resolution
GAP_MS = 250  # truncated-frame rule: a frame whose next byte is this late is dropped


class Request:
    """One request slot; the server preallocates _MAX_ACTIVE of them with their payload buffer."""

    def __init__(self, max_payload):
        self._buf = bytearray(max_payload)
        self._mv = memoryview(self._buf)
        self.payload = self._mv[:0]
        self.rid = 0
        self.cmd = 0
        self.conn = None  # None: the slot is free
        self.task = None
        self.status = KA_PROCESSING  # last keepalive status, repeated every _KEEPALIVE_MS
        self.sent = 0  # ticks_ms of the last frame sent for this request
        self.urgent = False  # a keepalive was asked for and is not sent yet
        self.started = False
        self.cancel = False  # the host sent CANCEL for it
        self.closing = False  # its connection is gone
        self.done = False  # the handler returned: too late to cancel

    async def keepalive(self, status=KA_PROCESSING):
        """Tells the host that the device is working (KA_PROCESSING) or waiting for the person
        (KA_WAITING_FOR_USER). The frame is written by the server's keepalive task within
        _TICK_MS, so cancelling the handler never interrupts a write."""
        self.status = status
        self.urgent = True
        await asyncio.sleep_ms(0)


class _Buffers:
    # what one connection needs: the RX decoder and a TX buffer for a whole frame, so each frame
    # leaves in one write (three small writes would meet Nagle's algorithm on TCP, 40 ms each)
    def __init__(self, max_payload):
        self.dec = Decoder(max_payload)
        self.tx = bytearray(HEADER + max_payload + TRAILER)
        self.txmv = memoryview(self.tx)
        self.busy = False


class _Conn:
    def __init__(self, writer, bufs):
        self.writer = writer
        self.bufs = bufs
        self.dec = bufs.dec
        self.lock = asyncio.Lock()
        self.ticker = None


class LinkServer:
    def __init__(self, board, ui=None, max_payload=MAX_PAYLOAD, max_active=_MAX_ACTIVE):
        self.board = board
        self.ui = ui
        self.max_payload = max_payload
        self.apps = []  # (name, version) pairs reported by INFO; see add_app()
        self.last_error = None  # last unexpected handler exception (ERR_INTERNAL), for debugging
        self._handlers = {}
        self._slots = [Request(max_payload) for _ in range(max_active)]
        # RX and TX buffers of the connection; a second concurrent one (simulator only) gets its own
        self._bufs = _Buffers(max_payload)

    def register(self, cmd, handler):
        if not 0 <= cmd <= 0xFF:
            raise ValueError("command")
        if cmd in self._handlers:
            raise ValueError("command already registered")
        self._handlers[cmd] = handler

    def add_app(self, name, version):
        """An installed app, listed by INFO (name and version without "/")."""
        self.apps.append((name, version))

    # -- reading ---------------------------------------------------------------------------

    async def serve(self, reader, writer):
        """Serves one host connection until the stream ends."""
        bufs = self._bufs
        if bufs.busy:
            bufs = _Buffers(self.max_payload)
        bufs.busy = True
        dec = bufs.dec
        dec.reset()
        conn = _Conn(writer, bufs)
        readinto = getattr(reader, "readinto", None)
        try:
            while True:
                ev = dec.step()
                if ev == NEED:
                    await self._fill(conn, reader, readinto)
                elif ev == FRAME:
                    await self._on_frame(conn)
                    dec.consume()
                elif ev == TOO_LONG:
                    await self._send(conn, KIND_RESPONSE, dec.rid, ERR_TOO_LONG)
                elif ev == BAD_CRC:
                    await self._send(conn, KIND_RESPONSE, dec.rid, ERR_CRC)
        except (EOFError, OSError):
            pass
        finally:
            self._close(conn)
            bufs.busy = False

    async def _fill(self, conn, reader, readinto):
        # Reads exactly dec.need bytes. Waits forever for the first byte of a frame; after that each
        # read must deliver within GAP_MS or the partial frame is dropped (docs/protocol.md).
        dec = conn.dec
        end = dec.n + dec.need
        while dec.n < end:
            mv = dec.mv[dec.n : end]
            if dec.n == 0:
                r = await _read(reader, readinto, mv)
            else:
                try:
                    r = await asyncio.wait_for_ms(_read(reader, readinto, mv), GAP_MS)
                except asyncio.TimeoutError:
                    # the decoder asks for bytes past the header only once the header is valid
                    if dec.n >= HEADER:
                        rid = (dec.buf[3] << 8) | dec.buf[4]
                        dec.reset()
                        await self._send(conn, KIND_RESPONSE, rid, ERR_INVALID_FRAME)
                    else:
                        dec.reset()
                    return
            if not r:
                raise EOFError
            dec.n += r

    async def _on_frame(self, conn):
        dec = conn.dec
        rid = dec.rid
        if dec.kind == KIND_REQUEST:
            handler = self._handlers.get(dec.code)
            if handler is None:
                await self._send(conn, KIND_RESPONSE, rid, ERR_UNKNOWN_COMMAND)
                return
            free = None
            for r in self._slots:
                if r.conn is None:
                    if free is None:
                        free = r
                elif r.conn is conn and r.rid == rid:
                    free = None  # same RID already in flight
                    break
            if free is None:
                await self._send(conn, KIND_RESPONSE, rid, ERR_BUSY)
                return
            r = free
            n = dec.length
            r._mv[:n] = dec.mv[HEADER : HEADER + n]
            r.payload = r._mv[:n]
            r.rid = rid
            r.cmd = dec.code
            r.conn = conn
            r.status = KA_PROCESSING
            r.sent = time.ticks_ms()
            r.urgent = r.started = r.cancel = r.closing = r.done = False
            r.task = asyncio.create_task(self._run(conn, r, handler))
            if conn.ticker is None:
                conn.ticker = asyncio.create_task(self._tick(conn))
        elif dec.kind == KIND_CANCEL:
            # CANCEL of a RID not in flight (already answered) is ignored: the host gets one
            # RESPONSE per REQUEST either way.
            for r in self._slots:
                if r.conn is conn and r.rid == rid and not r.done and not r.cancel:
                    r.cancel = True
                    if r.started:  # a task not started yet sees r.cancel when it starts
                        r.task.cancel()
        else:
            await self._send(conn, KIND_RESPONSE, rid, ERR_INVALID_FRAME)

    # -- running ---------------------------------------------------------------------------

    async def _run(self, conn, r, handler):
        try:
            if r.closing:
                return
            code = ERR_OK
            out = None
            if r.cancel:
                code = ERR_CANCELLED
            else:
                r.started = True
                try:
                    out = await handler(r)
                    if out is not None and len(out) > self.max_payload:
                        raise ValueError("response too long")
                except LinkError as e:
                    code = e.code
                    out = e.payload
                except asyncio.CancelledError:
                    if not r.cancel:
                        raise  # the connection is closing: nobody to answer
                    code = ERR_CANCELLED
                    out = None
                except Exception as e:
                    self.last_error = e
                    code = ERR_INTERNAL
                    out = None
            r.done = True
            await self._send(conn, KIND_RESPONSE, r.rid, code, out)
        except OSError:
            pass  # the host went away while we answered
        finally:
            r.payload = r._mv[:0]
            r.task = None
            r.conn = None

    async def _tick(self, conn):
        # One task per connection while requests run: repeats each one's last keepalive status.
        try:
            while True:
                await asyncio.sleep_ms(_TICK_MS)
                active = False
                for r in self._slots:
                    if r.conn is conn and not r.done:
                        active = True
                        now = time.ticks_ms()
                        if r.urgent or time.ticks_diff(now, r.sent) >= _KEEPALIVE_MS:
                            r.urgent = False
                            r.sent = now
                            await self._send(conn, KIND_KEEPALIVE, r.rid, r.status, None, r)
                if not active:
                    return
        except OSError:
            pass
        finally:
            conn.ticker = None

    def _close(self, conn):
        for r in self._slots:
            if r.conn is conn and not r.done:
                r.closing = True
                if r.started:
                    r.task.cancel()
        if conn.ticker is not None:
            conn.ticker.cancel()

    # -- writing ---------------------------------------------------------------------------

    async def _send(self, conn, kind, rid, code, payload=None, only_for=None):
        async with conn.lock:
            if only_for is not None and (only_for.conn is not conn or only_for.done):
                return  # keepalive for a request answered while we waited for the lock
            n = len(payload) if payload else 0
            tx = conn.bufs.tx
            put_header(tx, kind, rid, code, n)
            if n:
                conn.bufs.txmv[HEADER : HEADER + n] = payload
            e = HEADER + n
            c = crc16(tx, 0, e)
            tx[e] = c >> 8
            tx[e + 1] = c & 0xFF
            conn.writer.write(conn.bufs.txmv[: e + TRAILER])
            await conn.writer.drain()

async def _read(reader, readinto, mv):
    # rp2 stdin fills the whole slice; a socket may return less; readexactly-only streams copy.
    if readinto is not None:
        return await readinto(mv)
    data = await reader.readexactly(len(mv))
    mv[: len(data)] = data
    return len(data)
