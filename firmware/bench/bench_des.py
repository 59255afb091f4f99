# Device-side DES figures for `make bench`: run with the MicroPython unix port from firmware/,
#   micropython -X heapsize=190k firmware/bench/bench_des.py
# Prints "des3_block_us N" (one two-key 3DES block, key schedule done once), "des3_key_us N"
# (two-key 3DES key schedule), "arqc_us N" (one Visa CVN 10 cryptogram: retail MAC over the
# 37-byte MAC input, keys scheduled each time as the card does) and "arqc_cvn16_us N" (M/Chip
# CVN 16: MasterCard session key derivation plus the MAC).
import sys

# firmware/ (the parent of this file's folder) on the path, as on a device
_parts = __file__.split("/")
sys.path.insert(0, "/".join(_parts[:-2]) if len(_parts) > 2 else ("." if len(_parts) == 2 else ".."))

from time import ticks_diff, ticks_us  # noqa: E402

from crypto.des import DES  # noqa: E402
from crypto.mac import PAD1, PAD2, mac_alg3  # noqa: E402

_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def _per_call(fn, n):
    fn()
    t0 = ticks_us()
    for _ in range(n):
        fn()
    return ticks_diff(ticks_us(), t0) / n


def run(n=2000):
    c = DES(_KEY)
    blk = bytearray(8)
    print("des3_block_us %.2f" % _per_call(lambda: c.encrypt_block(blk, blk), n))
    print("des3_key_us %.2f" % _per_call(lambda: DES(_KEY), n // 4))
    data = bytearray(37)
    out = bytearray(8)
    print("arqc_us %.2f" % _per_call(lambda: mac_alg3(_KEY, data, PAD1, out), n // 4))
    try:
        from applets.emv_card import session_key
    except ImportError:
        return
    r = bytearray(8)
    sk = bytearray(16)

    def cvn16():
        session_key(_KEY, r, sk)
        mac_alg3(sk, data, PAD2, out)

    print("arqc_cvn16_us %.2f" % _per_call(cvn16, n // 4))


run()
