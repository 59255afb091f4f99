# ECDSA P-256 verification, DER encoding of signatures, and the textbook double-and-add that
# bench_p256.py measures the comb against. Kept apart from p256.py, which the device loads to sign:
# a token never needs to verify, so this code only occupies the heap of self-tests and benchmarks.
from crypto.p256 import _affine, _comb, _dbl, _inv, _madd
from micropython import const

_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
_GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def _add(X1, Y1, Z1, X2, Y2, Z2):
    # General Jacobian addition (add-1998-cmo-2); only used by verify.
    if not Z1:
        return X2, Y2, Z2
    if not Z2:
        return X1, Y1, Z1
    P = _P
    z1 = Z1 * Z1 % P
    z2 = Z2 * Z2 % P
    U1 = X1 * z2 % P
    S1 = Y1 * z2 * Z2 % P
    H = X2 * z1 % P - U1
    R = Y2 * z1 * Z1 % P - S1
    if not H:
        if not R:
            return _dbl(X1, Y1, Z1)
        return 1, 1, 0
    HH = H * H % P
    HHH = HH * H % P
    V = U1 * HH % P
    X3 = (R * R - HHH - 2 * V) % P
    return X3, (R * (V - X3) - S1 * HHH) % P, Z1 * Z2 * H % P


def _mul(k, x, y):
    # k*(x, y) for any point (variable base, 4-bit fixed window). Only used by verify.
    tbl = [(x, y, 1)]
    for _ in range(14):
        X, Y, Z = tbl[-1]
        tbl.append(_madd(X, Y, Z, x, y))
    X = Y = 1
    Z = 0
    for i in range(63, -1, -1):
        for _ in range(4):
            X, Y, Z = _dbl(X, Y, Z)
        w = (k >> (i << 2)) & 15
        if w:
            X2, Y2, Z2 = tbl[w - 1]
            X, Y, Z = _add(X, Y, Z, X2, Y2, Z2)
    return X, Y, Z


def naive_mul(k):
    # Textbook left-to-right double-and-add of G with the same point formulas: the yardstick that
    # bench_p256.py measures the comb against. Not used for signing.
    X = Y = 1
    Z = 0
    gx = _GX
    gy = _GY
    for i in range(255, -1, -1):
        X, Y, Z = _dbl(X, Y, Z)
        if (k >> i) & 1:
            X, Y, Z = _madd(X, Y, Z, gx, gy)
    return X, Y, Z


def decode_point(pub):
    # Uncompressed SEC1 point, checked to be on the curve. Raises ValueError.
    if len(pub) != 65 or pub[0] != 4:
        raise ValueError("point encoding")
    x = int.from_bytes(pub[1:33], "big")
    y = int.from_bytes(pub[33:65], "big")
    P = _P
    if x >= P or y >= P or (y * y - x * x * x + 3 * x - _B) % P:
        raise ValueError("not on curve")
    return x, y


def verify(pub, h, sig):
    # pub: 65-byte uncompressed point; h: 32-byte digest; sig: r || s. True if valid.
    if len(sig) != 64 or len(h) != 32:
        return False
    try:
        qx, qy = decode_point(pub)
    except ValueError:
        return False
    N = _N
    r = int.from_bytes(sig[0:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    w = _inv(s, N)
    u1 = int.from_bytes(h, "big") % N * w % N
    u2 = r * w % N
    X1 = Y1 = 1
    Z1 = 0
    if u1:
        X1, Y1, Z1 = _comb(u1)
    X2, Y2, Z2 = _mul(u2, qx, qy)
    X, Y, Z = _add(X1, Y1, Z1, X2, Y2, Z2)
    if not Z:
        return False
    x, _ = _affine(X, Y, Z)
    return x % N == r


def _der_int(v):
    b = v.to_bytes(33, "big")
    i = 0
    while i < 32 and b[i] == 0 and b[i + 1] < 0x80:
        i += 1
    return b"\x02" + bytes((33 - i,)) + b[i:]


def sig_to_der(sig):
    # r || s -> DER SEQUENCE { INTEGER r, INTEGER s } (at most 72 bytes).
    if len(sig) != 64:
        raise ValueError("signature length")
    body = _der_int(int.from_bytes(sig[0:32], "big")) + _der_int(int.from_bytes(sig[32:64], "big"))
    return b"\x30" + bytes((len(body),)) + body
