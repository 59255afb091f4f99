# crypto/ct.py: equality and wiping, and proof that neither allocates (heap locked).
import micropython
from crypto import ct


def test_eq():
    a = b"\x00\x01\x02\x03" * 8
    if not ct.eq(a, bytes(a)) or not ct.eq(b"", b""):
        raise AssertionError("equal")
    for i in range(len(a)):
        b = bytearray(a)
        b[i] ^= 0x80
        if ct.eq(a, b):
            raise AssertionError("differs at %d" % i)
    if ct.eq(a, a[:-1]) or ct.eq(a[:-1], a):
        raise AssertionError("lengths differ")


def test_eq_and_wipe_do_not_allocate():
    a = bytearray(b"12345678")
    b = bytearray(b"12345679")
    mv = memoryview(b)
    micropython.heap_lock()
    try:
        r1 = ct.eq(a, b)
        r2 = ct.eq(a, a)
        r3 = ct.eq(mv, b)
        ct.wipe(a)
    finally:
        micropython.heap_unlock()
    if r1 or not r2 or not r3:
        raise AssertionError("results")
    if a != bytearray(8):
        raise AssertionError("wipe")
