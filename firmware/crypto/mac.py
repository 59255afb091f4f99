# ISO/IEC 9797-1 MACs over DES: MAC algorithm 1 (CBC-MAC) and MAC algorithm 3 (the "retail
# MAC": single-DES CBC-MAC under K, then decrypt with K' and encrypt with K), with padding
# method 1 (zeros, none when aligned) or 2 (0x80 then zeros, always at least one byte).
#
# The data is processed in place: whole blocks go through the cipher straight from the caller's
# buffer and only the last, padded block is copied into an 8-byte work buffer.
from crypto.des import DES
from micropython import const

PAD1 = const(1)
PAD2 = const(2)


def _pad_tail(data, n, method, tail):
    """Write the padded last block into tail; return False when there is no last block."""
    rem = n & 7
    base = n - rem
    for i in range(8):
        tail[i] = 0
    for i in range(rem):
        tail[i] = data[base + i]
    if method == PAD2:
        tail[rem] = 0x80
        return True
    if method != PAD1:
        raise ValueError("padding method")
    # Method 1: zeros only if needed; the empty string still gives one zero block.
    return rem != 0 or n == 0


def _cbc(cipher, data, method, out):
    n = len(data)
    for i in range(8):
        out[i] = 0
    cipher.cbc_update(out, data, n)
    tail = bytearray(8)
    if _pad_tail(data, n, method, tail):
        cipher.cbc_update(out, tail, 8)
    return out


def mac_alg1(key, data, method, out=None):
    """ISO 9797-1 MAC algorithm 1 with DES (8-byte key) or 3DES (16/24) as the block cipher."""
    if out is None:
        out = bytearray(8)
    cipher = DES(key)
    try:
        return _cbc(cipher, data, method, out)
    finally:
        cipher.wipe()


def mac_alg3(key, data, method, out=None):
    """ISO 9797-1 MAC algorithm 3 with a 16-byte key K || K' (single DES CBC under K)."""
    if len(key) != 16:
        raise ValueError("MAC algorithm 3 key length")
    if out is None:
        out = bytearray(8)
    mv = memoryview(key)
    k1 = DES(mv[:8])
    k2 = DES(mv[8:])
    try:
        _cbc(k1, data, method, out)
        k2.decrypt_block(out, out)
        k1.encrypt_block(out, out)
        return out
    finally:
        k1.wipe()
        k2.wipe()
