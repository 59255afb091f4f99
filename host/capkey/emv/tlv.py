"""Minimal BER-TLV (EMV Book 3 annex B) encode/decode: what CAP needs, strictly checked.

Tags are handled as integers of their encoded bytes (``0x9F37``, ``0x5A``, ``0xDF01``).
Lengths up to 65535 (``82 xx xx``). The parser refuses truncated or over-long input rather than
guessing. Use :mod:`capkey.emv.verifier` rather than this module in a bank back end.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import Error


class TlvError(Error, ValueError):
    """Malformed BER-TLV."""


def tag_bytes(tag: int) -> bytes:
    if not isinstance(tag, int) or isinstance(tag, bool) or not 0 < tag <= 0xFFFFFF:
        raise TypeError("tag must be an int of 1-3 bytes")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    # Check that the encoding is a well-formed single tag (multi-byte marker and continuation bits).
    if len(raw) == 1 and raw[0] & 0x1F == 0x1F:
        raise ValueError(f"tag {tag:X} announces more bytes")
    if len(raw) > 1:
        if raw[0] & 0x1F != 0x1F:
            raise ValueError(f"tag {tag:X}: first byte does not announce a multi-byte tag")
        for b in raw[1:-1]:
            if not b & 0x80:
                raise ValueError(f"tag {tag:X}: missing continuation bit")
        if raw[-1] & 0x80:
            raise ValueError(f"tag {tag:X}: last byte has the continuation bit")
    return raw


def encode_length(n: int) -> bytes:
    if n < 0 or n > 0xFFFF:
        raise ValueError("TLV length out of range")
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    return bytes([0x82]) + n.to_bytes(2, "big")


def encode(tag: int, value: bytes) -> bytes:
    """One TLV object."""
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError("value must be bytes")
    return tag_bytes(tag) + encode_length(len(value)) + bytes(value)


def encode_many(items: list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...]) -> bytes:
    return b"".join(encode(tag, value) for tag, value in items)


def _read_tag(data: bytes, i: int) -> tuple[int, int]:
    if i >= len(data):
        raise TlvError("truncated tag")
    start = i
    first = data[i]
    i += 1
    if first & 0x1F == 0x1F:
        while True:
            if i >= len(data) or i - start >= 3:
                raise TlvError("truncated or over-long tag")
            b = data[i]
            i += 1
            if not b & 0x80:
                break
    return int.from_bytes(data[start:i], "big"), i


def _read_length(data: bytes, i: int) -> tuple[int, int]:
    if i >= len(data):
        raise TlvError("truncated length")
    first = data[i]
    i += 1
    if first < 0x80:
        return first, i
    n = first & 0x7F
    if n == 0 or n > 2 or i + n > len(data):
        raise TlvError("unsupported or truncated length")
    length = int.from_bytes(data[i : i + n], "big")
    if length < 0x80 or (n == 2 and length <= 0xFF):
        raise TlvError("non-minimal length encoding")
    return length, i + n


def iter_tlv(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yields (tag, value) for each top-level object; raises TlvError on malformed input."""
    data = bytes(data)
    i = 0
    while i < len(data):
        tag, i = _read_tag(data, i)
        length, i = _read_length(data, i)
        if i + length > len(data):
            raise TlvError("value runs past the end")
        yield tag, data[i : i + length]
        i += length


def parse(data: bytes) -> list[tuple[int, bytes]]:
    return list(iter_tlv(data))


def parse_dict(data: bytes) -> dict[int, bytes]:
    """Top-level objects as a dict; a repeated tag is an error."""
    out: dict[int, bytes] = {}
    for tag, value in iter_tlv(data):
        if tag in out:
            raise TlvError(f"duplicate tag {tag:X}")
        out[tag] = value
    return out


def is_constructed(tag: int) -> bool:
    return bool(tag_bytes(tag)[0] & 0x20)


def find(data: bytes, tag: int) -> bytes | None:
    """Depth-first search for `tag` through constructed objects."""
    for t, value in iter_tlv(data):
        if t == tag:
            return value
        if is_constructed(t):
            found = find(value, tag)
            if found is not None:
                return found
    return None


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """A Data Object List (CDOL1, PDOL…): list of (tag, length) without values."""
    dol = bytes(dol)
    out = []
    i = 0
    while i < len(dol):
        tag, i = _read_tag(dol, i)
        length, i = _read_length(dol, i)
        out.append((tag, length))
    return out


def encode_dol(items: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> bytes:
    return b"".join(tag_bytes(tag) + encode_length(length) for tag, length in items)
