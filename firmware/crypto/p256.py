# ECDSA over NIST P-256 (secp256r1) with SHA-256, for the certificate key.
#
# Pure MicroPython on big ints. Speed comes from the algorithm, not from tricks:
#   - points in Jacobian coordinates (no inversion until the end), a = -3 doubling;
#   - k*G with a fixed-base signed comb (8 teeth 32 bits apart, 4 tables of 128 affine points,
#     see _comb): 7 doublings and 32 mixed additions instead of 256 doublings and ~128 additions
#     for double-and-add. The tables (32 KB) are the file p256_comb.bin next to this module, read
#     entry by entry (64 bytes, 32 reads per k*G) so they never occupy the heap; test_p256.py
#     recomputes them from G and writes the file;
#   - lazy reduction: one "% P" per product, sums and differences are left unreduced;
#   - inverses by the extended Euclidean algorithm (MicroPython's 3-argument pow is ~6x slower).
#
# Side channels: MicroPython big ints are not constant time and this code cannot be. What it does:
# the nonce is turned into a fixed-length scalar (k + c*n, top bit always set) so the comb always
# runs the same sequence of doublings and additions (a zero column adds into a dummy), and the
# nonce inverse is blinded. Every signature also needs the person's OK and PIN on the keypad, which
# bounds how many timings a hostile host can collect. See docs/threat-model.md.
#
# Nonces: RFC 6979 deterministic (HMAC-DRBG over the private key and the hash), optionally hedged
# with fresh board randomness as RFC 6979 section 3.6 allows ("additional data").
#
# Public API (ints for scalars, bytes for encodings):
#   keygen(random) -> (d, pub65)      private_from_random(b32) -> d or None
#   public_key(d) -> pub65            sign(d, h32, extra=None) -> sig64 (r || s, 32 bytes each)
# Verification, the DER form and the naive yardstick are in p256_verify.py: the device only signs,
# so they stay out of its heap unless a self-test imports them.

from crypto import hmac as _hmac
from micropython import const

_D = const(32)  # comb teeth are 32 bits apart: 8 teeth cover 256 bits
_E = const(8)  # columns per table: 4 tables of 8 columns (32 columns in all)
_TABLE_NAME = const("p256_comb.bin")


def _table_path():
    # Next to this module (file system, .py or .mpy); frozen builds keep the file in /crypto.
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    for d in (here, "/crypto", "crypto"):
        try:
            open(d + "/" + _TABLE_NAME, "rb").close()
            return d + "/" + _TABLE_NAME
        except OSError:
            pass
    raise OSError("p256 comb table missing: " + _TABLE_NAME)


TABLE_PATH = _table_path()

_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)



def _inv(a, m):
    # Extended Euclid; a is reduced first, a must be invertible.
    a %= m
    if not a:
        raise ValueError("no inverse")
    b = m
    x0 = 1
    x1 = 0
    while b:
        q = a // b
        a, b = b, a - q * b
        x0, x1 = x1, x0 - q * x1
    return x0 % m


# -- Jacobian point arithmetic (X, Y, Z); Z == 0 is the point at infinity --------------------


def _dbl(X, Y, Z):
    # dbl-2001-b for a = -3: 3M + 5S.
    P = _P
    d = Z * Z % P
    g = Y * Y % P
    b = X * g % P
    a = 3 * (X - d) * (X + d) % P
    X3 = (a * a - 8 * b) % P
    return X3, (a * (4 * b - X3) - 8 * g * g) % P, 2 * Y * Z % P


def _madd(X1, Y1, Z1, x2, y2):
    # Jacobian + affine (madd-2004-hmv, 8M + 3S). Handles infinity and P == +-Q.
    if not Z1:
        return x2, y2, 1
    P = _P
    t = Z1 * Z1 % P
    H = x2 * t % P - X1
    R = y2 * t * Z1 % P - Y1
    if not H:
        if not R:
            return _dbl(X1, Y1, Z1)
        return 1, 1, 0
    HH = H * H % P
    HHH = HH * H % P
    V = X1 * HH % P
    X3 = (R * R - HHH - 2 * V) % P
    return X3, (R * (V - X3) - Y1 * HHH) % P, Z1 * H % P


def _affine(X, Y, Z):
    if not Z:
        raise ValueError("infinity")
    P = _P
    zi = _inv(Z, P)
    z2 = zi * zi % P
    return X * z2 % P, Y * z2 * zi % P


def _comb(k):
    # k*G for 0 < k < n, Jacobian, by a signed multi-table comb (the layout of libsecp256k1's
    # ecmult_gen, written afresh):
    #   m = k if k is odd, else k - n (odd, |m| < 2^256); B = (m + 2^256 - 1) / 2 has bits b_i
    #   and m = sum((2 b_i - 1) 2^i), every digit +1 or -1. Bit i = 32 j + _E t + c sits in
    #   tooth j (0..7), table t (0..3), column c (0.._E-1). A column is 8 signed digits; its
    #   value is entry (7 low bits) of table t when tooth 7's digit is +1, or the negated entry
    #   of the complemented bits when it is -1. Table t, entry i (64 bytes at (128 t + i) * 64):
    #   2^(224 + _E t) G + sum over j < 7 of (+1 if bit j of i else -1) 2^(32 j + _E t) G.
    # No column is ever zero, so every scalar runs the same 7 doublings and 32 additions, and
    # the sign of an entry is applied without a branch.
    N = _N
    m = k - N * (1 - (k & 1))
    kb = ((m + (1 << 256) - 1) >> 1).to_bytes(32, "little")
    with open(TABLE_PATH, "rb") as f:
        return _walk(kb, f, bytearray(64))


def _walk(kb, f, buf):
    P = _P
    mv = memoryview(buf)
    X = Y = 1
    Z = 0
    c = _E - 1
    while c >= 0:
        if Z:
            X, Y, Z = _dbl(X, Y, Z)
        col = c
        o = 0  # offset of table t
        while col < _D:
            # Tooth j's bit col is bit (col & 7) of byte 4 j + col / 8 (teeth are 32 bits apart).
            i = col >> 3
            s = col & 7
            v = (
                (((kb[i + 28] >> s) & 1) << 7)
                | (((kb[i + 24] >> s) & 1) << 6)
                | (((kb[i + 20] >> s) & 1) << 5)
                | (((kb[i + 16] >> s) & 1) << 4)
                | (((kb[i + 12] >> s) & 1) << 3)
                | (((kb[i + 8] >> s) & 1) << 2)
                | (((kb[i + 4] >> s) & 1) << 1)
                | ((kb[i] >> s) & 1)
            )
            top = v >> 7
            f.seek(o + (((v ^ (top - 1)) & 0x7F) << 6))  # complemented when tooth 7's digit is -1
            f.readinto(buf)
            x = int.from_bytes(mv[0:32], "big")
            y = int.from_bytes(mv[32:64], "big")
            y = (P - y, y)[top]
            X, Y, Z = _madd(X, Y, Z, x, y)
            o += 8192
            col += _E
        c -= 1
    return X, Y, Z


# -- encodings -------------------------------------------------------------------------------


def _encode_point(x, y):
    b = bytearray(65)
    b[0] = 4
    b[1:33] = x.to_bytes(32, "big")
    b[33:65] = y.to_bytes(32, "big")
    return bytes(b)


def public_key(d):
    if not 0 < d < _N:
        raise ValueError("private key range")
    return _encode_point(*_affine(*_comb(d)))


def private_from_random(b32):
    # A 32-byte random string -> private scalar, or None (rejection sampling, p ~ 2^-32).
    d = int.from_bytes(b32, "big")
    if 0 < d < _N:
        return d
    return None


def keygen(random):
    # random(n) -> n bytes. Returns (d, uncompressed public key).
    while True:
        d = private_from_random(random(32))
        if d is not None:
            return d, public_key(d)


def private_to_bytes(d):
    return d.to_bytes(32, "big")


def private_from_bytes(b):
    if len(b) != 32:
        raise ValueError("private key length")
    d = int.from_bytes(b, "big")
    if not 0 < d < _N:
        raise ValueError("private key range")
    return d


# -- ECDSA -----------------------------------------------------------------------------------


def _nonces(d, h, extra):
    # RFC 6979 section 3.2 with HMAC-SHA256 (qlen = hlen = 256), section 3.6 additional data.
    x = d.to_bytes(32, "big")
    h1 = (int.from_bytes(h, "big") % _N).to_bytes(32, "big")
    hm = _hmac.hmac_sha256
    V = b"\x01" * 32
    K = hm(b"\x00" * 32, V, b"\x00", x, h1, extra or b"")
    V = hm(K, V)
    K = hm(K, V, b"\x01", x, h1, extra or b"")
    V = hm(K, V)
    while True:
        V = hm(K, V)
        k = int.from_bytes(V, "big")
        if 0 < k < _N:
            yield k
        K = hm(K, V, b"\x00")
        V = hm(K, V)


def _sign_k(d, e, k, b):
    # One ECDSA attempt with nonce k and blinding factor b: (r, s) or None if r or s is zero.
    N = _N
    X, Y, Z = _comb(k)
    zi = _inv(Z, _P)
    r = X * zi * zi % _P % N
    if not r:
        return None
    # Blinded inverse: 1/k = b / (k*b), so Euclid never runs on k itself.
    s = _inv(k * b % N, N) * b % N * (e + r * d) % N
    if not s:
        return None
    return r, s


def sign(d, h, extra=None):
    # d: private scalar; h: 32-byte SHA-256 digest of the message; extra: None for plain RFC 6979,
    # or fresh random bytes for hedged nonces. Returns r || s (64 bytes).
    if len(h) != 32:
        raise ValueError("digest length")
    if not 0 < d < _N:
        raise ValueError("private key range")
    e = int.from_bytes(h, "big") % _N
    gen = _nonces(d, h, extra)
    for k in gen:
        rs = _sign_k(d, e, k, next(gen))
        if rs is not None:
            out = bytearray(64)
            out[0:32] = rs[0].to_bytes(32, "big")
            out[32:64] = rs[1].to_bytes(32, "big")
            return bytes(out)
