# Sealed blobs: authenticated encryption for secrets at rest (private keys, wrapped DEKs).
#
#   blob = version(1) | nonce(16) | ciphertext | tag(32)
#   enc_key || mac_key = HKDF-Expand(key, "capkey-sealed-v1", 64)
#   ciphertext = AES-256-CTR(enc_key, nonce, plaintext)
#   tag = HMAC-SHA256(mac_key, len(aad)(2) | aad | version | nonce | ciphertext)
#
# Encrypt-then-MAC: the tag is checked (in constant time) before anything is decrypted. `aad` binds
# a blob to its purpose ("slot 2 private key", "DEK under PIN"), so blobs cannot be swapped between
# records. The nonce is 16 fresh random bytes from the caller (the board's generator); with a
# 128-bit random initial counter and blobs of a few blocks, counter ranges never overlap in practice.
# A wrong key and a tampered blob fail the same way (SealError), which is how a PIN is checked:
# the DEK wrapped under a PIN-derived key opens only with the right PIN.
from crypto import aes, ct
from crypto.hmac import HmacKey, hkdf_expand
from micropython import const

VERSION = const(1)
_NONCE = const(16)
_TAG = const(32)
OVERHEAD = const(49)  # version + nonce + tag
_INFO = const(b"capkey-sealed-v1")


class SealError(ValueError):
    """The blob is malformed, was not made under this key and aad, or was altered."""


def _keys(key):
    if len(key) != 32:
        raise ValueError("sealing key length")
    k = hkdf_expand(key, _INFO, 64)
    return k[:32], HmacKey(k[32:])


def _aad_len(aad):
    n = len(aad)
    if n > 0xFFFF:
        raise ValueError("aad length")
    return bytes((n >> 8, n & 0xFF))


def seal(key, plaintext, nonce, aad=b""):
    """-> blob. key: 32 bytes; nonce: 16 fresh random bytes."""
    if len(nonce) != _NONCE:
        raise ValueError("nonce length")
    enc, mac = _keys(key)
    head = bytes((VERSION,)) + bytes(nonce)
    body = aes.ctr(enc, nonce, plaintext)
    tag = mac.mac(_aad_len(aad), aad, head, body)
    return head + body + tag


def unseal(key, blob, aad=b""):
    """-> plaintext (bytes), or raise SealError."""
    n = len(blob)
    if n < OVERHEAD or blob[0] != VERSION:
        raise SealError("sealed blob")
    enc, mac = _keys(key)
    mv = memoryview(blob)
    tag = mac.mac(_aad_len(aad), aad, mv[: 1 + _NONCE], mv[1 + _NONCE : n - _TAG])
    if not ct.eq(tag, mv[n - _TAG :]):
        raise SealError("sealed blob")
    return aes.ctr(enc, bytes(mv[1 : 1 + _NONCE]), mv[1 + _NONCE : n - _TAG])
