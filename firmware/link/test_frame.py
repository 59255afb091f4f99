# Frame codec against the shared vectors (docs/vectors/link_v1.json), and proof that decoding
# allocates nothing.
import micropython

from link import frame
from link import test_support as _fakes

V = _fakes.load_vectors()


def _room(dec):
    # what the link server does after NEED (server.py _room): a longer frame gets bytes of its
    # own, the decoder goes back to its own buffer once the held bytes fit in it
    want = dec.n + dec.need
    if want <= len(dec.own):
        if dec.buf is not dec.own:
            dec.use()
    elif want > len(dec.buf):
        dec.use(bytearray(want))


def _events(data, chunk, keep=None):
    # Feeds `data` the way the server does: never more than Decoder.need bytes at a time
    # (chunk=None: exactly need, as rp2 stdin; else at most chunk, as a socket).
    dec = frame.Decoder(V["max_payload"], keep)
    out = []
    pos = 0
    while True:
        ev = dec.step()
        if ev == frame.NEED:
            _room(dec)
            k = dec.need if chunk is None else min(dec.need, chunk)
            if chunk is None and pos + k > len(data):
                return out
            k = min(k, len(data) - pos)
            if k == 0:
                return out
            dec.buf[dec.n : dec.n + k] = data[pos : pos + k]
            dec.n += k
            pos += k
        elif ev == frame.FRAME:
            p = bytes(dec.buf[frame.HEADER : frame.HEADER + dec.length]).hex()
            out.append({"frame": {"kind": dec.kind, "rid": dec.rid, "code": dec.code, "payload": p}})
            dec.consume()
        elif ev == frame.TOO_LONG:
            out.append({"error": "TOO_LONG", "rid": dec.rid})
        else:
            out.append({"error": "CRC", "rid": dec.rid})


def test_crc_check_values():
    for v in V["crc8"]:
        d = _fakes.unhex(v["data"])
        assert frame.crc8(d, 0, len(d)) == v["crc"], v
    for v in V["crc16"]:
        d = _fakes.unhex(v["data"])
        assert frame.crc16(d, 0, len(d)) == v["crc"], v


def test_crc16_continues_across_buffers():
    d = b"123456789"
    assert frame.crc16(d, 4, 9, frame.crc16(d, 0, 4)) == 0x29B1


def test_encode_vectors():
    for v in V["encode"]:
        got = frame.encode(v["kind"], v["rid"], v["code"], _fakes.unhex(v["payload"]))
        assert got.hex() == v["out"], v


def test_encode_refuses_oversize():
    try:
        frame.encode(1, 1, 1, bytes(frame.MAX_PAYLOAD + 1))
    except ValueError:
        return
    raise AssertionError("no ValueError")


def test_decode_vectors_exact_reads():
    for c in V["decode"]:
        got = _events(_fakes.unhex(c["in"]), None)
        assert got == c["out"], (c["name"], got)


def test_decode_vectors_partial_reads():
    for chunk in (1, 2, 5, 64):
        for c in V["decode"]:
            got = _events(_fakes.unhex(c["in"]), chunk)
            assert got == c["out"], (c["name"], chunk, got)


def test_decode_vectors_in_a_short_buffer_given_room_for_long_frames():
    # the link server's receive buffers keep room for a short frame only
    for keep in (0, 1, 64):
        for chunk in (None, 1, 7):
            for c in V["decode"]:
                got = _events(_fakes.unhex(c["in"]), chunk, keep)
                assert got == c["out"], (c["name"], keep, chunk, got)


def test_a_refused_long_frame_is_skipped_like_one_too_long():
    # no room to be had for a frame's payload: refuse() skips its header (its fields say which
    # frame it was) and the frame after it is found
    first = frame.encode(frame.KIND_REQUEST, 0x0101, 0x03, bytes(range(40)))
    data = first + frame.encode(frame.KIND_REQUEST, 0x0202, 0x03, b"ok")
    dec = frame.Decoder(frame.MAX_PAYLOAD, 8)
    got = []
    pos = 0
    while pos < len(data) or dec.n:
        ev = dec.step()
        if ev == frame.NEED:
            if dec.n + dec.need > len(dec.buf):
                got.append(("refused", dec.rid, dec.length))
                dec.refuse()
                continue
            if pos == len(data):
                break
            k = min(dec.need, len(data) - pos)
            dec.buf[dec.n : dec.n + k] = data[pos : pos + k]
            dec.n += k
            pos += k
        elif ev == frame.FRAME:
            got.append(("frame", dec.rid, bytes(dec.buf[frame.HEADER : frame.HEADER + dec.length])))
            dec.consume()
    assert got == [("refused", 0x0101, 40), ("frame", 0x0202, b"ok")], got
    assert len(dec.buf) == frame.HEADER + 8 + frame.TRAILER


def test_decode_allocates_nothing():
    # garbage, a bad header, a truncated frame swallowed by the next one (CRC error + rescan), an
    # oversize header and two good frames: every path of step() runs under heap_lock
    data = b""
    for name in ("garbage_before", "bad_hcrc_then_frame", "truncated_then_frame",
                 "too_long_then_frame", "max_payload"):
        for c in V["decode"]:
            if c["name"] == name:
                data += _fakes.unhex(c["in"])
    dec = frame.Decoder()
    buf = dec.buf
    results = bytearray(32)
    rids = bytearray(32)
    nres = 0
    pos = 0
    end = len(data)
    micropython.heap_lock()
    try:
        while True:
            ev = dec.step()
            if ev == frame.NEED:
                k = dec.need
                if pos + k > end:
                    break
                n = dec.n
                for i in range(k):
                    buf[n + i] = data[pos + i]
                dec.n = n + k
                pos += k
                continue
            results[nres] = ev
            rids[nres] = dec.rid & 0xFF
            nres += 1
            if ev == frame.FRAME:
                dec.consume()
    finally:
        micropython.heap_unlock()
    assert bytes(results[:nres]) == bytes(
        [frame.FRAME, frame.FRAME, frame.BAD_CRC, frame.FRAME, frame.TOO_LONG, frame.FRAME,
         frame.FRAME]
    ), results[:nres]
    assert rids[2] == 0x01 and rids[4] == 0x42


def test_heap_lock_catches_allocation():
    # the test above would notice an allocation: heap_lock turns one into MemoryError
    micropython.heap_lock()
    try:
        bytearray(8)
    except MemoryError:
        return
    finally:
        micropython.heap_unlock()
    raise AssertionError("allocation not caught")


def test_resync_cost_is_linear():
    # a CRC failure rescans up to a whole buffer: the skipped bytes are compacted once, not once
    # per byte, so rescanning 1 KB of SYNC-free payload stays cheap
    import time

    payload = bytes(0x11 for _ in range(1024))
    bad = bytearray(frame.encode(1, 3, 3, payload))
    bad[-1] ^= 1
    data = bytes(bad) + frame.encode(1, 4, 3, b"x")
    t = time.ticks_ms()
    got = _events(data, None)
    assert got[0] == {"error": "CRC", "rid": 3} and got[1]["frame"]["rid"] == 4, got
    assert time.ticks_diff(time.ticks_ms(), t) < 1000


def test_a_header_only_decoder_names_the_frame_it_skips():
    # Decoder(0) holds a header and no payload (the link server's refused connections): a frame
    # with a payload comes out as TOO_LONG with every header field, a frame without as FRAME
    data = frame.encode(frame.KIND_REQUEST, 0x1234, 0x01, b"\x01\x01")[: frame.HEADER]
    data += frame.encode(frame.KIND_CANCEL, 0x0042, 0)
    dec = frame.Decoder(0)
    got = []
    pos = 0
    while pos < len(data):
        ev = dec.step()
        if ev == frame.NEED:
            dec.buf[dec.n : dec.n + dec.need] = data[pos : pos + dec.need]
            pos += dec.need
            dec.n += dec.need
            continue
        got.append((ev, dec.kind, dec.rid, dec.code, dec.length))
    got.append((dec.step(), dec.kind, dec.rid, dec.code, dec.length))
    assert len(dec.buf) == frame.HEADER + frame.TRAILER
    assert got == [
        (frame.TOO_LONG, frame.KIND_REQUEST, 0x1234, 0x01, 2),
        (frame.FRAME, frame.KIND_CANCEL, 0x0042, 0, 0),
    ], got
