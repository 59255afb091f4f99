# The SELFTEST link command (0x09, docs/protocol.md): what `capkey doctor` asks of the board's
# own parts, with nobody at the keypad. Safe at any time: it pushes the frame already shown to
# the panel again, reads the keypad matrix and the clocks, and changes nothing.
#
# Loaded only while used (firmware/ondemand.py): link/system.py's handler holds it for one call.
import asyncio
import time

from micropython import const

TAG_DISPLAY = const(0x01)  # u8: 0 the panel answered, 1 it failed (then TAG_DISPLAY_ERROR)
TAG_DISPLAY_ERROR = const(0x02)  # UTF-8: the error the panel's driver raised
TAG_KEYS_DOWN = const(0x03)  # UTF-8: keys down at every sample (stuck, or held by someone)
TAG_UPTIME_MS = const(0x04)  # u32: ms since power-up
TAG_CLOCK = const(0x05)  # u32: the board's wall clock, Unix seconds (absent: it has none set)

_SAMPLES = const(5)
_SAMPLE_GAP_MS = const(60)  # 5 samples over ~0.25 s: a key down in all of them is no brush
_EPOCH_2000 = const(946684800)  # MicroPython's time.time() counts from 2000 on some ports
_PLAUSIBLE = const(1704067200)  # 2024-01-01: an earlier time is a clock nobody set


def _tlv(out, tag, value):
    out.append(tag)
    out.append(len(value))
    out.extend(value)


async def _keys_down(board):
    down = None
    for i in range(_SAMPLES):
        if i:
            await asyncio.sleep_ms(_SAMPLE_GAP_MS)
        now = board.keys_held()
        down = now if down is None else "".join(k for k in down if k in now)
    return down


def _wall_clock():
    t = time.time()
    if time.gmtime(0)[0] == 2000:
        t += _EPOCH_2000
    return t if t >= _PLAUSIBLE else None


async def run(board):
    """The SELFTEST answer: TLV items, tags above."""
    out = bytearray()
    try:
        board.display.show()
        _tlv(out, TAG_DISPLAY, b"\x00")
    except Exception as e:  # an I2C NACK, a bus fault: the panel is not answering
        _tlv(out, TAG_DISPLAY, b"\x01")
        _tlv(out, TAG_DISPLAY_ERROR, repr(e).encode()[:120])
    _tlv(out, TAG_KEYS_DOWN, (await _keys_down(board)).encode())
    _tlv(out, TAG_UPTIME_MS, (time.ticks_ms() & 0xFFFFFFFF).to_bytes(4, "big"))
    clock = _wall_clock()
    if clock is not None:
        _tlv(out, TAG_CLOCK, (int(clock) & 0xFFFFFFFF).to_bytes(4, "big"))
    return bytes(out)
