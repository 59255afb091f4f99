# HMAC-SHA256 (RFC 2104), HKDF-SHA256 (RFC 5869) and PBKDF2-HMAC-SHA256 (RFC 8018) on top of
# the interpreter's hashlib.sha256.
#
# MicroPython's sha256 objects cannot be copied, so the padded keys are kept and rehashed for each
# MAC; the pads are made with one big-int XOR instead of a byte loop.
import hashlib

from micropython import const

_BLOCK = const(64)
_IPAD = const(0x36363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636)
_OPAD = const(0x5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C)


def _pads(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    k = int.from_bytes(key, "big") << ((_BLOCK - len(key)) << 3)
    return (k ^ _IPAD).to_bytes(_BLOCK, "big"), (k ^ _OPAD).to_bytes(_BLOCK, "big")


class HmacKey:
    # A key prepared once for many MACs: HmacKey(key).mac(part, part, ...).
    def __init__(self, key):
        self._i, self._o = _pads(key)

    def mac(self, *parts):
        h = hashlib.sha256(self._i)
        for p in parts:
            h.update(p)
        inner = h.digest()
        h = hashlib.sha256(self._o)
        h.update(inner)
        return h.digest()

    def wipe(self):
        # Pads are immutable bytes; drop the references so they can be collected.
        self._i = self._o = b""


def hmac_sha256(key, *parts):
    # HMAC-SHA256(key, part1 || part2 || ...): the message comes in parts to avoid concatenation.
    ipad, opad = _pads(key)
    h = hashlib.sha256(ipad)
    for p in parts:
        h.update(p)
    inner = h.digest()
    h = hashlib.sha256(opad)
    h.update(inner)
    return h.digest()


def hkdf_extract(salt, ikm):
    return hmac_sha256(salt if salt else bytes(32), ikm)


def hkdf_expand(prk, info, length):
    if length > 255 * 32:
        raise ValueError("hkdf length")
    k = HmacKey(prk)
    out = bytearray(length)
    t = b""
    i = 0
    n = 0
    while n < length:
        i += 1
        t = k.mac(t, info, bytes((i,)))
        m = min(32, length - n)
        out[n : n + m] = t[:m]
        n += m
    return bytes(out)


def hkdf(ikm, salt, info, length=32):
    # RFC 5869 HKDF-SHA256: extract then expand.
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def pbkdf2_sha256(password, salt, iterations, length=32):
    # RFC 8018 PBKDF2 with HMAC-SHA256. The XOR of the U_i runs on one big int.
    if iterations < 1 or length < 1:
        raise ValueError("pbkdf2 parameters")
    ipad, opad = _pads(password)
    sha = hashlib.sha256
    out = bytearray(length)
    n = 0
    blk = 0
    while n < length:
        blk += 1
        h = sha(ipad)
        h.update(salt)
        h.update(blk.to_bytes(4, "big"))
        inner = h.digest()
        h = sha(opad)
        h.update(inner)
        u = h.digest()
        acc = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            h = sha(ipad)
            h.update(u)
            inner = h.digest()
            h = sha(opad)
            h.update(inner)
            u = h.digest()
            acc ^= int.from_bytes(u, "big")
        m = min(32, length - n)
        out[n : n + m] = acc.to_bytes(32, "big")[:m]
        n += m
    return bytes(out)
