"""Reader families and card-reported CVR variants (docs/cap.md §2.4, §5.5), against
docs/vectors/cap_reader_families.json, which host/tests/gen_reader_family_vectors.py computes with
pyemv and its own IPB extraction (independently of capkey.emv): per family and CVR variant a code
is accepted once and reports its family, its replay and a Sign code with another amount are
refused, a remembered family admits only its own codes; the catalogue refuses what it does not
know; the cryptograms a verification computes stay within the documented bound."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cap_card_model import make_code

from capkey.emv.hazmat import Cvn
from capkey.emv.issuer import TEST_IMK_LABEL, CardKeyRef, IssuerBackend, SoftwareIssuerBackend
from capkey.emv.profiles import (
    MC_CAP_CVN16,
    PROFILES,
    READER_FAMILIES,
    VISA_DPA_CVN10,
    ReaderFamily,
)
from capkey.emv.verifier import (
    CapCard,
    CapMatch,
    InvalidCode,
    Mode,
    match_cap,
    match_resync,
    resync,
    verify_cap,
)

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "docs" / "vectors" / "cap_reader_families.json").read_text())
BACKEND = SoftwareIssuerBackend.for_tests()
SESSIONS = [(c, s) for c in VECTORS["cards"] for s in c["sessions"]]
IDS = [f"{c['profile']}-{s['family']}-{s['iad'][:16]}-{s['mode']}" for c, s in SESSIONS]
ALL = pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))


def card_for(c: dict, floor: int, family: str | None = None) -> CapCard:
    return CapCard(PROFILES[c["profile"]], c["pan"], c["psn"], TEST_IMK_LABEL, floor, VECTORS["pin_try_limit"], family)


def mode_kw(s: dict) -> dict:
    if s["mode"] == "sign":
        return {"mode": Mode.SIGN, "challenge": s["challenge"], "amount": s["amount"]}
    return {"mode": Mode(s["mode"])}


# --- the vectors -----------------------------------------------------------------------------------


def test_the_vectors_cover_every_family_and_cvr_variant_of_the_catalogue():
    for name, overrides in VECTORS["families"].items():
        assert dict(READER_FAMILIES[name].overrides) == {int(t, 16): bytes.fromhex(v) for t, v in overrides.items()}
    assert set(VECTORS["families"]) == set(READER_FAMILIES)
    for c in VECTORS["cards"]:
        profile = PROFILES[c["profile"]]
        assert c["families"] == list(profile.reader_families)
        assert c["iads"] == [i.hex().upper() for i in profile.iads_for(VECTORS["pin_try_limit"])]
        made = {(s["family"], s["iad"], s["mode"]) for s in c["sessions"]}
        assert made == {(f, i, m) for f in c["families"] for i in c["iads"] for m in ("identify", "sign")}


@pytest.mark.parametrize("c, s", SESSIONS, ids=IDS)
def test_accepted_once_with_its_family(c, s):
    card = card_for(c, s["atc"] - 1)
    assert match_cap(card, s["otp"], key_backend=BACKEND, **mode_kw(s)) == CapMatch(s["atc"], s["family"])
    assert verify_cap(card, s["otp"], key_backend=BACKEND, **mode_kw(s)) == s["atc"]
    with pytest.raises(InvalidCode):  # replay: the floor has moved to its ATC
        verify_cap(card.with_atc(s["atc"]), s["otp"], key_backend=BACKEND, **mode_kw(s))


@pytest.mark.parametrize("c, s", [(c, s) for c, s in SESSIONS if s["mode"] == "sign"],
                         ids=[i for i, (_, s) in zip(IDS, SESSIONS, strict=True) if s["mode"] == "sign"])
def test_sign_with_another_amount_or_challenge_refused(c, s):
    card = card_for(c, s["atc"] - 1)
    for kw in ({"amount": s["amount"] + 1}, {"amount": s["amount"] - 1}, {"challenge": "40960188"}):
        with pytest.raises(InvalidCode):
            verify_cap(card, s["otp"], key_backend=BACKEND, **{**mode_kw(s), **kw})


@pytest.mark.parametrize("c, s", SESSIONS, ids=IDS)
def test_a_remembered_family_admits_only_its_codes(c, s):
    assert match_cap(card_for(c, s["atc"] - 1, s["family"]), s["otp"], key_backend=BACKEND, **mode_kw(s)).reader_family == s["family"]
    for other in c["families"]:
        if other != s["family"]:
            with pytest.raises(InvalidCode):
                verify_cap(card_for(c, s["atc"] - 1, other), s["otp"], key_backend=BACKEND, **mode_kw(s))


# --- the model's codes: every mode, resync ---------------------------------------------------------

PAN, PSN = "4974000012345678", 1


@ALL
@pytest.mark.parametrize("mode, kw", [(Mode.IDENTIFY, {}), (Mode.RESPOND, {"challenge": "78901234"}),
                                      (Mode.SIGN_TDS, {"tds": ["1234", "3101234567"]})])
def test_every_family_in_every_mode(profile, mode, kw):
    for atc, family in enumerate(profile.reader_families, start=11):
        code = make_code(profile, PAN, PSN, atc, mode, family=family, **kw)
        card = CapCard(profile, PAN, PSN, TEST_IMK_LABEL, atc - 1)
        assert match_cap(card, code, mode=mode, key_backend=BACKEND, **kw) == CapMatch(atc, family)


@ALL
def test_resync_finds_the_family_and_honours_a_remembered_one(profile):
    other = profile.reader_families[1]
    c1 = make_code(profile, PAN, PSN, 1000, Mode.IDENTIFY, family=other)
    c2 = make_code(profile, PAN, PSN, 1001, Mode.IDENTIFY, family=other)
    card = CapCard(profile, PAN, PSN, TEST_IMK_LABEL, 10)
    assert match_resync(card, c1, c2, key_backend=BACKEND) == CapMatch(1001, other)
    assert resync(card, c1, c2, key_backend=BACKEND) == 1001
    assert match_resync(dataclasses.replace(card, reader_family=other), c1, c2, key_backend=BACKEND).reader_family == other
    with pytest.raises(InvalidCode):
        resync(dataclasses.replace(card, reader_family=profile.reader_families[0]), c1, c2, key_backend=BACKEND)
    # Both codes must come from one family.
    mixed = make_code(profile, PAN, PSN, 1001, Mode.IDENTIFY, family=profile.reader_families[0])
    with pytest.raises(InvalidCode):
        resync(card, c1, mixed, key_backend=BACKEND)


# --- the catalogue refuses what it does not know ---------------------------------------------------


@pytest.mark.parametrize(
    "families",
    [("visa-dpa", "no-such-family"), ("no-such-family",), (), "visa-dpa", ("visa-dpa", "visa-dpa"),
     ("mastercard-cap", "visa-dpa"),  # the first family must be the profile's own reader
     (1,)],
)
def test_profile_refuses_reader_families(families):
    with pytest.raises(ValueError):
        dataclasses.replace(VISA_DPA_CVN10, reader_families=families)


def test_profile_refuses_two_families_with_one_cryptogram_input(monkeypatch):
    # 9F35 is not MACed by CVN 16: a family differing only there adds odds, not codes.
    twin = ReaderFamily("mastercard-cap-twin", ((0x9A, bytes(3)), (0x9F35, b"\x25")), "test")
    monkeypatch.setitem(READER_FAMILIES, twin.name, twin)
    with pytest.raises(ValueError, match="same input"):
        dataclasses.replace(MC_CAP_CVN16, reader_families=("mastercard-cap", twin.name))


@pytest.mark.parametrize(
    "kw",
    [
        {"name": "Visa DPA"},
        {"name": ""},
        {"overrides": ()},
        {"overrides": ((0x9F37, bytes(4)),)},  # the UN is the mode's, not the reader's
        {"overrides": ((0x9F02, bytes(6)),)},
        {"overrides": ((0x9A, bytes(2)),)},
        {"overrides": ((0x9A, bytes(3)), (0x9A, bytes(3)))},
        {"overrides": ((0xDF01, bytes(1)),)},
        {"provenance": ""},
        {"provenance": "two\nlines"},
    ],
)
def test_reader_family_refuses(kw):
    base = {"name": "test-family", "overrides": ((0x9A, bytes(3)),), "provenance": "a test"}
    with pytest.raises(ValueError):
        ReaderFamily(**{**base, **kw})


def test_card_refuses_a_family_its_profile_does_not_accept():
    with pytest.raises(ValueError):
        CapCard(VISA_DPA_CVN10, PAN, PSN, TEST_IMK_LABEL, reader_family="no-such-family")
    assert "reader_family=visa-dpa" in repr(CapCard(VISA_DPA_CVN10, PAN, PSN, TEST_IMK_LABEL, reader_family="visa-dpa"))


def test_cdol1_data_per_family():
    un = bytes.fromhex("78901234")
    own = MC_CAP_CVN16.cdol1_data(un=un)
    assert own == MC_CAP_CVN16.cdol1_data(un=un, family="mastercard-cap")
    be = MC_CAP_CVN16.cdol1_data(un=un, family="be-payment-aid")
    assert be.hex().upper() == (
        "000000000000" "000000000000" "0000" "8000000800" "0000" "000000" "00" "78901234" "37" "0000" + "00" * 8 + "000000")
    with pytest.raises(ValueError):
        MC_CAP_CVN16.cdol1_data(un=un, family="no-such-family")


# --- bounded work ----------------------------------------------------------------------------------


class CountingBackend(IssuerBackend):
    """Wraps the software backend and counts the cryptograms asked of it."""

    def __init__(self) -> None:
        self.inner = SoftwareIssuerBackend.for_tests()
        self.cryptograms = 0

    def generate_ac(self, ref: CardKeyRef, cvn: Cvn, minimum: bytes, iad: bytes) -> bytes:
        self.cryptograms += 1
        return self.inner.generate_ac(ref, cvn, minimum, iad)

    def export_card_key(self, ref, encryption):
        return self.inner.export_card_key(ref, encryption)

    def imk_kcv(self, label):
        return self.inner.imk_kcv(label)


def bound(profile, family: str | None) -> int:
    """docs/cap.md §5.5: (reader families tried) × (IAD variants) per ATC candidate."""
    return (1 if family else len(profile.reader_families)) * len(profile.iad_candidates)


@ALL
@pytest.mark.parametrize("remembered", [False, True])
def test_cryptograms_per_verification_are_bounded(profile, remembered):
    family = profile.reader_families[0] if remembered else None
    counting = CountingBackend()
    floor = 100
    card = CapCard(profile, PAN, PSN, TEST_IMK_LABEL, floor, reader_family=family)
    seen = set()
    # A wrong code at every position of the window and beyond: at most one ATC candidate, so
    # at most the bound; exactly the bound when the code's constant bits are right.
    for atc in range(floor - 2, floor + profile.window + 3):
        good = make_code(profile, PAN, PSN, atc, Mode.RESPOND, challenge="31415926")
        for code in (str(int(good) ^ 1), str(int(good) ^ 0x10000)):
            before = counting.cryptograms
            with pytest.raises(InvalidCode):
                verify_cap(card, code, mode=Mode.RESPOND, challenge="31415926", key_backend=counting)
            seen.add(counting.cryptograms - before)
    assert max(seen) == bound(profile, family) and seen <= {0, bound(profile, family)}
    # A right code costs at most the bound, the card's own reader with its usual CVR exactly one.
    before = counting.cryptograms
    verify_cap(card, make_code(profile, PAN, PSN, floor + 1, Mode.RESPOND, challenge="31415926"),
               mode=Mode.RESPOND, challenge="31415926", key_backend=counting)
    assert counting.cryptograms - before == 1


@ALL
def test_resync_work_is_bounded(profile):
    counting = CountingBackend()
    c1 = make_code(profile, PAN, PSN, 600, Mode.IDENTIFY)
    c2 = make_code(profile, PAN, PSN, 601, Mode.IDENTIFY)
    search = 1000
    card = CapCard(profile, PAN, PSN, TEST_IMK_LABEL, 10)
    assert resync(card, c1, c2, search=search, key_backend=counting) == 601
    # Positions whose ATC bits fit both codes: search / 2^k; per position at most F×V for code1
    # and V for code2 per family code1 matched in.
    positions = -(-search // (profile.atc_mask + 1))
    per_position = bound(profile, None) + len(profile.iad_candidates)
    assert counting.cryptograms <= positions * per_position
