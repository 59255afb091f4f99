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
#
# Connections (docs/protocol.md, "Connections"): at most MAX_CONNECTIONS at once, each with a
# receive buffer of one whole frame taken from a pool that never grows past that bound. A
# connection beyond the bound takes the place of the one idle the longest or, when every one has
# a request running, has its first request answered ERR_BUSY and is closed. A connection idle
# for IDLE_MS (or board.link_idle_ms) is closed.
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
# Connections with a receive buffer (1 KB each) at once: the host's own connection, the keypad
# and screen of a test or the device view, and one more (a CLI command beside them).
MAX_CONNECTIONS = const(3)
# No complete frame and no request running for this long: the connection is closed. The PC/SC
# mode's own timeout (10 min without an APDU, docs/cap.md), so it never cuts a PC/SC bridge first.
IDLE_MS = const(600_000)
_WATCH_MS = const(1000)  # the idle check's period (a quarter of a shorter timeout)
_REFUSERS = const(2)  # refused connections waiting for their first request at once; more: closed
_REFUSE_MS = const(1000)  # how long a refused connection has to send that request
INLINE_PAYLOAD = const(64)  # a request slot's and a receive buffer's own payload room
_frame_buffer = bytearray  # makes the buffer of a longer frame (a test makes it fail)


class Request:
    """One request slot; the server preallocates _MAX_ACTIVE of them, each with room for a short
    payload (INLINE_PAYLOAD bytes: every control request, a PIN, a code's inputs). A longer one
    (a certificate chunk, a payload to sign, an APDU) stays in the bytes its frame was read into
    (a copy of its own after a resynchronisation), gone when the request ends: three slots of a
    whole frame each would hold 3 KB for good for what is rare and one at a time."""

    def __init__(self):
        self._mv = memoryview(bytearray(INLINE_PAYLOAD))
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


class _Conn:
    def __init__(self, writer):
        self.writer = writer
        self.dec = None  # its receive buffer, from the server's pool
        self.lock = asyncio.Lock()
        self.ticker = None
        self.task = asyncio.current_task()  # the task reading it: cancelled to close it
        self.last = time.ticks_ms()  # last complete frame, or end of its last request
        self.dropped = False  # closed by the server (idle, or its place given to a newer one)


class LinkServer:
    def __init__(
        self, board, ui=None, max_payload=MAX_PAYLOAD, max_active=_MAX_ACTIVE,
        max_connections=None,
    ):
        if max_connections is None:  # a board with one stream says so (board.link_connections)
            max_connections = getattr(board, "link_connections", MAX_CONNECTIONS)
        self.board = board
        self.ui = ui
        self.max_payload = max_payload
        self.apps = []  # (name, version) pairs reported by INFO; see add_app()
        self.last_error = None  # last unexpected handler exception (ERR_INTERNAL), for debugging
        self._handlers = {}
        self._slots = [Request() for _ in range(max_active)]
        self._max_conns = max_connections
        self._conns = []  # the connections served now
        # Receive buffers, all made now at the bottom of a young heap: one made later, while a
        # flow has its modules loaded, would stay in the middle of the heap after they are given
        # back and split the free space the next flow's modules need in one piece. A board with
        # one USB stream has one. Each has room for a short frame (INLINE_PAYLOAD, like a request
        # slot): a longer one gets bytes of its own while it arrives (_room), kept by its request,
        # so the three do not hold 3 KB of whole frames for good.
        self._decs = [Decoder(max_payload, INLINE_PAYLOAD) for _ in range(max_connections)]
        self._refusing = 0  # refused connections waiting for their first request
        # A frame leaves as header, payload and CRC: three writes and no 1 KB buffer to copy the
        # payload into (the simulator turns Nagle's algorithm off, or TCP would hold the second
        # write 40 ms). Written before any await, so the connections share these bytes.
        hc = memoryview(bytearray(HEADER + TRAILER))
        self._head = hc[:HEADER]
        self._crc = hc[HEADER:]
        self._watcher = None

    def register(self, cmd, handler):
        if not 0 <= cmd <= 0xFF:
            raise ValueError("command")
        if cmd in self._handlers:
            raise ValueError("command already registered")
        self._handlers[cmd] = handler

    def add_app(self, name, version):
        """An installed app, listed by INFO (name and version without "/")."""
        self.apps.append((name, version))

    # -- connections -----------------------------------------------------------------------

    async def serve(self, reader, writer):
        """Serves one host connection until the stream ends, it stays idle, or its place goes to
        a newer connection (docs/protocol.md, "Connections")."""
        readinto = getattr(reader, "readinto", None)
        if len(self._conns) >= self._max_conns and not self._make_room():
            await self._refuse(reader, readinto, writer)
            return
        conn = _Conn(writer)
        self._conns.append(conn)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())
        try:
            # a receive buffer from the pool (a dropped connection's comes back once its task
            # has stopped)
            while not self._decs:
                await asyncio.sleep_ms(0)
            dec = self._decs.pop()
            dec.reset()
            conn.dec = dec
            while True:
                ev = dec.step()
                if ev == NEED:
                    if not self._room(dec):
                        await self._send(conn, KIND_RESPONSE, dec.rid, ERR_BUSY)
                        continue
                    await self._fill(conn, reader, readinto)
                elif ev == FRAME:
                    conn.last = time.ticks_ms()
                    await self._on_frame(conn)
                    dec.consume()
                elif ev == TOO_LONG:
                    await self._send(conn, KIND_RESPONSE, dec.rid, ERR_TOO_LONG)
                elif ev == BAD_CRC:
                    await self._send(conn, KIND_RESPONSE, dec.rid, ERR_CRC)
        except (EOFError, OSError):
            pass
        except asyncio.CancelledError:
            if not conn.dropped:
                raise  # not ours: the board is stopping
        finally:
            self._close(conn)

    def _room(self, dec):
        # After NEED: a buffer for the bytes asked. A decoder keeps room for a short frame only;
        # a longer one is read into bytes of its own, made now, which its request then keeps
        # (_on_frame; the decoder goes back to its own buffer at the next NEED). None to be had:
        # False, the frame's header skipped (answered ERR_BUSY).
        want = dec.n + dec.need
        if want <= len(dec.own):
            if dec.buf is not dec.own:
                dec.use()
        elif want > len(dec.buf):
            try:
                dec.use(_frame_buffer(want))
            except MemoryError:
                dec.refuse()
                return False
        return True

    def _make_room(self):
        # The connection idle the longest goes; False when none is idle. Not in serve(): its
        # locals would stay in every connection's coroutine for as long as it lives.
        victim = None
        most = -1
        now = time.ticks_ms()
        for c in self._conns:
            q = self._quiet_ms(c, now)
            if q > most:
                victim = c
                most = q
        if victim is None:
            return False
        self._drop(victim)
        return True

    def _quiet_ms(self, conn, now):
        # how long the connection has been idle; -1 while a request of its own runs
        for r in self._slots:
            if r.conn is conn and not r.done:
                return -1
        return time.ticks_diff(now, conn.last)

    def _drop(self, conn):
        # Closes a connection from outside its task: the task stops where it waits (a read,
        # mostly), then serve() gives its buffer back and the board closes the stream.
        conn.dropped = True
        self._conns.remove(conn)
        conn.task.cancel()

    async def _watch(self):
        # One task while connections are open: closes those idle for the idle timeout (a host
        # that forgot its connection, a half-open TCP one, a partial frame trickled to hold one).
        try:
            while self._conns:
                idle = getattr(self.board, "link_idle_ms", IDLE_MS)
                await asyncio.sleep_ms(min(idle // 4, _WATCH_MS))
                now = time.ticks_ms()
                conns = self._conns
                for i in range(len(conns) - 1, -1, -1):
                    if self._quiet_ms(conns[i], now) >= idle:
                        self._drop(conns[i])
        finally:
            self._watcher = None

    async def _refuse(self, reader, readinto, writer):
        # Every connection has a request running: this one's first request is answered ERR_BUSY,
        # then the board closes it. A few wait for that request at a time; more are closed at once.
        if self._refusing == _REFUSERS:
            return
        self._refusing += 1
        try:
            await asyncio.wait_for_ms(self._busy(reader, readinto, _Conn(writer)), _REFUSE_MS)
        except (asyncio.TimeoutError, EOFError, OSError):
            pass
        finally:
            self._refusing -= 1

    async def _busy(self, reader, readinto, conn):
        # A decoder of headers only: a request with a payload comes out as TOO_LONG, its header
        # checked (HCRC). The payload is read after the answer: closing a TCP connection with
        # unread bytes resets it, and the host could lose the answer.
        dec = Decoder(0)
        while True:
            ev = dec.step()
            if ev == NEED:
                r = await _read(reader, readinto, dec.mv[dec.n : dec.n + dec.need])
                if not r:
                    raise EOFError
                dec.n += r
            elif ev != BAD_CRC and dec.kind == KIND_REQUEST:
                break
            elif ev == FRAME:
                dec.consume()
        await self._send(conn, KIND_RESPONSE, dec.rid, ERR_BUSY)
        if ev == TOO_LONG:
            left = dec.length + TRAILER - (dec.n - dec.start)
            while left > 0:
                r = await _read(reader, readinto, dec.mv[: min(left, len(dec.buf))])
                if not r:
                    raise EOFError
                left -= r

    # -- reading ---------------------------------------------------------------------------

    async def _fill(self, conn, reader, readinto):
        # Reads exactly dec.need bytes. Waits for the first byte of a frame as long as the
        # connection lives (_watch ends an idle one); after that each read must deliver within
        # GAP_MS or the partial frame is dropped (docs/protocol.md).
        dec = conn.dec
        end = dec.n + dec.need
        while dec.n < end:
            mv = dec.mv[dec.n : end]
            if dec.n == 0:  # the wait between frames: one coroutine less while it lasts
                r = await readinto(mv) if readinto is not None else await _read(reader, None, mv)
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
            body = dec.mv[HEADER : HEADER + n]
            if n <= INLINE_PAYLOAD:
                r._mv[:n] = body
                r.payload = r._mv[:n]
            elif dec.buf is not dec.own and dec.n == HEADER + n + TRAILER:
                # the bytes made for this frame (_room), nothing after it: the request keeps them,
                # and the decoder goes back to its own buffer at its next NEED without writing here
                r.payload = body
            else:
                try:
                    r.payload = memoryview(bytes(body))
                except MemoryError:  # no room for its copy now: as if every slot were taken
                    await self._send(conn, KIND_RESPONSE, rid, ERR_BUSY)
                    return
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
            conn.last = time.ticks_ms()  # its connection is idle from now on

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
        if not conn.dropped:
            self._conns.remove(conn)
        for r in self._slots:
            if r.conn is conn:
                r.closing = True
                if r.started:  # answered or not: nobody is left to write to
                    r.task.cancel()
        if conn.ticker is not None:
            conn.ticker.cancel()
        if conn.dec is not None:
            self._decs.append(conn.dec)

    # -- writing ---------------------------------------------------------------------------

    async def _send(self, conn, kind, rid, code, payload=None, only_for=None):
        async with conn.lock:  # one drain at a time per stream
            if only_for is not None and (only_for.conn is not conn or only_for.done):
                return  # keepalive for a request answered while we waited for the lock
            n = len(payload) if payload else 0
            put_header(self._head, kind, rid, code, n)
            c = crc16(payload, 0, n, crc16(self._head, 0, HEADER))
            self._crc[0] = c >> 8
            self._crc[1] = c & 0xFF
            w = conn.writer
            w.write(self._head)
            if n:
                w.write(payload)
            w.write(self._crc)
            await w.drain()


async def _read(reader, readinto, mv):
    # rp2 stdin fills the whole slice; a socket may return less; readexactly-only streams copy.
    if readinto is not None:
        return await readinto(mv)
    data = await reader.readexactly(len(mv))
    mv[: len(data)] = data
    return len(data)
