# crypto/sealed.py: round trip, exact layout, and refusal of every altered blob, wrong key or aad.
import hashlib

from crypto import aes, sealed
from crypto.hmac import hkdf_expand, hmac_sha256

KEY = bytes(range(32))
NONCE = bytes(range(100, 116))


def test_round_trip_and_layout():
    for plain in (b"", b"k", bytes(range(32)), b"x" * 200):
        blob = sealed.seal(KEY, plain, NONCE, b"slot0")
        if len(blob) != len(plain) + sealed.OVERHEAD or blob[0] != 1 or blob[1:17] != NONCE:
            raise AssertionError("layout")
        if sealed.unseal(KEY, blob, b"slot0") != plain:
            raise AssertionError("round trip")


def test_layout_matches_the_specification():
    # Recompute the blob from the documented construction with the primitives directly.
    plain = b"private key bytes 0123456789abcd"
    aad = b"capkey-dek-pin"
    k = hkdf_expand(KEY, b"capkey-sealed-v1", 64)
    body = aes.ctr(k[:32], NONCE, plain)
    head = b"\x01" + NONCE
    tag = hmac_sha256(k[32:], bytes((0, len(aad))) + aad + head + body)
    if sealed.seal(KEY, plain, NONCE, aad) != head + body + tag:
        raise AssertionError("blob differs from the documented construction")


def _refused(key, blob, aad):
    try:
        sealed.unseal(key, blob, aad)
    except sealed.SealError:
        return True
    return False


def test_refuses_tampering_wrong_key_and_wrong_aad():
    plain = hashlib.sha256(b"secret").digest()
    blob = sealed.seal(KEY, plain, NONCE, b"slot1")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        if not _refused(KEY, bytes(bad), b"slot1"):
            raise AssertionError("bit flip at %d accepted" % i)
    if not _refused(bytes(32), blob, b"slot1"):
        raise AssertionError("wrong key accepted")
    if not _refused(KEY, blob, b"slot2"):
        raise AssertionError("wrong aad accepted")
    for bad in (b"", blob[:48], blob[:-1], blob + b"\x00"):
        if not _refused(KEY, bad, b"slot1"):
            raise AssertionError("truncated or extended blob accepted")


def test_bad_parameters():
    for args in ((KEY[:16], b"x", NONCE), (KEY, b"x", NONCE[:8])):
        try:
            sealed.seal(*args)
        except ValueError:
            continue
        raise AssertionError("bad parameter accepted")
