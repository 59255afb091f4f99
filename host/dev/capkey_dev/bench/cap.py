"""CAP verification throughput (targets.md; issue 11): verifications per second per core for both
profiles, measured in one run and interleaved with pyemv's `generate_ac` for the same inputs (pyemv
is a dependency of capkey-dev: the comparison is never skipped),
and with the bare `cryptography` 3DES-ECB one-block cost (Cipher creation included):

- a code at a new ATC on a card whose key is cached (one ATC candidate; each verification derives
  its own session key, as a real one does);
- a wrong code, which tries every reader family × IAD variant of the profile, and the same with the
  card's reader family remembered;
- a cold key cache: a new card per verification (the card built from its stored fields, its key
  derived from the IMK).

Then the device-side DES figures from firmware/bench/bench_des.py in the MicroPython unix port when
it exists."""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from capkey.emv import hazmat as emv
from capkey.emv.issuer import TEST_IMK, TEST_IMK_LABEL, SoftwareIssuerBackend
from capkey.emv.profiles import MC_CAP_CVN16, VISA_DPA_CVN10, CapProfile
from capkey.emv.verifier import CapCard, InvalidCode, Mode, verify_cap
from capkey_dev.build import ROOT

_ROOT = ROOT
_ROUNDS = 5
_SLICE = 0.15  # seconds per function per round
_PAN = "4761739001010010"
_PSN = 1
_FLOOR = 0x100
_CHALLENGE = "78901234"
#: Codes at consecutive ATCs a warm measurement cycles through, so that no two successive
#: verifications share a session key.
_ATCS = 8
#: Cold cache: cards cycled through, more than the backend's key cache holds (LRU: every one misses).
_POOL = 1024
_COLD_CACHE = 512
#: Issue 11's targets, for MasterCard CVN 16: warm >= 2x and cold >= 1x pyemv's AC rate.
_TARGETS = {MC_CAP_CVN16.name: (" (target >= 2x)", " (target >= 1x)")}


def _rates(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Calls per second of each function, best of _ROUNDS slices; the functions take turns slice
    by slice, so capkey and pyemv see the same machine (CPU frequency, neighbours)."""
    best = dict.fromkeys(fns, 0.0)
    for _ in range(_ROUNDS):
        for name, fn in fns.items():
            n = 0
            start = time.perf_counter()
            while (elapsed := time.perf_counter() - start) < _SLICE:
                for _ in range(50):
                    fn()
                n += 50
            best[name] = max(best[name], n / elapsed)
    return best


def _code(profile: CapProfile, pan: str, atc: int) -> str:
    """The Respond code the card + reader would show (built with hazmat, as the card does)."""
    udk = emv.derive_icc_mk(TEST_IMK, pan, _PSN, profile.derivation)
    data = profile.cdol1_data(un=emv.pack_bcd(_CHALLENGE, 4))
    minimum = data[:29] + profile.aip + atc.to_bytes(2, "big")
    iad = profile.iads_for(3)[0]
    ac = emv.generate_ac(udk, profile.cvn, minimum, iad)
    psn = _PSN if profile.psn_prefix else None
    return str(emv.extract_otp(profile.ipb, emv.otp_data(0x80, atc.to_bytes(2, "big"), ac, iad, psn=psn)))


def _verifications(profile: CapProfile) -> dict[str, Callable[[], object]]:
    backend = SoftwareIssuerBackend.for_tests()
    card = CapCard(profile, _PAN, _PSN, TEST_IMK_LABEL, last_atc=_FLOOR)
    remembered = CapCard(profile, _PAN, _PSN, TEST_IMK_LABEL, last_atc=_FLOOR, reader_family=profile.reader_families[0])
    codes = [_code(profile, _PAN, _FLOOR + i) for i in range(1, _ATCS + 1)]
    for atc, code in enumerate(codes, start=_FLOOR + 1):
        assert verify_cap(card, code, mode=Mode.RESPOND, challenge=_CHALLENGE, key_backend=backend) == atc
    good = itertools.cycle(codes).__next__
    # The lowest AC bit flipped: the constant bits still pass, so every candidate is computed.
    wrong = itertools.cycle([str(int(c) ^ 1) for c in codes]).__next__

    def ok() -> None:
        verify_cap(card, good(), mode=Mode.RESPOND, challenge=_CHALLENGE, key_backend=backend)

    def refused(c: CapCard = card) -> None:
        try:
            verify_cap(c, wrong(), mode=Mode.RESPOND, challenge=_CHALLENGE, key_backend=backend)
        except InvalidCode:
            pass
        else:
            raise AssertionError("a wrong code was accepted")

    cold_backend = SoftwareIssuerBackend({TEST_IMK_LABEL: TEST_IMK}, allow_test_keys=True, cache_size=_COLD_CACHE)
    pans = [f"{4761739000000000 + i:016d}" for i in range(_POOL)]
    pool = itertools.cycle([(pan, _code(profile, pan, _FLOOR + 1)) for pan in pans]).__next__

    def cold() -> None:
        pan, code = pool()
        c = CapCard(profile, pan, _PSN, TEST_IMK_LABEL, last_atc=_FLOOR)  # as a bank builds it from its row
        verify_cap(c, code, mode=Mode.RESPOND, challenge=_CHALLENGE, key_backend=cold_backend)

    return {
        f"{profile.name} ok": ok,
        f"{profile.name} wrong": refused,
        f"{profile.name} wrong remembered": lambda: refused(remembered),
        f"{profile.name} cold": cold,
    }


def _pyemv_cvn():
    """pyemv's cvn module (a dependency of capkey-dev)."""
    return importlib.import_module("pyemv.cvn")


def _pyemv_acs(imk: bytes) -> dict[str, Callable[[], object]]:
    """pyemv's generate_ac for the same inputs (ATC, UN, CVR); the card object (its ICC master
    keys) built once, as capkey's key cache does, and per call for the cold figure."""
    cvn = _pyemv_cvn()
    z = bytes
    args = dict(
        tag_9f02=z(6), tag_9f03=z(6), tag_9f1a=z(2), tag_95=bytes.fromhex("8000000000"), tag_5f2a=z(2),
        tag_9a=bytes.fromhex("010101"), tag_9c=z(1), tag_9f37=bytes.fromhex(_CHALLENGE),
        tag_82=bytes.fromhex("1000"), tag_9f36=bytes.fromhex("0101"),
    )
    out = {}
    for name, cls, cvr in (
        (VISA_DPA_CVN10.name, cvn.VisaCVN10, bytes.fromhex("03A49000")),
        (MC_CAP_CVN16.name, cvn.MasterCardCVN16, bytes.fromhex("A50003020000")),
    ):
        card = cls(imk, imk, imk, _PAN, f"{_PSN:02d}")
        out[f"pyemv {name}"] = lambda card=card, cvr=cvr: card.generate_ac(cvr=cvr, **args)
        out[f"pyemv {name} cold"] = lambda cls=cls, cvr=cvr: cls(imk, imk, imk, _PAN, f"{_PSN:02d}").generate_ac(
            cvr=cvr, **args)
    return out


def _device_figures() -> list[str]:
    mp = Path(sys.executable).with_name("micropython")
    script = _ROOT / "firmware" / "bench" / "bench_des.py"
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


def _us(rate: float) -> str:
    return f"{rate:,.0f}/s ({1e6 / rate:.1f} us)"


def run() -> None:
    key24 = os.urandom(24)
    block = os.urandom(8)

    def bare() -> None:
        Cipher(TripleDES(key24), modes.ECB()).encryptor().update(block)

    fns: dict[str, Callable[[], object]] = {"bare": bare}
    for profile in (VISA_DPA_CVN10, MC_CAP_CVN16):
        fns.update(_verifications(profile))
    with warnings.catch_warnings():
        # pyemv builds TripleDES with 16-byte keys, which cryptography >= 44 warns about on every
        # call; printing the warnings would dominate its figure.
        warnings.simplefilter("ignore")
        fns.update(_pyemv_acs(TEST_IMK))
        r = _rates(fns)

    print(f"bare cryptography 3DES-ECB, one block incl. Cipher creation: {_us(r['bare'])}")
    version = importlib.metadata.version("pyemv")
    for p in (VISA_DPA_CVN10, MC_CAP_CVN16):
        n, py = p.name, r[f"pyemv {p.name}"]
        tries = len(p.reader_families) * len(p.iad_candidates)
        print(f"CAP verify {n}, per core: {_us(r[f'{n} ok'])} = {r['bare'] / r[f'{n} ok']:.1f}x the bare block; "
              f"wrong code ({len(p.reader_families)} reader families x {len(p.iad_candidates)} IADs = {tries} "
              f"cryptograms): {_us(r[f'{n} wrong'])}; family remembered ({len(p.iad_candidates)}): "
              f"{_us(r[f'{n} wrong remembered'])}; cold key cache (new card each): {_us(r[f'{n} cold'])}")
        warm, cold = _TARGETS.get(n, ("", ""))
        print(f"  pyemv {version} generate_ac, same run: {_us(py)}; capkey verification / pyemv AC = "
              f"{r[f'{n} ok'] / py:.2f}x{warm}; cold / pyemv AC = {r[f'{n} cold'] / py:.2f}x{cold}; "
              f"pyemv with a new card object per AC: {_us(r[f'pyemv {n} cold'])}")
    for line in _device_figures():
        print(line)


if __name__ == "__main__":
    run()
