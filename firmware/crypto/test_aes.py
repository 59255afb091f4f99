# Known-answer tests for crypto/aes.py: NIST SP 800-38A F.5.1 (CTR-AES128) and F.5.5 (CTR-AES256).
from binascii import unhexlify

from crypto import aes

CTR0 = unhexlify("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
PLAIN = unhexlify(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
K128 = unhexlify("2b7e151628aed2a6abf7158809cf4f3c")
C128 = unhexlify(
    "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
    "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee"
)
K256 = unhexlify("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
C256 = unhexlify(
    "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
    "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
)


def test_sp800_38a_f51_ctr_aes128():
    if aes.ctr(K128, CTR0, PLAIN) != C128:
        raise AssertionError("F.5.1 encrypt")
    if aes.ctr(K128, CTR0, C128) != PLAIN:
        raise AssertionError("F.5.2 decrypt")


def test_sp800_38a_f55_ctr_aes256():
    if aes.ctr(K256, CTR0, PLAIN) != C256:
        raise AssertionError("F.5.5 encrypt")
    if aes.ctr(K256, CTR0, C256) != PLAIN:
        raise AssertionError("F.5.6 decrypt")


def test_partial_blocks_and_leading_zeros():
    # any length is a prefix of the full keystream, leading zero bytes survive
    for n in (0, 1, 15, 16, 17, 33, 63):
        if aes.ctr(K128, CTR0, PLAIN[:n]) != C128[:n]:
            raise AssertionError("length %d" % n)
    zeros = bytes(40)
    if aes.ctr(K128, CTR0, aes.ctr(K128, CTR0, zeros)) != zeros:
        raise AssertionError("zeros round trip")


def test_counter_wraps_at_128_bits():
    # counter ff..ff is followed by 00..00 (SP 800-38A B.1 incrementing function)
    top = b"\xff" * 16
    two = aes.ctr(K128, top, bytes(32))
    if two[16:] != aes.ctr(K128, bytes(16), bytes(16)):
        raise AssertionError("wrap")


def test_rejects_bad_sizes():
    for key, ctr in ((K128[:15], CTR0), (K128 + b"\x00", CTR0), (K128, CTR0[:15])):
        try:
            aes.ctr(key, ctr, b"x")
        except ValueError:
            continue
        raise AssertionError("bad size accepted")
