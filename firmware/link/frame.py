# Frame codec of link protocol v1 (docs/protocol.md, "Framing").
#
#   off size field
#   0   2    SYNC  0xCA 0x4B
#   2   1    KIND  REQUEST 1, RESPONSE 2, KEEPALIVE 3, CANCEL 4
#   3   2    RID   request id
#   5   1    CODE  command / status / keepalive status / 0
#   6   2    LEN   payload length, 0..MAX_PAYLOAD
#   8   1    HCRC  CRC-8 (poly 0x07, init 0) over bytes 0..7
#   9   LEN  payload
#   9+LEN 2  CRC   CRC-16/CCITT-FALSE over bytes 0..8+LEN
#
# Decoder is the synchronous core shared by every way of reading: it looks only at bytes it holds,
# says how many more it needs, and never allocates (test_frame.py runs it under heap_lock).
# The server reads exactly Decoder.need bytes at a time, because rp2 stdin cannot return
# "whatever is available".
from micropython import const

SYNC0 = const(0xCA)
SYNC1 = const(0x4B)
HEADER = const(9)
TRAILER = const(2)
MAX_PAYLOAD = const(1024)

KIND_REQUEST = const(1)
KIND_RESPONSE = const(2)
KIND_KEEPALIVE = const(3)
KIND_CANCEL = const(4)

# Decoder.step() results
NEED = const(0)  # hold more bytes: read exactly Decoder.need of them
FRAME = const(1)  # a frame: kind, rid, code, length; payload at buf[HEADER:HEADER+length]
TOO_LONG = const(2)  # good header, LEN > max_payload: kind, rid, code, length set; header skipped
BAD_CRC = const(3)  # good header, bad CRC-16: kind, rid, code, length set; SYNC0+1.. rescanned


def _table8():
    t = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        t[i] = c
    return t


def _table16():
    # 256 big-endian u16 entries: high bytes in [0:256], low bytes in [256:512]
    t = bytearray(512)
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        t[i] = c >> 8
        t[256 + i] = c & 0xFF
    return t


_T8 = _table8()
_T16 = _table16()


def crc8(buf, start, end):
    """CRC-8, poly 0x07, init 0, no reflection, no final xor ("123456789" -> 0xF4)."""
    t = _T8
    c = 0
    for i in range(start, end):
        c = t[c ^ buf[i]]
    return c


def crc16(buf, start, end, crc=0xFFFF):
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF ("123456789" -> 0x29B1).
    Pass the previous result as `crc` to continue over several buffers."""
    t = _T16
    for i in range(start, end):
        j = (crc >> 8) ^ buf[i]
        crc = (((crc & 0xFF) << 8) | t[256 + j]) ^ (t[j] << 8)
    return crc


def put_header(buf, kind, rid, code, length):
    """Writes the 9 header bytes (HCRC included) into buf[0:9]."""
    buf[0] = SYNC0
    buf[1] = SYNC1
    buf[2] = kind
    buf[3] = (rid >> 8) & 0xFF
    buf[4] = rid & 0xFF
    buf[5] = code
    buf[6] = (length >> 8) & 0xFF
    buf[7] = length & 0xFF
    buf[8] = crc8(buf, 0, 8)


def encode(kind, rid, code, payload=b""):
    """A whole frame as a new bytes object (tests and rarely used paths; the server writes the
    header, payload and CRC separately instead of concatenating)."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError("payload too long")
    out = bytearray(HEADER + n + TRAILER)
    put_header(out, kind, rid, code, n)
    out[HEADER : HEADER + n] = payload
    c = crc16(out, 0, HEADER + n)
    out[HEADER + n] = c >> 8
    out[HEADER + n + 1] = c & 0xFF
    return bytes(out)


class Decoder:
    """Finds frames in buf[start:n] with the resynchronisation rules of docs/protocol.md.

    The owner appends bytes at buf[n:] (then adds to n) and calls step() until it returns NEED.
    After FRAME the frame is buf[0:HEADER+length+TRAILER]; call consume() once its payload is no
    longer needed. step() moves held bytes to the front of buf only when it returns NEED, so a
    resync over a full buffer costs one copy, not one per skipped byte.

    `keep` (default: max_payload) is the payload room of the decoder's own buffer. After NEED,
    when n + need is more than len(buf) (a longer frame's payload), the owner gives it a buffer of
    that size with use(buf), or refuses the frame with refuse(); use() without a buffer goes back
    to its own once the held bytes fit in it again (reset() always does)."""

    def __init__(self, max_payload=MAX_PAYLOAD, keep=None):
        self.max_payload = max_payload
        self.own = bytearray(HEADER + (max_payload if keep is None else keep) + TRAILER)
        self.buf = self.own
        self.mv = memoryview(self.buf)
        self.start = 0  # first byte not yet skipped
        self.n = 0  # bytes held: buf[start:n]
        self.need = HEADER  # after NEED: exact count to append before the next step()
        self.kind = 0
        self.rid = 0
        self.code = 0
        self.length = 0
        self.skipped = 0  # bytes dropped while searching for SYNC (statistics, logs)

    def reset(self):
        """Drops everything held (the line went idle in the middle of a frame)."""
        self.skipped += self.n - self.start
        self.start = 0
        self.n = 0
        self.need = HEADER
        if self.buf is not self.own:
            self.buf = self.own
            self.mv = memoryview(self.own)

    def use(self, buf=None):
        """After NEED: goes on in `buf` (at least n + need bytes long), or in its own buffer
        (None: the held bytes must fit in it); the held bytes move along."""
        if buf is None:
            buf = self.own
        old = self.buf
        for i in range(self.n):  # after NEED the held bytes start at 0
            buf[i] = old[i]
        self.buf = buf
        self.mv = memoryview(buf)

    def refuse(self):
        """After NEED for a payload no buffer can be found for: the frame's header is skipped
        (as for TOO_LONG: kind, rid, code and length say which frame) and the search goes on."""
        self.start = HEADER
        self.skipped += HEADER

    def consume(self):
        """Drops the frame returned by the last FRAME step."""
        self.start += HEADER + self.length + TRAILER
        if self.start == self.n:
            self.start = 0
            self.n = 0

    def step(self):
        buf = self.buf
        while True:
            s = self.start
            n = self.n
            # 1. skip to the next SYNC (a SYNC0 in the last held byte may be the start of one)
            while s < n and not (buf[s] == SYNC0 and (s + 1 == n or buf[s + 1] == SYNC1)):
                s += 1
            self.skipped += s - self.start
            self.start = s
            if n - s < HEADER:
                return self._need(HEADER)
            # 2. header: a bad HCRC means this SYNC was not one; look again one byte further
            if crc8(buf, s, s + 8) != buf[s + 8]:
                self.start = s + 1
                self.skipped += 1
                continue
            self.kind = buf[s + 2]
            self.rid = (buf[s + 3] << 8) | buf[s + 4]
            self.code = buf[s + 5]
            self.length = length = (buf[s + 6] << 8) | buf[s + 7]
            if length > self.max_payload:
                self.start = s + HEADER
                self.skipped += HEADER
                return TOO_LONG
            total = HEADER + length + TRAILER
            if n - s < total:
                return self._need(total)
            # 3. payload CRC: on mismatch the bytes after SYNC0 are searched again
            e = s + HEADER + length
            if crc16(buf, s, e) != (buf[e] << 8) | buf[e + 1]:
                self.start = s + 1
                self.skipped += 1
                return BAD_CRC
            if s:
                self._compact()
            return FRAME

    def _need(self, size):
        # the candidate frame at start needs `size` bytes: move it to the front, ask for the rest
        self._compact()
        self.need = size - self.n
        return NEED

    def _compact(self):
        s = self.start
        if s:
            buf = self.buf
            k = self.n - s
            for i in range(k):  # byte loop: slice copies would allocate
                buf[i] = buf[s + i]
            self.start = 0
            self.n = k
