"""Writes docs/vectors/cap_reader_families.json: CAP codes made by each reader family on each
capkey card profile, for each card-reported CVR variant (docs/cap.md §2.4, §7).

Computed independently of the code under test: the card keys and cryptograms come from pyemv
(`pip install pyemv`; EMV Option A, `VisaCVN10`, `MasterCardCVN16`), the constants from the brief
(cap.md §1.3: reader constants per family; docs/cap.md §2: IAD, IAF, IPB per profile) and the
IPB extraction is the few lines below. Nothing is imported from capkey.

    .venv/bin/python host/tests/gen_reader_family_vectors.py   # rewrites the JSON

host/tests/test_cap_reader_families.py reads the file: the verifier must accept every code once,
report its family, and the catalogue must hold the same families and CVR variants.
"""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path

from pyemv import cvn as pyemv_cvn  # type: ignore[import-not-found]

OUT = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "cap_reader_families.json"
IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # the EMV book test key (KCV 08D7)
PIN_TRY_LIMIT = 3
SIGN = ("40960189", 125000)  # challenge, amount in minor units

# Reader families (brief cap.md §1.3): the CDOL1 constants each sets; the rest are the profile's.
FAMILIES = {
    "mastercard-cap": {"9A": "000000"},
    "visa-dpa": {"9A": "010101"},
    "be-payment-aid": {"95": "8000000800", "9A": "000000", "9F35": "37", "9F34": "000000"},
}
# Every capkey reader fills these; 9F02 (amount) and 9F37 (UN) come from the mode.
BASE = {"9F03": "000000000000", "9F1A": "0000", "95": "8000000000", "5F2A": "0000", "9C": "00"}

PROFILES = [
    {
        "profile": "visa-dpa-cvn10",
        "pan": "4761739001010010",
        "psn": 1,
        "cvn": pyemv_cvn.VisaCVN10,
        "own_date": "010101",
        "families": ["visa-dpa", "mastercard-cap", "be-payment-aid"],
        "aip": "1000",
        "iaf": 0xA0,  # no PSN prefix
        "ipb": "8000FF000000000001FFFF00000000000000",
        # IAD 06 01 0A | CVR 03 A4 b3 00: b3 90 / 10 (CAP-only card, after / at its first ARQC),
        # 80 / 00 (a card also used for payments: after a CAP session / a completed payment; the
        # French Visa DPA and NatWest traces show 80, the Belgian Visa trace 00).
        "iads": ["06010A03A49000", "06010A03A41000", "06010A03A48000", "06010A03A40000"],
    },
    {
        "profile": "mc-cap-cvn16",
        "pan": "5413330089020011",
        "psn": 3,
        "cvn": pyemv_cvn.MasterCardCVN16,
        "own_date": "000000",
        "families": ["mastercard-cap", "visa-dpa", "be-payment-aid"],
        "aip": "1000",
        "iaf": 0xC0,  # PSN prefixed to the data the IPB masks
        "ipb": "0700007FFFFF000000000000" + "00" * 18,
        # KDI 00 | CVN 10 | CVR A5 00 0n b4 00 00 (n = PIN try limit) | DAC | counters; b4 02
        # domestic or 04 international (Rabobank, PT eID traces), | 80 last online not completed.
        "iads": [
            f"0010A5000{PIN_TRY_LIMIT:X}{b4}0000" "0000" "00000000000000FF" for b4 in ("02", "82", "04", "84")
        ],
    },
]


def extract(ipb: bytes, data: bytes) -> int:
    """The bits of `data` the IPB selects, MSB first, as an integer (brief cap.md §3.2)."""
    value = 0
    for i in range(8 * len(ipb)):
        if ipb[i // 8] >> (7 - i % 8) & 1:
            value = value << 1 | data[i // 8] >> (7 - i % 8) & 1
    return value


def session(p: dict, card, family: str, iad: str, atc: int, challenge: str | None, amount: int) -> dict:
    constants = {**BASE, "9A": p["own_date"], **FAMILIES[family]}
    un = bytes.fromhex((challenge or "0").zfill(8))
    atc_b = atc.to_bytes(2, "big")
    iad_b = bytes.fromhex(iad)
    # VIS CVN 10 MACs the CVR with its length byte (IAD bytes 3-6); M/Chip CVN 16 the 6-byte CVR.
    cvr = iad_b[3:7] if p["cvn"] is pyemv_cvn.VisaCVN10 else iad_b[2:8]
    ac = card.generate_ac(
        tag_9f02=bytes.fromhex(f"{amount:012d}"), tag_9f03=bytes.fromhex(constants["9F03"]),
        tag_9f1a=bytes.fromhex(constants["9F1A"]), tag_95=bytes.fromhex(constants["95"]),
        tag_5f2a=bytes.fromhex(constants["5F2A"]), tag_9a=bytes.fromhex(constants["9A"]),
        tag_9c=bytes.fromhex(constants["9C"]), tag_9f37=un, tag_82=bytes.fromhex(p["aip"]),
        tag_9f36=atc_b, cvr=cvr,
    )
    prefix = bytes.fromhex(f"{p['psn']:02d}") if p["iaf"] & 0x40 else b""
    data = prefix + b"\x80" + atc_b + ac + iad_b
    return {
        "family": family,
        "iad": iad,
        "atc": atc,
        "mode": "sign" if challenge else "identify",
        "challenge": challenge,
        "amount": amount or None,
        "reader_constants": {tag: constants[tag] for tag in ("9F03", "9F1A", "95", "5F2A", "9A", "9C")},
        "ac": ac.hex().upper(),
        "otp": str(extract(bytes.fromhex(p["ipb"]), data)),
    }


def build() -> dict:
    out = {
        "about": "CAP codes per reader family and CVR variant, generated by host/tests/"
        "gen_reader_family_vectors.py with pyemv (keys, cryptograms) and its own IPB extraction; "
        "see docs/cap.md §2.4, §7",
        "generator": f"pyemv {importlib.metadata.version('pyemv')}",
        "imk": IMK.hex().upper(),
        "pin_try_limit": PIN_TRY_LIMIT,
        "families": FAMILIES,
        "cards": [],
    }
    for p in PROFILES:
        card = p["cvn"](IMK, IMK, IMK, p["pan"], f"{p['psn']:02d}")
        sessions, atc = [], 0
        for family in p["families"]:
            for iad in p["iads"]:
                # One Identify and one Sign per (family, CVR variant), at consecutive ATCs.
                sessions.append(session(p, card, family, iad, atc + 1, None, 0))
                sessions.append(session(p, card, family, iad, atc + 2, *SIGN))
                atc += 2
        out["cards"].append({
            "profile": p["profile"], "pan": p["pan"], "psn": p["psn"], "families": p["families"],
            "iads": p["iads"], "sessions": sessions,
        })
    return out


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyemv's two-key TripleDES deprecation warnings
        data = build()
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")
