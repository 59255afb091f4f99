"""Argument checks at the edge of the EMV code (like ``cryptography.utils._check_bytes``) and BCD
packing, shared by the hazmat, the profiles, the issuer and the verifier."""

from __future__ import annotations


def check_bytes(name: str, value: object, length: int | None = None) -> bytes:
    if type(value) is not bytes:  # bytes (the per-code path) skip the copy
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"{name} must be bytes")
        value = bytes(value)
    if length is not None and len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")
    return value


def check_digits(name: str, value: object, min_len: int, max_len: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str of decimal digits")
    if not (min_len <= len(value) <= max_len) or not value.isascii() or not value.isdigit():
        raise ValueError(f"{name} must be {min_len}-{max_len} decimal digits")
    return value


def check_psn(psn: object) -> int:
    if not isinstance(psn, int) or isinstance(psn, bool) or not 0 <= psn <= 99:
        raise ValueError("psn must be an int 0-99")
    return psn


def pack_bcd(digits: str, length: int) -> bytes:
    """Right-justified, zero-filled packed BCD of `length` bytes (EMV format n)."""
    check_digits("digits", digits, 0, 2 * length)
    return bytes.fromhex(digits.zfill(2 * length))


def pack_bcd_f(digits: str, length: int | None = None) -> bytes:
    """Left-justified packed BCD padded with F nibbles (EMV format cn: PAN in tag 5A)."""
    check_digits("digits", digits, 1, 19)
    s = digits + "F" * (len(digits) % 2)
    if length is not None:
        if len(s) > 2 * length:
            raise ValueError("too many digits")
        s = s.ljust(2 * length, "F")
    return bytes.fromhex(s)
