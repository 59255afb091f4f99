# Known-answer tests for crypto/hmac.py: RFC 4231 (HMAC-SHA256), RFC 5869 appendix A.1-A.3
# (HKDF-SHA256) and RFC 7914 section 11 (PBKDF2-HMAC-SHA256).
from binascii import unhexlify

from crypto import hmac

RFC4231 = (
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data. "
     b"The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_rfc4231_hmac_sha256():
    for key, msg, want in RFC4231:
        if hmac.hmac_sha256(key, msg) != unhexlify(want):
            raise AssertionError("RFC 4231 %s" % want[:8])
        # the same MAC when the message arrives in parts, and through a prepared key
        if hmac.hmac_sha256(key, msg[:7], b"", msg[7:]) != unhexlify(want):
            raise AssertionError("parts")
        if hmac.HmacKey(key).mac(msg) != unhexlify(want):
            raise AssertionError("HmacKey")


def test_rfc4231_case5_truncation():
    mac = hmac.hmac_sha256(b"\x0c" * 20, b"Test With Truncation")
    if mac[:16] != unhexlify("a3b6167473100ee06e0c796c2955552b"):
        raise AssertionError("RFC 4231 case 5")


def test_64_byte_key_is_not_hashed():
    # a key of exactly one block is used as is; one byte more is hashed first
    k64 = bytes(range(64))
    if hmac.hmac_sha256(k64, b"x") == hmac.hmac_sha256(bytes(range(65))[:64] + b"\x40", b"x"):
        raise AssertionError("64 and 65 byte keys collide")


def test_rfc5869_hkdf_sha256():
    cases = (
        (b"\x0b" * 22, bytes(range(13)), bytes(range(0xF0, 0xFA)), 42,
         "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
         "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
        (bytes(range(0x50)), bytes(range(0x60, 0xB0)), bytes(range(0xB0, 0x100)), 82,
         "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
         "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c6"
         "5e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"),
        (b"\x0b" * 22, b"", b"", 42,
         "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
         "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
    )
    for ikm, salt, info, n, prk, okm in cases:
        if hmac.hkdf_extract(salt, ikm) != unhexlify(prk):
            raise AssertionError("HKDF PRK %s" % prk[:8])
        if hmac.hkdf(ikm, salt, info, n) != unhexlify(okm):
            raise AssertionError("HKDF OKM %s" % okm[:8])
    try:
        hmac.hkdf_expand(bytes(32), b"", 255 * 32 + 1)
    except ValueError:
        pass
    else:
        raise AssertionError("HKDF length limit")


def test_rfc7914_pbkdf2_sha256():
    got = hmac.pbkdf2_sha256(b"passwd", b"salt", 1, 64)
    want = ("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
            "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
    if got != unhexlify(want):
        raise AssertionError("PBKDF2 c=1")
    got = hmac.pbkdf2_sha256(b"Password", b"NaCl", 80000, 64)
    want = ("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
            "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d")
    if got != unhexlify(want):
        raise AssertionError("PBKDF2 c=80000")
    for bad in ((b"p", b"s", 0, 32), (b"p", b"s", 1, 0)):
        try:
            hmac.pbkdf2_sha256(*bad)
        except ValueError:
            continue
        raise AssertionError("PBKDF2 parameters accepted")
