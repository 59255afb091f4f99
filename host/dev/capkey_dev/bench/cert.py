"""Certificate-key signatures: host verifications per second with every certificate check
(chain, validity, key usage, policy, revocation, registration, payload match) against the bare
`cryptography` ECDSA P-256 verify in the same run (target >= 0.8x), and the device's sign time
from firmware/bench/bench_p256.py in the MicroPython unix port when that script exists."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from capkey.cert import payload as P
from capkey.cert.attestation import Attestation
from capkey.cert.ca import CertificateAuthority
from capkey.cert.verifier import ExpectedPayload, certificate_fingerprint, verify_signature
from capkey_dev.build import ROOT

_ROOT = ROOT


def _rate(fn, duration: float) -> float:
    """Calls per second of `fn` over about `duration` seconds."""
    batch = 50
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < duration:
        for _ in range(batch):
            fn()
        n += batch
    return n / elapsed


def _best_rates(fns, rounds: int = 6, duration: float = 0.25) -> list[float]:
    """Best rate of each function over `rounds` alternating runs, so machine noise (±30% here)
    hits all of them alike and the ratio is taken between their best runs."""
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = max(best[i], _rate(fn, duration))
    return best


def _raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _setup(folder: Path):
    now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create(
        folder / "ca", name="Bench Bank", encryption=serialization.NoEncryption(), now=now
    )
    attestation_key = ec.generate_private_key(ec.SECP256R1())
    serial = "be4c0001"
    ca.provision_device(
        serial,
        attestation_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
        now=now,
    )
    key = ec.generate_private_key(ec.SECP256R1())
    statement = Attestation.build_statement(
        slot=0, serial=serial, firmware="bench", public_key=key.public_key()
    )
    cert = ca.issue_certificate(
        key.public_key(), statement + _raw(attestation_key, statement), "123456789", "01", now=now
    )
    fields = P.PaymentPayload(
        bytes(range(32)), 125000, "EUR", "FR7630006000011234567890189", "ACME SARL"
    )
    payload = bytes(fields.to_bytes())
    return dict(
        payload=payload,
        signature=_raw(key, payload),
        certificate=cert.public_bytes(serialization.Encoding.DER),
        expected=ExpectedPayload(fields, now + dt.timedelta(seconds=300)),
        trust=ca.trust_config(),
        revocation=ca.revocation(),
        registered_fingerprints={certificate_fingerprint(cert)},
        now=now + dt.timedelta(seconds=1),
    ), key


def _device_sign_time() -> str:
    script = _ROOT / "firmware/bench/bench_p256.py"
    micropython = Path(sys.executable).with_name("micropython")
    if not script.exists():
        return "device sign: firmware/bench/bench_p256.py not present (not measured)"
    if not micropython.exists():
        return f"device sign: {micropython} not found (not measured)"
    try:
        proc = subprocess.run(
            [str(micropython), "-X", "heapsize=190k", str(script)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=_ROOT / "firmware",
        )
    except subprocess.TimeoutExpired:
        return "device sign: bench_p256.py timed out"
    out = (proc.stdout + proc.stderr).strip()
    return "device sign (MicroPython unix port, bench_p256.py):\n" + "\n".join(
        "  " + line for line in out.splitlines()
    )


def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args, key = _setup(Path(tmp))
    public_key = key.public_key()
    der_signature = key.sign(args["payload"], ec.ECDSA(hashes.SHA256()))
    payload = args["payload"]
    algorithm = ec.ECDSA(hashes.SHA256())

    def bare() -> None:
        public_key.verify(der_signature, payload, algorithm)

    def full() -> None:
        verify_signature(**args)

    full()  # warm the per-certificate cache (chain and CRL look-ups), as a server would be
    bare_rate, full_rate = _best_rates([bare, full])
    ratio = full_rate / bare_rate
    print(
        f"bare cryptography ECDSA P-256 verify   {bare_rate:10.0f} /s  ({1e6 / bare_rate:6.1f} µs)"
    )
    print(
        f"verify_signature, all checks           {full_rate:10.0f} /s  ({1e6 / full_rate:6.1f} µs)"
    )
    print(f"ratio                                  {ratio:10.2f}     (target >= 0.80)")
    print(_device_sign_time(), flush=True)


if __name__ == "__main__":
    run()
