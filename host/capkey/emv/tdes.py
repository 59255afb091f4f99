"""Hazardous materials: 3DES and the ISO/IEC 9797-1 MACs the EMV cryptograms are built from
(EMV 4.3 Book 2 A1.2; ISO/IEC 9797-1 MAC algorithms 1 and 3, padding methods 1 and 2).

Part of :mod:`capkey.emv.hazmat`, which re-exports these names: use the verifier instead.
Block ciphers come from ``cryptography`` (TripleDES always with a 24-byte key: single DES is
``K‖K‖K``, double-length 3DES is ``K1‖K2‖K1``).
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes

from .checks import check_bytes

_ODD_PARITY = bytes((b & 0xFE) | ((bin(b >> 1).count("1") + 1) & 1) for b in range(256))


def adjust_parity(key: bytes) -> bytes:
    """Sets the low bit of each byte so that every byte has odd parity (DES key convention)."""
    return check_bytes("key", key).translate(_ODD_PARITY)


def _key24(key: bytes) -> bytes:
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise ValueError("DES key must be 8, 16 or 24 bytes")


def _ecb(key: bytes):
    return Cipher(TripleDES(_key24(key)), modes.ECB())


_ECB_MODE = modes.ECB()
_CBC_ZERO = modes.CBC(bytes(8))


def _new_ctx(key24: bytes, mode: modes.ECB | modes.CBC) -> CipherContext:
    # Only the public API: a verifier a bank imports must not break on a cryptography upgrade.
    return Cipher(TripleDES(key24), mode).encryptor()


def _check_blocks(name: str, data: bytes) -> bytes:
    data = check_bytes(name, data)
    if not data or len(data) % 8:
        raise ValueError(f"{name} must be a non-empty multiple of 8 bytes")
    return data


def des_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """Single DES, ECB (key: 8 bytes; parity bits ignored)."""
    key = check_bytes("key", key, 8)
    enc = _ecb(key).encryptor()
    return enc.update(_check_blocks("data", data)) + enc.finalize()


def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """Double-length (16-byte) or triple-length (24-byte) 3DES-EDE, ECB."""
    key = check_bytes("key", key)
    if len(key) not in (16, 24):
        raise ValueError("3DES key must be 16 or 24 bytes")
    enc = _ecb(key).encryptor()
    return enc.update(_check_blocks("data", data)) + enc.finalize()


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    key = check_bytes("key", key)
    if len(key) not in (16, 24):
        raise ValueError("3DES key must be 16 or 24 bytes")
    dec = _ecb(key).decryptor()
    return dec.update(_check_blocks("data", data)) + dec.finalize()


def kcv(key: bytes, length: int = 3) -> bytes:
    """Key check value: the first `length` bytes of 3DES(key)[00…00]."""
    return tdes_ecb_encrypt(key, bytes(8))[:length]


def pad_method_1(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 1: zeros up to a multiple of 8 (an empty input gets one
    block); nothing is added to aligned data."""
    return _padded(check_bytes("data", data), 1)


def pad_method_2(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: 0x80 then zeros up to a multiple of 8 (always adds)."""
    return _padded(check_bytes("data", data), 2)


def pad(data: bytes, padding: int) -> bytes:
    """`data` padded with ISO/IEC 9797-1 padding method `padding` (1 or 2)."""
    if padding not in (1, 2):
        raise ValueError("padding must be 1 or 2")
    return _padded(check_bytes("data", data), padding)


def _padded(data: bytes, padding: int) -> bytes:
    """Padding of data already checked (the cryptogram path builds its own bytes)."""
    if padding == 2:
        return data + b"\x80" + bytes(-(len(data) + 1) % 8)
    return data + bytes(-len(data) % 8) if data else bytes(8)


class TdesKey:
    """A double-length DES key with its cipher contexts kept for reuse.

    ECB contexts carry no state between blocks, so one encryptor serves every block. The retail
    MAC's single-DES CBC part runs on one long-lived CBC context: its chaining value after each
    call is known (the last output block), so the next message's first block is XORed with it,
    which is the same as starting again from IV 0; when a message's blocks before the last are
    those of the previous message (a verifier trying IAD variants, which differ in the last
    block only), their CBC value is reused. Contexts are what a key costs (≈ 3.7 µs each with
    the public API), so the CBC and decryption contexts are made on first use: an IMK or an
    M/Chip card key only derives keys and never needs them. Not thread-safe: use one instance
    per thread.
    """

    __slots__ = ("_key", "_enc", "_dec", "_cbc1", "_chain", "_body")
    _key: bytes
    _enc: CipherContext
    _dec: CipherContext | None
    _cbc1: CipherContext | None
    _chain: int
    _body: bytes

    def __init__(self, key: bytes):
        self._setup(check_bytes("key", key, 16))

    def _setup(self, key: bytes) -> None:
        self._key = key
        self._enc = _new_ctx(key + key[:8], _ECB_MODE)  # 3DES-EDE K1 K2 K1
        self._cbc1 = None  # single DES with K1, CBC from IV 0: made by the first MAC
        self._chain = 0  # the CBC context's current chaining value, as an int
        self._body = b""  # the blocks that chaining value is the CBC-MAC of
        self._dec = None  # made on first use: a session key never decrypts

    def encrypt(self, data: bytes) -> bytes:
        return self._enc.update(_check_blocks("data", data))

    def derive(self, blocks: bytes) -> TdesKey:
        """The double-length key E(blocks) with DES parity set: EMV session keys and ICC master
        keys. `blocks` is 16 bytes built by the caller (no check: it is on the per-code path)."""
        key = TdesKey.__new__(TdesKey)
        key._setup(self._enc.update(blocks).translate(_ODD_PARITY))
        return key

    def decrypt(self, data: bytes) -> bytes:
        dec = self._dec
        if dec is None:
            dec = self._dec = _ecb(self._key).decryptor()
        return dec.update(_check_blocks("data", data))

    def retail_mac(self, padded: bytes) -> bytes:
        """ISO/IEC 9797-1 MAC algorithm 3 over already padded data (multiple of 8 bytes):
        single-DES CBC with K1, the last block through 3DES (= D_K2 then E_K1 of the CBC value)."""
        n = len(padded)
        if not n or n % 8:
            raise ValueError("padded data must be a non-empty multiple of 8 bytes")
        body = padded[: n - 8]
        if not body:
            h = 0
        elif body == self._body:
            h = self._chain
        else:
            self._body = body
            cbc = self._cbc1
            if cbc is None:
                cbc = self._cbc1 = _new_ctx(self._key[:8] * 3, _CBC_ZERO)
            elif self._chain:
                body = (int.from_bytes(body[:8], "big") ^ self._chain).to_bytes(8, "big") + body[8:]
            h = self._chain = int.from_bytes(cbc.update(body)[-8:], "big")
        return self._enc.update((int.from_bytes(padded[n - 8 :], "big") ^ h).to_bytes(8, "big"))


def mac_iso9797_1(key: bytes, data: bytes, padding: int) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1 with single DES (CBC-MAC, IV 0, last block)."""
    key = check_bytes("key", key, 8)
    padded = pad(data, padding)
    enc = Cipher(TripleDES(key * 3), modes.CBC(bytes(8))).encryptor()
    return (enc.update(padded) + enc.finalize())[-8:]


def mac_iso9797_3(key: bytes, data: bytes, padding: int) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC") with a 16-byte key K1‖K2."""
    return TdesKey(key).retail_mac(pad(data, padding))
