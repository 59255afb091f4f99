# DES and triple DES (FIPS 46-3, NIST SP 800-67), written from the standard's tables.
#
# The round function is table driven: the eight S-boxes are merged with the P permutation into eight
# 64-entry "SP" tables of 32-bit words, built once at import from the standard's S and P tables
# (crypto/des_tables.py). The hot loops (initial/final permutation, 16 rounds, key schedule, CBC)
# are @micropython.viper functions: machine-word integers, so no long integers and no heap
# allocation per block on 32-bit ports. Every right shift is masked before it is combined, so the
# result is the same whether the word is signed 32-bit (bit 31 set: arithmetic shift, on the boards)
# or wider (the 64-bit unix port), and every value that can exceed 32 bits on a 64-bit port is only
# ever read through a mask.
#
# Viper needs a native-code target: mpy-cross must be given -march (armv6m, armv7emsp, xtensawin,
# x64); the unix port runs it directly.
#
# Bit numbering follows the standard: bit 1 is the most significant bit of byte 0.
import micropython
import ondemand
from micropython import const

# Viper code: reloading it on every use would leak (firmware/ondemand.py), so it stays loaded.
ONDEMAND_RESIDENT = True

_ROUND_BYTES = const(8)  # one subkey = 8 six-bit chunks, one per S-box
_KS_BYTES = const(16 * _ROUND_BYTES)  # 16 rounds

# The standard's tables, loaded for this import only (crypto/des_tables.py says why).
with ondemand.use("crypto.des_tables") as _t:
    _IP, _PC1, _PC2, _SHIFTS = _t.IP, _t.PC1, _t.PC2, _t.SHIFTS
    _SP = _t.build_sp()  # heap allocated, so word aligned for ptr32 on every port
    _FP = _t.final_permutation()
del _t


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
        for r in range(16):
            # L, R = R, L ^ f(R, k_r)
            x = right
            f = sp[(((x << 5) | ((x >> 27) & 0x1F)) & 0x3F) ^ k[pos]]
            f |= sp[64 + (((x >> 23) & 0x3F) ^ k[pos + 1])]
            f |= sp[128 + (((x >> 19) & 0x3F) ^ k[pos + 2])]
            f |= sp[192 + (((x >> 15) & 0x3F) ^ k[pos + 3])]
            f |= sp[256 + (((x >> 11) & 0x3F) ^ k[pos + 4])]
            f |= sp[320 + (((x >> 7) & 0x3F) ^ k[pos + 5])]
            f |= sp[384 + (((x >> 3) & 0x3F) ^ k[pos + 6])]
            f |= sp[448 + ((((x << 1) | ((x >> 31) & 1)) & 0x3F) ^ k[pos + 7])]
            right = left ^ f
            left = x
            pos += step
        x = left  # the pre-output block is R16 || L16: undo the last round's swap
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
