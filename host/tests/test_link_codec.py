"""The host frame codec against the shared vectors, and fuzzed."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from link_fakes import VECTORS

from capkey.link.errors import LinkError
from capkey.link.transport import (
    MAX_PAYLOAD,
    Decoder,
    Frame,
    FrameError,
    crc8,
    crc16,
    encode,
    header,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))


def _events(evs: list[Frame | FrameError]) -> list[dict]:
    out = []
    for e in evs:
        if isinstance(e, Frame):
            out.append({"frame": {"kind": e.kind, "rid": e.rid, "code": e.code,
                                  "payload": e.payload.hex()}})
        else:
            out.append({"error": e.error.name, "rid": e.rid})
    return out


def test_crc_check_values():
    for v in VECTORS["crc8"]:
        assert crc8(bytes.fromhex(v["data"])) == v["crc"]
    for v in VECTORS["crc16"]:
        assert crc16(bytes.fromhex(v["data"])) == v["crc"]


@pytest.mark.parametrize("v", VECTORS["encode"], ids=lambda v: v["out"][:24])
def test_encode_vectors(v):
    assert encode(v["kind"], v["rid"], v["code"], bytes.fromhex(v["payload"])).hex() == v["out"]


@pytest.mark.parametrize("bad", [
    dict(kind=256, rid=0, code=0), dict(kind=1, rid=65536, code=0), dict(kind=1, rid=-1, code=0),
    dict(kind=1, rid=0, code=300), dict(kind=1, rid=0, code=0, payload=bytes(MAX_PAYLOAD + 1)),
])
def test_encode_refuses(bad):
    with pytest.raises(ValueError):
        encode(**bad)


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["name"])
def test_decode_vectors_at_once(case):
    assert _events(Decoder(VECTORS["max_payload"]).feed(bytes.fromhex(case["in"]))) == case["out"]


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["name"])
def test_decode_vectors_byte_by_byte(case):
    dec = Decoder()
    evs = []
    for b in bytes.fromhex(case["in"]):
        evs += dec.feed(bytes((b,)))
    assert _events(evs) == case["out"]


def test_pending_and_skipped_counts():
    dec = Decoder()
    frame = encode(1, 1, 3, b"hi")
    assert dec.feed(b"\x00\x01\x02" + frame[:5]) == []
    assert dec.skipped == 3 and dec.pending == 5
    assert dec.feed(frame[5:]) == [Frame(1, 1, 3, b"hi")]
    assert dec.pending == 0 and dec.skipped == 3


def test_frame_error_carries_rid():
    bad = bytearray(encode(1, 0x1234, 3, b"abc"))
    bad[-2] ^= 0xFF
    assert Decoder().feed(bytes(bad)) == [FrameError(LinkError.ERR.CRC, 0x1234)]


frames = st.builds(
    lambda k, r, c, p: encode(k, r, c, p),
    st.integers(1, 4), st.integers(0, 0xFFFF), st.integers(0, 0xFF),
    st.binary(max_size=64) | st.binary(min_size=1000, max_size=MAX_PAYLOAD),
)


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=200), frame=frames, split=st.integers(0, 2000))
def test_fuzz_frame_after_garbage_is_recovered(garbage, frame, split):
    # Whatever garbage comes first, nothing raises and the valid frame after it comes out. The one
    # exception is garbage holding a false header (good HCRC by chance) whose LEN reaches past the
    # end of the data: the decoder then waits for those bytes, and the gap rule (Transport resets
    # the decoder after GAP seconds of silence) recovers the next frame.
    dec = Decoder()
    data = garbage + frame
    split = min(split, len(data))
    evs = dec.feed(data[:split]) + dec.feed(data[split:])
    got = [e for e in evs if isinstance(e, Frame)]
    want = Decoder().feed(frame)[0]
    if not got or got[-1] != want:
        assert dec.pending > 0
        dec.reset()
        got = dec.feed(frame)
    assert got[-1] == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(frames, st.binary(max_size=40)), max_size=12),
       st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_fuzz_interleaved_never_raises_and_chunking_does_not_matter(parts, chunks):
    data = b"".join(parts)
    whole = Decoder().feed(data)
    dec = Decoder()
    evs: list = []
    i = 0
    k = 0
    while i < len(data):
        n = chunks[k % len(chunks)]
        evs += dec.feed(data[i : i + n])
        i += n
        k += 1
    assert evs == whole
    for e in evs:
        assert isinstance(e, Frame | FrameError)


@settings(max_examples=200, deadline=None)
@given(st.lists(frames, min_size=1, max_size=8), st.data())
def test_fuzz_frames_separated_by_sync_free_garbage_all_recovered(fs, data):
    # garbage without 0xCA cannot start a false header: every frame must come out, in order
    junk = st.binary(max_size=30).map(lambda b: b.replace(b"\xca", b"\x00"))
    stream = b"".join(data.draw(junk) + f for f in fs) + data.draw(junk)
    got = Decoder().feed(stream)
    assert got == [Decoder().feed(f)[0] for f in fs]


def _random_stream(rng: random.Random) -> bytes:
    # frames, garbage, damaged frames, false and oversize headers, truncations, in any order
    parts = []
    for _ in range(rng.randrange(1, 8)):
        kind = rng.randrange(8)
        payload = rng.randbytes(rng.choice((0, 1, 5, 64, 300, 1024)))
        f = encode(rng.randrange(1, 5), rng.randrange(65536), rng.randrange(256), payload)
        if kind == 0:
            parts.append(rng.randbytes(rng.randrange(1, 40)))
        elif kind == 1:
            b = bytearray(f)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            parts.append(bytes(b))
        elif kind == 2:
            parts.append(f[: rng.randrange(1, len(f))])
        elif kind == 3:
            parts.append(header(1, rng.randrange(65536), 3, rng.randrange(1025, 65536)))
        elif kind == 4:
            parts.append(header(1, rng.randrange(65536), 3, rng.randrange(0, 1025)))
        elif kind == 5:
            parts.append(b"\xca\x4b" + rng.randbytes(rng.randrange(0, 12)))
        else:
            parts.append(f)
    return b"".join(parts)


def test_firmware_and_host_decoders_agree_on_random_streams(tmp_path):
    # differential fuzz: the firmware decoder in MicroPython (exact reads) and the host decoder
    # (everything at once) must give the same events for the same bytes
    rng = random.Random(20261127)
    streams = [_random_stream(rng) for _ in range(400)]
    src = tmp_path / "streams.txt"
    src.write_text("".join(s.hex() + "\n" for s in streams))
    proc = subprocess.run(
        [MICROPYTHON, "-X", "heapsize=190k", str(HERE / "link_mp_decode.py"), str(ROOT), str(src)],
        capture_output=True, text=True, timeout=300, check=True)
    device = [json.loads(line) for line in proc.stdout.splitlines()]
    names = {LinkError.ERR.CRC.name: "CRC", LinkError.ERR.TOO_LONG.name: "TOO_LONG"}
    for data, dev_events in zip(streams, device, strict=True):
        host = [[e.kind, e.rid, e.code, e.payload.hex()] if isinstance(e, Frame)
                else [names[e.error.name], e.rid] for e in Decoder().feed(data)]
        assert host == dev_events, data.hex()
    # the streams did exercise every outcome
    kinds = [e[0] if isinstance(e[0], str) else "FRAME" for evs in device for e in evs]
    assert min(kinds.count(k) for k in ("FRAME", "CRC", "TOO_LONG")) >= 50, len(kinds)
