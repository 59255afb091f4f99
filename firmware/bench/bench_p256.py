# Device-side benchmark of the certificate key's crypto, run by the interpreter it ships to:
#
#   .venv/bin/micropython -X heapsize=190k firmware/bench/bench_p256.py     (simulator)
#   mpremote run firmware/bench/bench_p256.py                                (a real board)
#
# Prints one "name value" line per figure (capkey_dev.bench collects them):
#   p256_sign_ms          median time of a complete ECDSA sign (RFC 6979 nonce, comb, inverses)
#   p256_naive_mul_ms     median time of one textbook double-and-add k*G, same interpreter, same run
#   p256_ratio            naive_mul / sign (target >= 4)
#   p256_comb_mul_ms      the comb's k*G alone, for reference
#   p256_import_bytes     heap taken by importing p256 (code and comb table; 0 for the table when
#                         frozen into flash)
#   p256_sign_heap_bytes  heap a sign needs beyond that: the smallest free heap it still succeeds in
#                         (measured by filling the rest of the heap with ballast)
#   p256_peak_heap_bytes  import + sign, the figure compared with the 96 KB target
#   kdf_iterations        PBKDF2-HMAC-SHA256 iterations the signer uses for PIN keys
#   kdf_ms                time of one PIN key derivation with that count
#   signer_sign_ms        a whole SIGN APDU of the signing applet: parse a BATCH payload, PIN check
#                         (pre-decrement save, PBKDF2, unseal DEK, restore save), unseal the key, sign
#   signer_sign_heap_bytes  smallest free heap in which that SIGN APDU succeeds (RAM store)
# Runs alternate between sign and naive so that machine noise hits both alike.
import gc
import sys
import time

if __name__ == "__main__" and "/" in sys.argv[0]:  # from the repository: make `crypto` importable
    sys.path.insert(0, sys.argv[0].rsplit("/", 2)[0])

gc.collect()
_a0 = gc.mem_alloc()
from crypto import p256  # noqa: E402

gc.collect()
IMPORT_BYTES = gc.mem_alloc() - _a0

from crypto import hmac, p256_verify  # noqa: E402

_D = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
_K = 0xA6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def _us(fn, *args):
    t = time.ticks_us()
    fn(*args)
    return time.ticks_diff(time.ticks_us(), t)


def timings(rounds=15):
    import hashlib

    sign = []
    naive = []
    comb = []
    for i in range(rounds):
        h = hashlib.sha256(bytes((i,))).digest()
        sign.append(_us(p256.sign, _D, h))
        naive.append(_us(p256_verify.naive_mul, _K ^ i))
        comb.append(_us(p256._comb, _K ^ i))
    return _median(sign), _median(naive), _median(comb)


def fill_heap(budget):
    # Allocates ballast until at most `budget` bytes of heap remain free; returns the ballast.
    gc.collect()
    ballast = [None] * 1024
    i = 0
    cap = 1008
    while i < 1024:
        extra = gc.mem_free() - budget
        if extra <= 32:
            break
        try:
            ballast[i] = bytearray(min(cap, extra - 32))
            i += 1
        except MemoryError:
            if cap <= 16:
                break
            cap >>= 1
    return ballast


def _fits(budget, fn):
    ballast = fill_heap(budget)
    try:
        fn()
        ok = True
    except MemoryError:
        ok = False
    del ballast
    gc.collect()
    return ok


def smallest_heap(fn, hi=32768):
    # Smallest free heap (to 64 bytes) in which fn() succeeds.
    lo = 0
    if not _fits(hi, fn):
        return -1
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if _fits(mid, fn):
            hi = mid
        else:
            lo = mid
    return hi


def sign_heap():
    h = bytes(range(32))
    return smallest_heap(lambda: p256.sign(_D, h))


class _RamStore:
    def __init__(self):
        self.d = {}

    def load(self, name):
        return self.d.get(name)

    def save(self, name, data):
        self.d[name] = bytes(data)

    def delete(self, name):
        self.d.pop(name, None)


def signer_figures():
    # (ms, heap) of one SIGN APDU of the applet with the largest payload (a 24-payee BATCH).
    import os

    from applets import signer as sg

    s = sg.Signer(_RamStore(), os.urandom, "be4c0001", "bench")
    s.provision()
    pin = b"123456"
    s.process(sg.apdu(sg.INS_SETUP, 0, sg.lv(pin) + b"87654321"))
    att = s.process(sg.apdu(sg.INS_GENERATE, 0, sg.lv(pin)))
    pub = att[-131:-66]
    r = s.process(sg.apdu(sg.INS_PUT_CERT, 0, b"\x30\x43\x00\x00" + pub))
    if r[-2:] != b"\x90\x00":
        raise RuntimeError("PUT CERT failed")
    payload = _batch()
    cmd = sg.apdu(sg.INS_SIGN, 0, sg.lv(pin) + payload)

    def once():
        r = s.process(cmd)
        if r[-2:] != b"\x90\x00":
            raise RuntimeError("SIGN failed: %s" % r[-2:])

    once()
    times = []
    for _ in range(5):
        times.append(_us(once))
    return _median(times) / 1000, smallest_heap(once, 65536)


def _batch():
    # version 1, BATCH, challenge, total, EUR, count 24, 24 distinct IBANs (MT.., check digits
    # computed), ascending: the largest payload (888 bytes).
    out = bytearray(b"\x01\x03" + bytes(32) + (100).to_bytes(8, "big") + b"EUR")
    out += (24).to_bytes(2, "big") + b"\x18"
    ibans = []
    for i in range(24):
        bban = "0" * 28 + "%02d" % i
        # ISO 13616 check digits for country MT: 98 - (bban + "MT00" as digits) mod 97
        num = int(bban + "2229" + "00")
        ibans.append("MT%02d" % (98 - num % 97) + bban)
    for iban in sorted(ibans):
        out += bytes((len(iban),)) + iban.encode()
    return bytes(out)


def kdf_ms(iterations):
    t = time.ticks_ms()
    hmac.pbkdf2_sha256(b"12345678", bytes(32), iterations, 32)
    return time.ticks_diff(time.ticks_ms(), t)


def main():
    s, n, c = timings()
    print("p256_sign_ms", s / 1000)
    print("p256_naive_mul_ms", n / 1000)
    print("p256_ratio", round(n / s, 2))
    print("p256_comb_mul_ms", c / 1000)
    work = sign_heap()
    print("p256_import_bytes", IMPORT_BYTES)
    print("p256_sign_heap_bytes", work)
    print("p256_peak_heap_bytes", IMPORT_BYTES + work)
    try:
        from applets.signer import KDF_ITERATIONS
    except ImportError:
        KDF_ITERATIONS = 0
    if KDF_ITERATIONS:
        print("kdf_iterations", KDF_ITERATIONS)
        print("kdf_ms", kdf_ms(KDF_ITERATIONS))
        ms, heap = signer_figures()
        print("signer_sign_ms", ms)
        print("signer_sign_heap_bytes", heap)


if __name__ == "__main__":  # test_p256.py imports fill_heap
    main()
