# The link server over in-memory streams: every bad input gets its documented answer (or none),
# and a valid request sent afterwards is always answered.
import asyncio
import random

from link import LinkError, server
from link import test_support as _fakes
from link.codes import (
    ERR_BUSY,
    ERR_CANCELLED,
    ERR_CRC,
    ERR_DENIED,
    ERR_INTERNAL,
    ERR_INVALID_FRAME,
    ERR_OK,
    ERR_TOO_LONG,
    ERR_UNKNOWN_COMMAND,
    KA_PROCESSING,
    KA_WAITING_FOR_USER,
)
from link.frame import (
    KIND_CANCEL,
    KIND_KEEPALIVE,
    KIND_REQUEST,
    KIND_RESPONSE,
    MAX_PAYLOAD,
    encode,
    put_header,
)

_ECHO = 0x03
_SLOW = 0x30
_FAIL = 0x31
_CRASH = 0x32


class Peer:
    """One host connection to a server, over fake streams."""

    def __init__(self, link, reader=None):
        self.r = reader or _fakes.FakeReader()
        self.w = _fakes.FakeWriter()
        self.task = asyncio.create_task(link.serve(self.r, self.w))

    def send(self, b):
        self.r.feed(b)

    def request(self, rid, cmd, payload=b""):
        self.r.feed(encode(KIND_REQUEST, rid, cmd, payload))

    async def reply(self, rid, timeout_ms=2000):
        """The RESPONSE for rid (waits for it)."""
        async def _w():
            while True:
                for f in self.w.frames():
                    if f[0] == KIND_RESPONSE and f[1] == rid:
                        return f
                self.w.ev.clear()
                await self.w.ev.wait()

        return await asyncio.wait_for_ms(_w(), timeout_ms)

    async def assert_alive(self, rid=0x7777):
        self.request(rid, _ECHO, b"still here")
        f = await self.reply(rid)
        assert f == (KIND_RESPONSE, rid, ERR_OK, b"still here"), f

    async def closed(self, timeout_ms):
        """True once the server has ended this connection (serve() returned), waiting up to
        timeout_ms."""
        for _ in range(timeout_ms // 10):
            if self.task.done():
                break
            await asyncio.sleep_ms(10)
        return self.task.done()

    async def close(self):
        self.r.close()
        await asyncio.wait_for_ms(self.task, 1000)


class Rig(Peer):
    """A server with an echo command, a slow command that waits for the person until released,
    and two failing commands; connected to fake streams."""

    def __init__(self, reader=None):
        self.link = server.LinkServer(_fakes.FakeBoard(), _fakes.FakeUi())
        self.release = asyncio.Event()
        self.cancelled = []
        self.link.register(_ECHO, self.echo)
        self.link.register(_SLOW, self.slow)
        self.link.register(_FAIL, self.fail)
        self.link.register(_CRASH, self.crash)
        super().__init__(self.link, reader)

    def peer(self):
        """Another connection to the same server."""
        return Peer(self.link)

    async def echo(self, req):
        return req.payload

    async def slow(self, req):
        if len(req.payload):
            await req.keepalive(KA_WAITING_FOR_USER)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(req.rid)
            raise
        return b"done"

    async def fail(self, req):
        raise LinkError(ERR_DENIED, b"\x02")

    async def crash(self, req):
        raise ValueError("bug")


async def test_ping_and_exact_response_bytes():
    rig = Rig()
    rig.request(1, _ECHO, b"hello")
    await rig.reply(1)
    assert bytes(rig.w.out) == encode(KIND_RESPONSE, 1, ERR_OK, b"hello")
    await rig.close()


async def test_readexactly_only_stream():
    rig = Rig(_fakes.ExactReader())
    rig.request(2, _ECHO, b"x" * 300)
    f = await rig.reply(2)
    assert f[3] == b"x" * 300
    await rig.close()


async def test_payloads_of_every_length_reach_the_handler_whole():
    # short ones in the slot's own room, longer ones in a copy of their own
    rig = Rig()
    for rid, n in enumerate((0, 1, server.INLINE_PAYLOAD, server.INLINE_PAYLOAD + 1, MAX_PAYLOAD)):
        body = bytes((rid + i) & 0xFF for i in range(n))
        rig.request(0x100 + rid, _ECHO, body)
        f = await rig.reply(0x100 + rid)
        assert f == (KIND_RESPONSE, 0x100 + rid, ERR_OK, body), (n, f)
    await rig.close()


async def test_a_long_payload_stays_whole_while_short_ones_pass_beside_it():
    rig = Rig()
    long = bytes(range(256)) * 3
    got = []

    async def hold(req):
        await rig.release.wait()
        got.append(bytes(req.payload))
        return b""

    rig.link.register(0x3F, hold)
    rig.request(1, 0x3F, long)
    await asyncio.sleep_ms(20)
    for rid in range(2, 6):
        rig.request(rid, _ECHO, bytes([rid]) * 40)
        assert (await rig.reply(rid))[3] == bytes([rid]) * 40
    rig.release.set()
    await rig.reply(1)
    assert got == [long]
    await rig.close()


def test_the_server_holds_no_whole_frame_for_good():
    # The simulator's server (three connections: three receive buffers) with its three request
    # slots: 3.2 KB on the 64-bit simulator. With a whole frame per buffer it held 6.1 KB; with
    # one per slot as well, 9 KB.
    import gc

    board = _fakes.FakeBoard()
    ui = _fakes.FakeUi()
    server.LinkServer(board, ui)  # first-use costs (interned names) out of the figure
    gc.collect()
    before = gc.mem_alloc()
    link = server.LinkServer(board, ui)
    gc.collect()
    held = gc.mem_alloc() - before
    assert held < 4 * (MAX_PAYLOAD + 11), held
    del link


async def test_a_long_frame_with_no_heap_for_it_is_answered_busy():
    # A frame longer than a receive buffer's own room is read into bytes made for it; none to
    # be had now: ERR_BUSY for it, its payload skipped, and the connection goes on.
    rig = Rig()

    def no_heap(n):
        raise MemoryError

    server._frame_buffer = no_heap
    try:
        rig.request(0x11, _ECHO, bytes(200))
        assert await rig.reply(0x11) == (KIND_RESPONSE, 0x11, ERR_BUSY, b"")
    finally:
        server._frame_buffer = bytearray
    rig.request(0x12, _ECHO, bytes(range(200)))
    assert await rig.reply(0x12) == (KIND_RESPONSE, 0x12, ERR_OK, bytes(range(200)))
    await rig.close()


async def test_garbage_is_skipped_silently():
    rig = Rig()
    rig.send(b"\x00\x13garbage\xca\xca\x4b\x01\x02")
    await asyncio.sleep_ms(400)
    assert rig.w.frames() == []
    await rig.assert_alive()
    await rig.close()


async def test_random_garbage_never_kills_the_server():
    rig = Rig()
    random.seed(7)
    for _ in range(20):
        junk = bytes(random.getrandbits(8) for _ in range(random.getrandbits(8)))
        rig.send(junk + b"\xca\x4b" + junk[:5])
    await asyncio.sleep_ms(400)  # any partial frame left is dropped by the gap rule
    await rig.assert_alive()
    await rig.close()


async def test_truncated_frame_is_dropped_after_gap():
    server.GAP_MS = 60
    try:
        rig = Rig()
        whole = encode(KIND_REQUEST, 0x0505, _ECHO, b"0123456789")
        rig.send(whole[:14])  # good header, half the payload, then silence
        f = await rig.reply(0x0505)
        assert f == (KIND_RESPONSE, 0x0505, ERR_INVALID_FRAME, b""), f
        rig.send(whole[:5])  # half a header: dropped without a reply
        await asyncio.sleep_ms(150)
        assert len(rig.w.frames()) == 1
        await rig.assert_alive()
        await rig.close()
    finally:
        server.GAP_MS = 250


async def test_truncated_frame_followed_at_once_by_next():
    rig = Rig()
    whole = encode(KIND_REQUEST, 0x0606, _ECHO, b"0123456789")
    rig.send(whole[:14])
    rig.request(0x0607, _ECHO, b"next")
    f = await rig.reply(0x0606)
    assert f[2] == ERR_CRC, f
    f = await rig.reply(0x0607)
    assert f == (KIND_RESPONSE, 0x0607, ERR_OK, b"next"), f
    await rig.close()


async def test_oversize_gets_too_long():
    rig = Rig()
    hdr = bytearray(9)
    put_header(hdr, KIND_REQUEST, 0x0BAD, _ECHO, 5000)
    rig.send(bytes(hdr) + b"\x00" * 40)
    f = await rig.reply(0x0BAD)
    assert f == (KIND_RESPONSE, 0x0BAD, ERR_TOO_LONG, b""), f
    await rig.assert_alive()
    await rig.close()


async def test_bad_crc_gets_crc_error():
    rig = Rig()
    bad = bytearray(encode(KIND_REQUEST, 0x0C0C, _ECHO, b"abc"))
    bad[10] ^= 0x01
    rig.send(bytes(bad))
    f = await rig.reply(0x0C0C)
    assert f == (KIND_RESPONSE, 0x0C0C, ERR_CRC, b""), f
    await rig.assert_alive()
    await rig.close()


async def test_unknown_command_and_wrong_kind():
    rig = Rig()
    rig.request(9, 0xEE)
    assert (await rig.reply(9))[2] == ERR_UNKNOWN_COMMAND
    rig.send(encode(KIND_KEEPALIVE, 10, 1))
    assert (await rig.reply(10))[2] == ERR_INVALID_FRAME
    await rig.assert_alive()
    await rig.close()


async def test_handler_errors():
    rig = Rig()
    rig.request(11, _FAIL)
    assert await rig.reply(11) == (KIND_RESPONSE, 11, ERR_DENIED, b"\x02")
    rig.request(12, _CRASH)
    assert await rig.reply(12) == (KIND_RESPONSE, 12, ERR_INTERNAL, b"")
    assert isinstance(rig.link.last_error, ValueError)
    await rig.assert_alive()
    await rig.close()


async def test_cancel_reaches_the_handler():
    rig = Rig()
    rig.request(20, _SLOW, b"w")
    await asyncio.sleep_ms(250)
    ka = [f for f in rig.w.frames() if f[0] == KIND_KEEPALIVE]
    assert ka and ka[0] == (KIND_KEEPALIVE, 20, KA_WAITING_FOR_USER, b""), ka
    rig.send(encode(KIND_CANCEL, 20, 0))
    assert await rig.reply(20) == (KIND_RESPONSE, 20, ERR_CANCELLED, b"")
    assert rig.cancelled == [20]
    rig.send(encode(KIND_CANCEL, 20, 0))  # already answered: ignored
    await rig.assert_alive()
    assert len([f for f in rig.w.frames() if f[1] == 20 and f[0] == KIND_RESPONSE]) == 1
    await rig.close()


async def test_cancel_before_the_task_starts():
    rig = Rig()
    rig.send(encode(KIND_REQUEST, 21, _SLOW) + encode(KIND_CANCEL, 21, 0))
    assert await rig.reply(21) == (KIND_RESPONSE, 21, ERR_CANCELLED, b"")
    await rig.assert_alive()
    await rig.close()


async def test_requests_run_concurrently():
    rig = Rig()
    rig.request(30, _SLOW)
    await rig.assert_alive(31)  # answered while 30 waits
    rig.release.set()
    assert await rig.reply(30) == (KIND_RESPONSE, 30, ERR_OK, b"done")
    await rig.close()


async def test_periodic_keepalive_repeats_last_status():
    rig = Rig()
    rig.request(40, _SLOW)
    await asyncio.sleep_ms(1150)
    ka = [f for f in rig.w.frames() if f[0] == KIND_KEEPALIVE and f[1] == 40]
    assert len(ka) == 2, ka
    assert ka[0][2] == KA_PROCESSING
    rig.release.set()
    await rig.reply(40)
    n = len(rig.w.frames())
    await asyncio.sleep_ms(700)
    assert len(rig.w.frames()) == n  # no keepalive after the response
    await rig.close()


async def test_busy_beyond_three_and_duplicate_rid():
    rig = Rig()
    for rid in (50, 51, 52):
        rig.request(rid, _SLOW)
    rig.request(53, _ECHO, b"?")
    assert (await rig.reply(53))[2] == ERR_BUSY
    rig.release.set()
    for rid in (50, 51, 52):
        assert (await rig.reply(rid))[2] == ERR_OK
    rig.release.clear()
    rig.request(54, _SLOW)
    rig.request(54, _ECHO)
    assert (await rig.reply(54))[2] == ERR_BUSY
    rig.release.set()
    await asyncio.sleep_ms(50)
    await rig.assert_alive()
    await rig.close()


async def test_disconnect_cancels_handlers_and_next_connection_works():
    rig = Rig()
    rig.request(60, _SLOW)
    await asyncio.sleep_ms(50)
    await rig.close()
    await asyncio.sleep_ms(20)
    assert rig.cancelled == [60]
    # the same server serves the next connection with the receive buffer given back
    p = rig.peer()
    p.request(61, _ECHO, b"again")
    assert await p.reply(61) == (KIND_RESPONSE, 61, ERR_OK, b"again")
    await p.close()
    assert len(rig.link._decs) == server.MAX_CONNECTIONS


async def test_two_connections_at_once():
    rig = Rig()
    p = rig.peer()
    rig.request(70, _SLOW)
    p.request(70, _ECHO, b"other")  # same RID, other connection: fine
    assert await p.reply(70) == (KIND_RESPONSE, 70, ERR_OK, b"other")
    p.send(encode(KIND_CANCEL, 70, 0))  # cannot cancel the first connection's request
    await asyncio.sleep_ms(50)
    assert rig.cancelled == []
    rig.release.set()
    assert (await rig.reply(70))[2] == ERR_OK
    await p.close()
    await rig.close()


# -- connection limits (docs/protocol.md, "Connections") -------------------------------------


def _full(rig):
    """The rig's connection and two more, so that the server holds MAX_CONNECTIONS."""
    peers = [rig, rig.peer(), rig.peer()]
    assert len(peers) == server.MAX_CONNECTIONS
    return peers


async def test_a_connection_beyond_the_bound_takes_the_place_of_the_idlest():
    rig = Rig()
    peers = _full(rig)
    for i, p in enumerate(peers):  # the first is now the one idle the longest
        await p.assert_alive(0x100 + i)
        await asyncio.sleep_ms(20)
    new = rig.peer()
    await new.assert_alive()
    assert await rig.closed(500)
    assert not peers[1].task.done() and not peers[2].task.done()
    await peers[1].assert_alive()
    await peers[2].assert_alive()
    # every receive buffer came from the pool and went back to it
    for p in (peers[1], peers[2], new):
        await p.close()
    assert len(rig.link._decs) == server.MAX_CONNECTIONS


async def test_busy_when_every_connection_has_a_request_running():
    rig = Rig()
    peers = _full(rig)
    for i, p in enumerate(peers):
        p.request(0x200 + i, _SLOW)
    await asyncio.sleep_ms(20)
    extra = rig.peer()
    extra.request(0x2FF, _ECHO, b"x" * 300)  # its payload is read too, then the stream closed
    assert await extra.reply(0x2FF) == (KIND_RESPONSE, 0x2FF, ERR_BUSY, b"")
    assert await extra.closed(500)
    assert len(extra.w.frames()) == 1 and not extra.r.data
    rig.release.set()
    for i, p in enumerate(peers):  # the connections in use were not disturbed
        assert await p.reply(0x200 + i) == (KIND_RESPONSE, 0x200 + i, ERR_OK, b"done")
    for p in peers:
        await p.close()
    assert len(rig.link._decs) == server.MAX_CONNECTIONS


async def test_refused_connections_wait_a_bounded_time_and_only_a_few_at_once():
    rig = Rig()
    peers = _full(rig)
    for i, p in enumerate(peers):
        p.request(0x300 + i, _SLOW)
    await asyncio.sleep_ms(20)
    silent = [rig.peer() for _ in range(4)]
    await asyncio.sleep_ms(50)
    # two wait for a first request; the others were closed at once, unanswered
    assert [p.task.done() for p in silent] == [False, False, True, True]
    assert await silent[0].closed(1500) and await silent[1].closed(100)
    assert all(p.w.frames() == [] for p in silent)
    rig.release.set()
    for p in peers:
        await p.close()


async def test_idle_connections_are_closed_and_their_buffers_given_back():
    rig = Rig()
    rig.link.board.link_idle_ms = 200
    busy = rig.peer()
    busy.request(0x400, _SLOW)
    await rig.assert_alive()
    assert await rig.closed(400)
    assert not busy.task.done()  # a request running is not idle, however long it takes
    await asyncio.sleep_ms(200)
    assert not busy.task.done()
    rig.release.set()
    assert (await busy.reply(0x400))[2] == ERR_OK
    assert await busy.closed(400)  # idle from the end of its request
    assert len(rig.link._decs) == server.MAX_CONNECTIONS
    again = rig.peer()
    await again.assert_alive()
    await again.close()
    assert len(rig.link._decs) == server.MAX_CONNECTIONS


async def test_a_board_with_one_stream_gets_one_receive_buffer():
    board = _fakes.FakeBoard()
    board.link_connections = 1
    link = server.LinkServer(board, _fakes.FakeUi())
    assert len(link._decs) == 1


async def test_a_trickled_partial_frame_does_not_hold_a_connection():
    rig = Rig()
    rig.link.board.link_idle_ms = 300
    for _ in range(8):  # a SYNC0 every 100 ms: always a partial frame, never a gap of 250 ms
        rig.send(b"\xca")
        await asyncio.sleep_ms(100)
    assert await rig.closed(100)
    assert rig.w.frames() == []


async def test_a_flood_of_connections_leaves_the_heap_as_it_was():
    import gc

    rig = Rig()
    await rig.assert_alive()
    gc.collect()
    before = gc.mem_alloc()
    flood = [rig.peer() for _ in range(40)]
    await asyncio.sleep_ms(50)
    assert sum(1 for p in flood if not p.task.done()) == server.MAX_CONNECTIONS
    await flood[-1].assert_alive()
    for p in flood:
        p.r.close()
    await asyncio.sleep_ms(50)
    del flood, p
    gc.collect()
    assert len(rig.link._decs) == server.MAX_CONNECTIONS
    # the receive buffers were all made before: nothing was kept
    grown = gc.mem_alloc() - before
    assert grown < 512, grown
