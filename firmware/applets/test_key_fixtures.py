# Helpers shared by the certificate key's firmware tests (applets/test_signer.py,
# apps/test_key_app.py): payloads from docs/vectors/payloads.json, a deterministic "board random",
# and certificate-shaped DER. No test functions here (a test_ name keeps it off the device).
import hashlib
import json
from binascii import unhexlify

_VALID = []  # (name, bytes) of docs/vectors/payloads.json's valid payloads, loaded once
_ONE = {}  # name -> bytes of the payloads payload() read on its own


def _valid_hex():
    # (name, hex) of the valid payloads, in file order. The file is indented JSON (one key per
    # line); reading it line by line keeps the heap free for the signer (json.load of the whole
    # file needs far more than the 190 KB test heap holds next to the signer's modules).
    name = None
    with open("docs/vectors/payloads.json") as f:
        for line in f:
            line = line.strip()
            if line.startswith('"invalid"'):
                return
            if line.startswith('"name"') or line.startswith('"hex"'):
                kv = json.loads("{" + line.rstrip(",") + "}")
                if "name" in kv:
                    name = kv["name"]
                else:
                    yield name, kv["hex"]


def valid():
    if not _VALID:
        _VALID.extend((n, unhexlify(h)) for n, h in _valid_hex())
    if len(_VALID) < 10:
        raise AssertionError("payload vectors not found")
    return _VALID


def payload(name="payment"):
    # One payload by name; reads the file only up to it (the long BATCH lines come last).
    for n, raw in _VALID:
        if n == name:
            return raw
    if name not in _ONE:
        vectors = _valid_hex()
        for n, h in vectors:
            if n == name:
                _ONE[name] = unhexlify(h)
                break
        vectors.close()  # closes the file: MicroPython does not when a generator is dropped
    if name not in _ONE:
        raise AssertionError("no vector " + name)
    return _ONE[name]


def det_random(seed=b"t"):
    state = [0]

    def random(n):
        out = b""
        while len(out) < n:
            state[0] += 1
            out += hashlib.sha256(seed + state[0].to_bytes(4, "big")).digest()
        return out[:n]

    return random


def der(tag, body):
    n = len(body)
    if n < 128:
        return bytes((tag, n)) + body
    if n < 256:
        return bytes((tag, 0x81, n)) + body
    return bytes((tag, 0x82, n >> 8, n & 0xFF)) + body


def name(cn):
    atv = der(0x30, der(0x06, b"\x55\x04\x03") + der(0x0C, cn.encode()))
    o = der(0x30, der(0x06, b"\x55\x04\x0a") + der(0x0C, b"Banque"))
    return der(0x30, der(0x31, o) + der(0x31, atv))


def cert(pub, cn="Alice Martin"):
    # The shape of an X.509 v3 certificate, enough for the applet's checks and subject parsing.
    alg = der(0x30, der(0x06, b"\x2a\x86\x48\xce\x3d\x04\x03\x02"))
    spki = der(0x30, der(0x30, der(0x06, b"\x2a\x86\x48\xce\x3d\x02\x01")) + der(0x03, b"\x00" + pub))
    validity = der(0x30, der(0x17, b"260101000000Z") + der(0x17, b"270101000000Z"))
    tbs = der(
        0x30,
        der(0xA0, der(0x02, b"\x02")) + der(0x02, b"\x01\x23") + alg + name("Banque CA")
        + validity + name(cn) + spki,
    )
    return der(0x30, tbs + alg + der(0x03, b"\x00" + bytes(70)))


