"""CAP verification throughput (targets.md): verifications per second per core for both profiles
(one ATC candidate), against the bare `cryptography` 3DES-ECB one-block cost (Cipher creation
included) and, when pyemv is importable (not a dependency), pyemv's `generate_ac`, all measured in
the same run; then the device-side DES figures from firmware/crypto/bench_des.py in the MicroPython
unix port when it exists."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from capkey.emv import hazmat as emv
from capkey.emv.issuer import TEST_IMK, TEST_IMK_LABEL, SoftwareIssuerBackend
from capkey.emv.profiles import MC_CAP_CVN16, VISA_DPA_CVN10
from capkey.emv.verifier import CapCard, InvalidCode, Mode, verify_cap
from capkey_dev.build import ROOT

_ROOT = ROOT
_DURATION = 1.0
_PAN = "4761739001010010"
_PSN = 1


def _rate(fn, duration: float = _DURATION) -> float:
    """Calls per second of `fn`, best of three runs of about `duration` / 3 seconds each."""
    best = 0.0
    batch = 100
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < duration / 3:
            for _ in range(batch):
                fn()
            n += batch
        best = max(best, n / elapsed)
    return best


def _code(profile, udk: bytes, atc: int, challenge: str) -> str:
    """The code the card + reader would show (built with hazmat, as the card does)."""
    un = emv.pack_bcd(challenge, 4)
    data = profile.cdol1_data(un=un)
    minimum = data[:29] + profile.aip + atc.to_bytes(2, "big")
    iad = profile.iads_for(3)[0]
    ac = emv.generate_ac(udk, profile.cvn, minimum, iad)
    psn = _PSN if profile.psn_prefix else None
    return str(emv.extract_otp(profile.ipb, emv.otp_data(0x80, atc.to_bytes(2, "big"), ac, iad, psn=psn)))


def _pyemv_rates(imk: bytes) -> dict[str, float] | None:
    """pyemv's generate_ac for the same inputs (ATC, UN, CVR), if pyemv is importable."""
    import warnings

    with warnings.catch_warnings():
        # pyemv builds TripleDES with 16-byte keys, which cryptography >= 44 warns about on every
        # call; printing the warnings would dominate the figure.
        warnings.simplefilter("ignore")
        try:
            from pyemv import cvn  # type: ignore[import-not-found]
        except ImportError:
            return None
        z = bytes
        args = dict(
            tag_9f02=z(6), tag_9f03=z(6), tag_9f1a=z(2), tag_95=bytes.fromhex("8000000000"), tag_5f2a=z(2),
            tag_9a=bytes.fromhex("010101"), tag_9c=z(1), tag_9f37=bytes.fromhex("78901234"),
            tag_82=bytes.fromhex("1000"), tag_9f36=bytes.fromhex("0101"),
        )
        visa = cvn.VisaCVN10(imk, imk, imk, _PAN, f"{_PSN:02d}")
        mc = cvn.MasterCardCVN16(imk, imk, imk, _PAN, f"{_PSN:02d}")
        return {
            "visa": _rate(lambda: visa.generate_ac(cvr=bytes.fromhex("03A49000"), **args)),
            "mc": _rate(lambda: mc.generate_ac(cvr=bytes.fromhex("A50003020000"), **args)),
        }


def _device_figures() -> list[str]:
    mp = Path(sys.executable).with_name("micropython")
    script = _ROOT / "firmware" / "crypto" / "bench_des.py"
    if not mp.exists() or not script.exists():
        return [f"device: skipped ({'no micropython' if not mp.exists() else 'no bench_des.py'})"]
    try:
        out = subprocess.run(
            [str(mp), "-X", "heapsize=190k", str(script)], capture_output=True, text=True, timeout=120, cwd=_ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"device: failed ({exc})"]
    if out.returncode:
        return [f"device: bench_des.py failed: {out.stderr.strip().splitlines()[-1:]}"]
    return ["device (MicroPython unix port, x86): " + ", ".join(out.stdout.split("\n")).strip(", ")]


def run() -> None:
    backend = SoftwareIssuerBackend.for_tests()
    key24 = os.urandom(24)
    block = os.urandom(8)

    def bare():
        Cipher(TripleDES(key24), modes.ECB()).encryptor().update(block)

    bare_rate = _rate(bare)
    rows = []
    for profile in (VISA_DPA_CVN10, MC_CAP_CVN16):
        card = CapCard(profile, _PAN, _PSN, TEST_IMK_LABEL, last_atc=0x100)
        udk = emv.derive_icc_mk(TEST_IMK, _PAN, _PSN, profile.derivation)
        code = _code(profile, udk, 0x101, "78901234")
        assert verify_cap(card, code, mode=Mode.RESPOND, challenge="78901234", key_backend=backend) == 0x101

        def ok(card=card, code=code):
            verify_cap(card, code, mode=Mode.RESPOND, challenge="78901234", key_backend=backend)

        bad_code = str(int(code) ^ 1)

        def bad(card=card, code=bad_code):
            try:
                verify_cap(card, code, mode=Mode.RESPOND, challenge="78901234", key_backend=backend)
            except InvalidCode:
                pass

        rows.append((profile.name, _rate(ok), _rate(bad)))
    pyemv = _pyemv_rates(TEST_IMK)

    print(f"bare cryptography 3DES-ECB, one block incl. Cipher creation: {1e6 / bare_rate:6.2f} us "
          f"({bare_rate:,.0f}/s)")
    for name, ok_rate, bad_rate in rows:
        line = (f"CAP verify {name}: {ok_rate:,.0f}/s per core ({1e6 / ok_rate:.1f} us) = "
                f"{1e6 / ok_rate / (1e6 / bare_rate):.1f}x the bare 3DES block; "
                f"wrong code (all CVR candidates): {bad_rate:,.0f}/s")
        print(line)
    if pyemv is None:
        print("pyemv: not importable, comparison skipped (pip install pyemv in another venv to see it)")
    else:
        for (name, ok_rate, _), key in zip(rows, ("visa", "mc"), strict=True):
            print(f"pyemv 1.5 generate_ac ({name.split('-')[0]}): {pyemv[key]:,.0f}/s "
                  f"({1e6 / pyemv[key]:.1f} us); capkey full verification / pyemv AC = {ok_rate / pyemv[key]:.2f}x "
                  f"(target >= 2x)")
    for line in _device_figures():
        print(line)
