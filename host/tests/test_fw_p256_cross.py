"""Cross-check of the firmware's ECDSA P-256 (firmware/crypto/p256.py, run in the MicroPython unix
port) against `cryptography`: signatures the firmware makes (deterministic and hedged, random keys
and messages) verify with `cryptography`, the firmware's public keys are the ones `cryptography`
derives from the same private keys, and signatures `cryptography` makes verify with the firmware
(and altered ones do not)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = Path(sys.executable).with_name("micropython")

_DRIVER = r"""
import sys, hashlib
from binascii import hexlify, unhexlify
sys.path.insert(0, sys.argv[1] + "/firmware")
from crypto import p256, p256_verify
for line in sys.stdin:
    f = line.split()
    if f[0] == "sign":
        d = int(f[1], 16)
        msg = unhexlify(f[2][1:])  # "m" + hex: an empty message is still a field
        extra = unhexlify(f[3]) if len(f) > 3 else None
        sig = p256.sign(d, hashlib.sha256(msg).digest(), extra)
        print(hexlify(p256.public_key(d)).decode(), hexlify(sig).decode())
    elif f[0] == "verify":
        ok = p256_verify.verify(unhexlify(f[1]), hashlib.sha256(unhexlify(f[2])).digest(), unhexlify(f[3]))
        print(1 if ok else 0)
"""

pytestmark = pytest.mark.skipif(not MICROPYTHON.exists(), reason="MicroPython unix port not found")


def _run(tmp_path: Path, lines: list[str]) -> list[str]:
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=190k", str(driver), str(ROOT)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300, check=True,
    )
    return proc.stdout.split("\n")[: len(lines)]


def _raw(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_firmware_signatures_verify_with_cryptography(tmp_path):
    cases = []
    for i in range(40):
        key = ec.generate_private_key(ec.SECP256R1())
        msg = os.urandom(i * 7 % 300)
        extra = os.urandom(32).hex() if i % 2 else ""
        cases.append((key, msg, f"sign {key.private_numbers().private_value:064x} m{msg.hex()} {extra}"))
    out = _run(tmp_path, [c[2].strip() for c in cases])
    for (key, msg, _), line in zip(cases, out, strict=True):
        pub_hex, sig_hex = line.split()
        want = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        assert bytes.fromhex(pub_hex) == want
        sig = bytes.fromhex(sig_hex)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        key.public_key().verify(encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            key.public_key().verify(encode_dss_signature(r, s), msg + b"!", ec.ECDSA(hashes.SHA256()))


def test_deterministic_signatures_match_cryptography_rfc6979(tmp_path):
    cases = []
    for i in range(10):
        key = ec.generate_private_key(ec.SECP256R1())
        msg = os.urandom(50 + i)
        cases.append((key, msg, f"sign {key.private_numbers().private_value:064x} m{msg.hex()}"))
    out = _run(tmp_path, [c[2] for c in cases])
    for (key, msg, _), line in zip(cases, out, strict=True):
        want = _raw(key.sign(msg, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
        assert bytes.fromhex(line.split()[1]) == want


def test_cryptography_signatures_verify_on_the_firmware(tmp_path):
    lines, expect = [], []
    for i in range(30):
        key = ec.generate_private_key(ec.SECP256R1())
        pub = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        msg = os.urandom(40 + i)
        sig = _raw(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        if i % 3 == 1:
            sig = sig[:40] + bytes([sig[40] ^ 1]) + sig[41:]
        elif i % 3 == 2:
            msg = msg + b"x"
            sig = _raw(key.sign(msg[:-1], ec.ECDSA(hashes.SHA256())))
        lines.append(f"verify {pub.hex()} {msg.hex()} {sig.hex()}")
        expect.append("1" if i % 3 == 0 else "0")
    assert _run(tmp_path, lines) == expect
