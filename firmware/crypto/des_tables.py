# The FIPS 46-3 tables and the round function's SP table built from them, for crypto/des.py.
#
# des.py loads this module while it is imported and keeps only the bytes it needs: a module's
# constants (the tuples written below) live as long as any of its functions does, so tables
# defined in des.py itself would hold their source tuples in RAM for good next to the bytes.

# 1-based bit numbers, as in the standard
IP = bytes((
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
))
P = bytes((
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
))
PC1 = bytes((
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
))
PC2 = bytes((
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10,
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
))
SHIFTS = bytes((1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1))
# S1..S8, each 4 rows of 16 columns, one hex digit per entry.
S = (
    b"e4d12fb83a6c5907" b"0f74e2d1a6cb9538" b"41e8d62bfc973a50" b"fc8249175b3ea06d"
    b"f18e6b34972dc05a" b"3d47f28ec01a69b5" b"0e7ba4d158c6932f" b"d8a13f42b67c05e9"
    b"a09e63f51dc7b428" b"d709346a285ecbf1" b"d6498f30b12c5ae7" b"1ad069874fe3b52c"
    b"7de3069a1285bc4f" b"d8b56f03472c1ae9" b"a690cb7df13e5284" b"3f06a1d8945bc72e"
    b"2c417ab6853fd0e9" b"eb2c47d150fa3986" b"421bad78f9c5630e" b"b8c71e2d6f09a453"
    b"c1af92680d34e75b" b"af427c9561de0b38" b"9ef528c3704a1db6" b"432c95fabe17608d"
    b"4b2ef08d3c975a61" b"d0b7491ae35c2f86" b"14bdc37eaf680592" b"6bd814a7950fe23c"
    b"d2846fb1a93e50c7" b"1fd8a374c56b0e92" b"7b419ce206adf358" b"21e74a8dfc90356b"
)


def inverse(perm):
    inv = bytearray(len(perm) + 1)
    for j in range(len(perm)):
        inv[perm[j]] = j + 1
    return inv


def build_sp():
    # SP[i*64 + x] = P(S_i(x) placed at bits 4i+1..4i+4), a 32-bit little-endian word.
    pinv = inverse(P)
    sp = bytearray(2048)
    for i in range(8):
        for x in range(64):
            row = ((x >> 4) & 2) | (x & 1)
            c = S[i * 64 + row * 16 + ((x >> 1) & 15)]
            v = c - 48 if c < 58 else c - 87
            for k in range(4):
                if v & (8 >> k):
                    j = pinv[4 * i + k + 1]  # output bit number 1..32
                    b = 32 - j  # integer bit, 0 = least significant
                    sp[(i * 64 + x) * 4 + (b >> 3)] |= 1 << (b & 7)
    return sp


def final_permutation():
    return bytes(inverse(IP)[1:])
