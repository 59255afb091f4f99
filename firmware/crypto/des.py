# DES and triple DES (FIPS 46-3, NIST SP 800-67), written from the standard's tables.
#
# The round function is table driven: the eight S-boxes are merged with the P permutation into
# eight 64-entry "SP" tables of 32-bit words, built once at import from the standard's S and P
# tables below. The hot loops (initial/final permutation, 16 rounds, key schedule, CBC) are
# @micropython.viper functions: machine-word integers, so no long integers and no heap allocation
# per block on 32-bit ports. Every right shift is masked before it is combined, so the result is
# the same whether the word is signed 32-bit (bit 31 set: arithmetic shift, on the boards) or
# wider (the 64-bit unix port), and every value that can exceed 32 bits on a 64-bit port is only
# ever read through a mask.
#
# Viper needs a native-code target: mpy-cross must be given -march (armv6m, armv7emsp, xtensawin,
# x64); the unix port runs it directly.
#
# Bit numbering follows the standard: bit 1 is the most significant bit of byte 0.
import micropython
from micropython import const

# Viper code: reloading it on every use would leak (firmware/ondemand.py), so it stays loaded.
ONDEMAND_RESIDENT = True

_ROUND_BYTES = const(8)  # one subkey = 8 six-bit chunks, one per S-box
_KS_BYTES = const(128)  # 16 rounds

# -- the standard's tables (FIPS 46-3, 1-based bit numbers) -----------------------------------
_IP = bytes((
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
))
_P = bytes((
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
))
_PC1 = bytes((
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
))
_PC2 = bytes((
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10,
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
))
_SHIFTS = bytes((1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1))
# S1..S8, each 4 rows of 16 columns, one hex digit per entry.
_S = (
    b"e4d12fb83a6c5907" b"0f74e2d1a6cb9538" b"41e8d62bfc973a50" b"fc8249175b3ea06d"
    b"f18e6b34972dc05a" b"3d47f28ec01a69b5" b"0e7ba4d158c6932f" b"d8a13f42b67c05e9"
    b"a09e63f51dc7b428" b"d709346a285ecbf1" b"d6498f30b12c5ae7" b"1ad069874fe3b52c"
    b"7de3069a1285bc4f" b"d8b56f03472c1ae9" b"a690cb7df13e5284" b"3f06a1d8945bc72e"
    b"2c417ab6853fd0e9" b"eb2c47d150fa3986" b"421bad78f9c5630e" b"b8c71e2d6f09a453"
    b"c1af92680d34e75b" b"af427c9561de0b38" b"9ef528c3704a1db6" b"432c95fabe17608d"
    b"4b2ef08d3c975a61" b"d0b7491ae35c2f86" b"14bdc37eaf680592" b"6bd814a7950fe23c"
    b"d2846fb1a93e50c7" b"1fd8a374c56b0e92" b"7b419ce206adf358" b"21e74a8dfc90356b"
)


def _inverse(perm):
    inv = bytearray(len(perm) + 1)
    for j in range(len(perm)):
        inv[perm[j]] = j + 1
    return inv


def _build_sp():
    # SP[i*64 + x] = P(S_i(x) placed at bits 4i+1..4i+4), a 32-bit little-endian word.
    pinv = _inverse(_P)
    sp = bytearray(2048)
    for i in range(8):
        for x in range(64):
            row = ((x >> 4) & 2) | (x & 1)
            c = _S[i * 64 + row * 16 + ((x >> 1) & 15)]
            v = c - 48 if c < 58 else c - 87
            for k in range(4):
                if v & (8 >> k):
                    j = pinv[4 * i + k + 1]  # output bit number 1..32
                    b = 32 - j  # integer bit, 0 = least significant
                    sp[(i * 64 + x) * 4 + (b >> 3)] |= 1 << (b & 7)
    return sp


_SP = _build_sp()  # heap allocated, so word aligned for ptr32 on every port
_FP = bytes(_inverse(_IP)[1:])


@micropython.viper
def _schedule(key: ptr8, ks: ptr8):
    # PC1 -> C, D (28 bits each); per round rotate left, then PC2 -> 8 six-bit chunks.
    pc1 = ptr8(_PC1)
    pc2 = ptr8(_PC2)
    sh = ptr8(_SHIFTS)
    c = 0
    d = 0
    for j in range(56):
        q = pc1[j] - 1
        bit = (key[q >> 3] >> (7 - (q & 7))) & 1
        if j < 28:
            c = (c << 1) | bit
        else:
            d = (d << 1) | bit
    for r in range(16):
        s = sh[r]
        c = ((c << s) | (c >> (28 - s))) & 0xFFFFFFF
        d = ((d << s) | (d >> (28 - s))) & 0xFFFFFFF
        chunk = 0
        for j in range(48):
            p = pc2[j]
            if p <= 28:
                bit = (c >> (28 - p)) & 1
            else:
                bit = (d >> (56 - p)) & 1
            chunk = (chunk << 1) | bit
            if j % 6 == 5:
                ks[r * 8 + j // 6] = chunk
                chunk = 0


@micropython.viper
def _crypt(ks: ptr8, plan: int, stages: int, blk: ptr8, out: ptr8):
    # One DES pass per stage; stage s uses subkey set (plan >> 4s) & 3, decrypting when bit
    # (4s + 2) is set. FP followed by IP is the identity, so they are applied once for the chain.
    sp = ptr32(_SP)
    ip = ptr8(_IP)
    fp = ptr8(_FP)
    left = 0
    right = 0
    for j in range(32):
        q = ip[j] - 1
        left = (left << 1) | ((blk[q >> 3] >> (7 - (q & 7))) & 1)
        q = ip[j + 32] - 1
        right = (right << 1) | ((blk[q >> 3] >> (7 - (q & 7))) & 1)
    for s in range(stages):
        k = ptr8(uint(ks) + ((plan >> (4 * s)) & 3) * 128)
        step = 8
        pos = 0
        if (plan >> (4 * s + 2)) & 1:
            step = -8
            pos = 120
        for r in range(8):
            # L ^= f(R, k_2r), then R ^= f(L, k_2r+1): two rounds without a swap.
            x = right
            f = sp[(((x << 5) | ((x >> 27) & 0x1F)) & 0x3F) ^ k[pos]]
            f |= sp[64 + (((x >> 23) & 0x3F) ^ k[pos + 1])]
            f |= sp[128 + (((x >> 19) & 0x3F) ^ k[pos + 2])]
            f |= sp[192 + (((x >> 15) & 0x3F) ^ k[pos + 3])]
            f |= sp[256 + (((x >> 11) & 0x3F) ^ k[pos + 4])]
            f |= sp[320 + (((x >> 7) & 0x3F) ^ k[pos + 5])]
            f |= sp[384 + (((x >> 3) & 0x3F) ^ k[pos + 6])]
            f |= sp[448 + ((((x << 1) | ((x >> 31) & 1)) & 0x3F) ^ k[pos + 7])]
            left ^= f
            pos += step
            x = left
            f = sp[(((x << 5) | ((x >> 27) & 0x1F)) & 0x3F) ^ k[pos]]
            f |= sp[64 + (((x >> 23) & 0x3F) ^ k[pos + 1])]
            f |= sp[128 + (((x >> 19) & 0x3F) ^ k[pos + 2])]
            f |= sp[192 + (((x >> 15) & 0x3F) ^ k[pos + 3])]
            f |= sp[256 + (((x >> 11) & 0x3F) ^ k[pos + 4])]
            f |= sp[320 + (((x >> 7) & 0x3F) ^ k[pos + 5])]
            f |= sp[384 + (((x >> 3) & 0x3F) ^ k[pos + 6])]
            f |= sp[448 + ((((x << 1) | ((x >> 31) & 1)) & 0x3F) ^ k[pos + 7])]
            right ^= f
            pos += step
        x = left  # final swap: the pre-output block is R16 || L16
        left = right
        right = x
    # FP; the shifts are masked to one bit, so the arithmetic shift of a 32-bit port is harmless.
    for i in range(8):
        byte = 0
        for j in range(8):
            p = fp[i * 8 + j] - 1
            if p < 32:
                bit = (left >> (31 - p)) & 1
            else:
                bit = (right >> (63 - p)) & 1
            byte = (byte << 1) | bit
        out[i] = byte


@micropython.viper
def _cbc(ks: ptr8, plan: int, stages: int, state: ptr8, data: ptr8, n: int):
    # state := E(state XOR block) for each whole 8-byte block of data[0:n].
    off = 0
    while off + 8 <= n:
        for i in range(8):
            state[i] ^= data[off + i]
        _crypt(ks, plan, stages, state, state)
        off += 8


# A plan is one nibble per stage: bits 0-1 = key index, bit 2 = decrypt.
_PLAN_E1 = const(0x000)  # single DES
_PLAN_D1 = const(0x004)
_PLAN_E2 = const(0x050)  # two-key EDE: K1 enc, K2 dec, K1 enc
_PLAN_D2 = const(0x414)  # K1 dec, K2 enc, K1 dec
_PLAN_E3 = const(0x250)  # three-key EDE: K1 enc, K2 dec, K3 enc
_PLAN_D3 = const(0x416)  # K3 dec, K2 enc, K1 dec


class DES:
    """Single DES (8-byte key) or triple DES EDE (16-byte two-key or 24-byte three-key).

    Parity bits are ignored. `encrypt_block(src, dst)` and `decrypt_block(src, dst)` take and
    fill 8-byte buffers (dst may be src); without dst they return a new bytes object.
    """

    def __init__(self, key):
        n = len(key)
        if n not in (8, 16, 24):
            raise ValueError("DES key length")
        self._stages = 1 if n == 8 else 3
        self._ks = bytearray(_KS_BYTES * (n // 8))
        mv = memoryview(self._ks)
        for i in range(n // 8):
            _schedule(memoryview(key)[i * 8 : i * 8 + 8], mv[i * _KS_BYTES :])
        if n == 16:
            self._plan_e, self._plan_d = _PLAN_E2, _PLAN_D2
        elif n == 24:
            self._plan_e, self._plan_d = _PLAN_E3, _PLAN_D3
        else:
            self._plan_e, self._plan_d = _PLAN_E1, _PLAN_D1

    def encrypt_block(self, src, dst=None):
        if len(src) != 8:
            raise ValueError("block")
        if dst is None:
            dst = bytearray(8)
        _crypt(self._ks, self._plan_e, self._stages, src, dst)
        return dst

    def decrypt_block(self, src, dst=None):
        if len(src) != 8:
            raise ValueError("block")
        if dst is None:
            dst = bytearray(8)
        _crypt(self._ks, self._plan_d, self._stages, src, dst)
        return dst

    def cbc_update(self, state, data, n=None):
        """CBC-encrypt whole blocks of data into the 8-byte state (a running CBC-MAC)."""
        if n is None:
            n = len(data)
        _cbc(self._ks, self._plan_e, self._stages, state, data, n & ~7)

    def wipe(self):
        ks = self._ks
        for i in range(len(ks)):
            ks[i] = 0


def odd_parity(key):
    """Set the least significant bit of each byte of the bytearray key for odd parity."""
    for i in range(len(key)):
        b = key[i] & 0xFE
        p = b ^ (b >> 4)
        p ^= p >> 2
        p ^= p >> 1
        key[i] = b | (~p & 1)
    return key
