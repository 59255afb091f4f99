# AES-CTR (NIST SP 800-38A section 6.5) on top of cryptolib's AES-ECB, which is all that stock
# MicroPython offers. The counter block is the 16-byte initial block incremented as one 128-bit
# big-endian integer (the "standard incrementing function" of SP 800-38A appendix B.1), so the
# NIST F.5 vectors apply. Keys of 16 or 32 bytes.
#
# The keystream is built in one buffer and encrypted by a single ECB call; the XOR runs on big
# ints rather than a byte loop. Encryption and decryption are the same operation.
import cryptolib
from micropython import const

_MODE_ECB = const(1)
_MASK128 = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)


def ctr(key, counter, data):
    """AES-CTR of data (bytes-like) under key with the 16-byte initial counter block."""
    if len(key) not in (16, 32):
        raise ValueError("aes key length")
    if len(counter) != 16:
        raise ValueError("ctr block length")
    n = len(data)
    if not n:
        return b""
    blocks = (n + 15) >> 4
    ks = bytearray(blocks << 4)
    c = int.from_bytes(counter, "big")
    for i in range(blocks):
        ks[i << 4 : (i + 1) << 4] = ((c + i) & _MASK128).to_bytes(16, "big")
    ks = cryptolib.aes(key, _MODE_ECB).encrypt(ks)
    x = int.from_bytes(data, "big") ^ (int.from_bytes(ks, "big") >> ((len(ks) - n) << 3))
    return x.to_bytes(n, "big")
