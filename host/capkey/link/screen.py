"""The device's 128x64 MONO_VLSB framebuffer as a PNG (zlib only), lit pixels light on dark like
the OLED panel."""

from __future__ import annotations

import struct
import zlib

WIDTH = 128
HEIGHT = 64
FB_SIZE = WIDTH * HEIGHT // 8
ON = (0xDC, 0xF0, 0xFF)  # lit OLED pixel
OFF = (0x0B, 0x0E, 0x14)  # dark panel


def pixels(fb: bytes) -> list[list[bool]]:
    """Rows of booleans. MONO_VLSB: byte (y // 8) * 128 + x, bit y % 8 (LSB at the top)."""
    if len(fb) != FB_SIZE:
        raise ValueError(f"framebuffer of {len(fb)} bytes, expected {FB_SIZE}")
    return [[bool(fb[(y >> 3) * WIDTH + x] >> (y & 7) & 1) for x in range(WIDTH)]
            for y in range(HEIGHT)]


def to_png(fb: bytes, *, scale: int = 4, on: tuple[int, int, int] = ON,
           off: tuple[int, int, int] = OFF) -> bytes:
    """PNG bytes of the framebuffer, each pixel a `scale` x `scale` square (RGB, 8 bits)."""
    if not 1 <= scale <= 16:
        raise ValueError("scale must be 1..16")
    lit, dark = bytes(on) * scale, bytes(off) * scale
    raw = bytearray()
    for row in pixels(fb):
        line = b"\x00" + b"".join(lit if p else dark for p in row)  # filter type 0
        raw += line * scale
    w, h = WIDTH * scale, HEIGHT * scale
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(bytes(raw), 9))
            + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
