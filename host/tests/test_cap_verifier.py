"""capkey.emv.verifier: acceptance per profile and mode, single use, window, resync, mode
separation, R7 binding, one opaque failure for every malformed input, profile checks."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from cap_card_model import make_code
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capkey.cert import payload
from capkey.emv import hazmat as emv
from capkey.emv.hazmat import Cvn, KeyDerivation, UnsupportedCvn
from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend, generate_imk
from capkey.emv.profiles import MC_CAP_CVN16, PROFILES, VISA_DPA_CVN10, profile_by_id
from capkey.emv.verifier import (
    CapCard,
    InvalidCode,
    Mode,
    cap_challenge,
    operation_challenge,
    resync,
    transaction_challenge,
    verify_cap,
    verify_cap_payload,
)

PAN = "4974000012345678"
PSN = 1
BACKEND = SoftwareIssuerBackend.for_tests()
ALL = pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))


def card(profile, last_atc=10, **kw) -> CapCard:
    return CapCard(profile, kw.get("pan", PAN), kw.get("psn", PSN), TEST_IMK_LABEL, last_atc)


def verify(c, code, mode, **kw):
    return verify_cap(c, code, mode=mode, key_backend=BACKEND, **kw)


# --- acceptance ---------------------------------------------------------------------------------


@ALL
def test_identify(profile):
    code = make_code(profile, PAN, PSN, 11, Mode.IDENTIFY)
    assert verify(card(profile), code, Mode.IDENTIFY) == 11


@ALL
def test_respond(profile):
    code = make_code(profile, PAN, PSN, 17, Mode.RESPOND, challenge="78901234")
    assert verify(card(profile), code, Mode.RESPOND, challenge="78901234") == 17


@ALL
def test_sign(profile):
    code = make_code(profile, PAN, PSN, 12, Mode.SIGN, challenge="40960189", amount=125000)
    assert verify(card(profile), code, Mode.SIGN, challenge="40960189", amount=125000) == 12
    with pytest.raises(InvalidCode):
        verify(card(profile), code, Mode.SIGN, challenge="40960189", amount=125001)
    with pytest.raises(InvalidCode):
        verify(card(profile), code, Mode.SIGN, challenge="40960188", amount=125000)


@ALL
def test_sign_with_data(profile):
    fields = ["1234", "3101234567"]
    code = make_code(profile, PAN, PSN, 13, Mode.SIGN_TDS, tds=fields)
    assert verify(card(profile), code, Mode.SIGN_TDS, tds=fields) == 13
    for other in (["1234", "3101234568"], ["1234"], ["3101234567", "1234"], ["01234", "3101234567"]):
        with pytest.raises(InvalidCode):
            verify(card(profile), code, Mode.SIGN_TDS, tds=other)


@ALL
def test_every_iad_candidate(profile):
    for atc, iad in enumerate(profile.iads_for(3), start=11):
        code = make_code(profile, PAN, PSN, atc, Mode.RESPOND, challenge="1", iad=iad)
        assert verify(card(profile), code, Mode.RESPOND, challenge="1") == atc


def test_pin_try_limit_in_cvr():
    p = MC_CAP_CVN16
    five = CapCard(p, PAN, PSN, TEST_IMK_LABEL, 10, pin_try_limit=5)
    assert p.iads_for(5)[0][4] == 0x05 and p.iads_for(3)[0][4] == 0x03
    code = make_code(p, PAN, PSN, 11, Mode.IDENTIFY, iad=p.iads_for(5)[1])
    assert verify(five, code, Mode.IDENTIFY) == 11
    with pytest.raises(InvalidCode):
        verify(card(p), code, Mode.IDENTIFY)
    # The Visa CVR carries no try counter: the limit changes nothing there.
    assert VISA_DPA_CVN10.iads_for(5) == VISA_DPA_CVN10.iad_candidates


@ALL
def test_unknown_cvr_refused(profile):
    iad = bytearray(profile.iads_for(3)[0])
    iad[-1 if profile.cvn == Cvn.VISA_10 else 4] ^= 0x01  # a CVR bit no candidate has
    code = make_code(profile, PAN, PSN, 11, Mode.RESPOND, challenge="5", iad=bytes(iad))
    with pytest.raises(InvalidCode):
        verify(card(profile), code, Mode.RESPOND, challenge="5")


@ALL
def test_other_card_refused(profile):
    code = make_code(profile, PAN, PSN, 11, Mode.IDENTIFY)
    with pytest.raises(InvalidCode):
        verify(card(profile, psn=2), code, Mode.IDENTIFY)
    with pytest.raises(InvalidCode):
        verify(card(profile, pan="4974000012345679"), code, Mode.IDENTIFY)
    other = SoftwareIssuerBackend({TEST_IMK_LABEL: generate_imk()})
    with pytest.raises(InvalidCode):
        verify_cap(card(profile), code, mode=Mode.IDENTIFY, key_backend=other)


# --- single use and window ----------------------------------------------------------------------


@ALL
def test_single_use(profile):
    c = card(profile)
    code = make_code(profile, PAN, PSN, 11, Mode.RESPOND, challenge="42")
    atc = verify(c, code, Mode.RESPOND, challenge="42")
    c = c.with_atc(atc)
    with pytest.raises(InvalidCode):
        verify(c, code, Mode.RESPOND, challenge="42")
    # An older, never submitted code is also dead once a later ATC was accepted.
    old = make_code(profile, PAN, PSN, 11, Mode.RESPOND, challenge="43")
    with pytest.raises(InvalidCode):
        verify(c, old, Mode.RESPOND, challenge="43")
    with pytest.raises(ValueError):
        c.with_atc(atc - 1)


@ALL
def test_window(profile):
    floor = 100
    w = profile.window
    assert verify(card(profile, floor), make_code(profile, PAN, PSN, floor + w, Mode.IDENTIFY), Mode.IDENTIFY) == floor + w
    with pytest.raises(InvalidCode):
        verify(card(profile, floor), make_code(profile, PAN, PSN, floor + w + 1, Mode.IDENTIFY), Mode.IDENTIFY)
    with pytest.raises(InvalidCode):
        verify(card(profile, floor), make_code(profile, PAN, PSN, floor, Mode.IDENTIFY), Mode.IDENTIFY)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    profile=st.sampled_from(list(PROFILES.values())),
    floor=st.integers(0, 0xFFFF - 40),
    step=st.integers(1, 32),
    challenge=st.integers(1, 99_999_999),
)
def test_accepts_any_atc_in_window(profile, floor, step, challenge):
    ch = str(challenge)
    code = make_code(profile, PAN, PSN, floor + step, Mode.RESPOND, challenge=ch)
    assert verify(card(profile, floor), code, Mode.RESPOND, challenge=ch) == floor + step


# --- mode separation ----------------------------------------------------------------------------


@ALL
def test_mode_separation(profile):
    c = card(profile)
    identify = make_code(profile, PAN, PSN, 11, Mode.IDENTIFY)
    # Identify ≡ Respond(00000000): refused as a Respond code, whatever zeros are typed.
    for zeros in ("0", "00000000"):
        with pytest.raises(InvalidCode):
            verify(c, identify, Mode.RESPOND, challenge=zeros)
    # Respond(C) ≡ Sign(C, 0): a Sign needs an amount ≥ 1.
    respond = make_code(profile, PAN, PSN, 11, Mode.RESPOND, challenge="12345678")
    with pytest.raises(InvalidCode):
        verify(c, respond, Mode.SIGN, challenge="12345678", amount=0)
    # A Sign code is not a Respond code for the same challenge.
    sign = make_code(profile, PAN, PSN, 11, Mode.SIGN, challenge="12345678", amount=100)
    with pytest.raises(InvalidCode):
        verify(c, sign, Mode.RESPOND, challenge="12345678")
    # Identify is not Sign with data (the TDS MAC replaces the AC).
    with pytest.raises(InvalidCode):
        verify(c, identify, Mode.SIGN_TDS, tds=["1"])


# --- opaque failure -----------------------------------------------------------------------------

BAD_CODES = ["", " 1234", "1234 ", "12a4", "١٢٣٤", "+123", "-1", "123456789", "1e5", "0x12", "67108864"]


@ALL
@pytest.mark.parametrize("code", BAD_CODES + [None, 1234, b"1234", 12.0])
def test_malformed_code_is_invalid(profile, code, caplog):
    caplog.set_level(logging.DEBUG, logger="capkey.emv.verifier")
    with pytest.raises(InvalidCode) as info:
        verify(card(profile), code, Mode.RESPOND, challenge="1")
    assert info.value.args == ()
    assert PAN not in caplog.text and (not isinstance(code, str) or not code.strip() or code not in caplog.text)


@ALL
@pytest.mark.parametrize(
    "mode, kw",
    [
        (Mode.RESPOND, {}),
        (Mode.RESPOND, {"challenge": ""}),
        (Mode.RESPOND, {"challenge": "123456789"}),
        (Mode.RESPOND, {"challenge": 1234}),
        (Mode.RESPOND, {"challenge": "12 34"}),
        (Mode.RESPOND, {"challenge": "1234", "amount": 5}),
        (Mode.SIGN, {"challenge": "1234"}),
        (Mode.SIGN, {"challenge": "1234", "amount": -1}),
        (Mode.SIGN, {"challenge": "1234", "amount": 10**12}),
        (Mode.SIGN, {"challenge": "1234", "amount": True}),
        (Mode.SIGN, {"challenge": "1234", "amount": "5"}),
        (Mode.IDENTIFY, {"challenge": "1234"}),
        (Mode.IDENTIFY, {"tds": ["1"]}),
        (Mode.SIGN_TDS, {}),
        (Mode.SIGN_TDS, {"tds": "1234"}),
        (Mode.SIGN_TDS, {"tds": ["12345678901"]}),
        (Mode.SIGN_TDS, {"tds": [1234]}),
        (Mode.SIGN_TDS, {"tds": ["1"] * 11}),
    ],
)
def test_malformed_mode_data_is_invalid(profile, mode, kw):
    code = make_code(profile, PAN, PSN, 11, Mode.IDENTIFY)
    with pytest.raises(InvalidCode):
        verify(card(profile), code, mode, **kw)


@settings(max_examples=200, deadline=None)
@given(code=st.one_of(st.text(max_size=12), st.integers(), st.none(), st.binary(max_size=8)))
def test_fuzz_only_invalid_code(code):
    c = card(VISA_DPA_CVN10)
    try:
        verify(c, code, Mode.RESPOND, challenge="31415926")
    except InvalidCode:
        pass


def test_programming_errors_are_not_invalid_code():
    code = make_code(VISA_DPA_CVN10, PAN, PSN, 11, Mode.IDENTIFY)
    with pytest.raises(TypeError):
        verify_cap(card(VISA_DPA_CVN10), code, mode=Mode.IDENTIFY, key_backend=object())
    with pytest.raises(TypeError):
        verify_cap("card", code, mode=Mode.IDENTIFY, key_backend=BACKEND)
    with pytest.raises(ValueError):
        verify(card(VISA_DPA_CVN10), code, Mode.SIGN, challenge="1", amount=1, currency="978")


# --- resync -------------------------------------------------------------------------------------


@ALL
def test_resync(profile):
    floor, c = 10, 10 + 1000
    c1 = make_code(profile, PAN, PSN, c, Mode.IDENTIFY)
    c2 = make_code(profile, PAN, PSN, c + 1, Mode.IDENTIFY)
    with pytest.raises(InvalidCode):  # beyond the window
        verify(card(profile, floor), c2, Mode.IDENTIFY)
    new_floor = resync(card(profile, floor), c1, c2, key_backend=BACKEND)
    assert new_floor == c + 1
    # Both codes are consumed: the next code above is accepted, they are not.
    nxt = make_code(profile, PAN, PSN, c + 2, Mode.IDENTIFY)
    assert verify(card(profile, new_floor), nxt, Mode.IDENTIFY) == c + 2
    with pytest.raises(InvalidCode):
        verify(card(profile, new_floor), c2, Mode.IDENTIFY)


@ALL
def test_resync_refuses(profile):
    floor = 500
    a = make_code(profile, PAN, PSN, 900, Mode.IDENTIFY)
    b = make_code(profile, PAN, PSN, 902, Mode.IDENTIFY)  # not consecutive
    with pytest.raises(InvalidCode):
        resync(card(profile, floor), a, b, key_backend=BACKEND)
    # Never backwards: codes below the floor.
    a = make_code(profile, PAN, PSN, 400, Mode.IDENTIFY)
    b = make_code(profile, PAN, PSN, 401, Mode.IDENTIFY)
    with pytest.raises(InvalidCode):
        resync(card(profile, floor), a, b, key_backend=BACKEND)
    # Beyond the search range.
    a = make_code(profile, PAN, PSN, 700, Mode.IDENTIFY)
    b = make_code(profile, PAN, PSN, 701, Mode.IDENTIFY)
    with pytest.raises(InvalidCode):
        resync(card(profile, floor), a, b, search=150, key_backend=BACKEND)
    assert resync(card(profile, floor), a, b, search=201, key_backend=BACKEND) == 701
    # Respond codes are not Identify codes.
    a = make_code(profile, PAN, PSN, 700, Mode.RESPOND, challenge="1")
    with pytest.raises(InvalidCode):
        resync(card(profile, floor), a, b, key_backend=BACKEND)
    with pytest.raises(InvalidCode):
        resync(card(profile, floor), "x", b, key_backend=BACKEND)
    with pytest.raises(ValueError):
        resync(card(profile, floor), a, b, search=10**6, key_backend=BACKEND)


# --- R7: records → what the person types → verification ------------------------------------------

NONCE = bytes(range(32))
IBAN = "FR7630006000011234567890189"


def payment(**kw):
    base = dict(challenge=NONCE, amount=125000, currency="EUR", payee_iban=IBAN, payee_name="ACME SARL")
    base.update(kw)
    return payload.PaymentPayload(**base)


def test_transaction_challenge_encoding():
    rec = payment()
    ch = cap_challenge(rec)
    assert ch.mode is Mode.SIGN and ch.amount == 125000
    assert ch.challenge == ch.server_digits + ch.payee_digits and len(ch.challenge) == 8
    assert ch.payee_digits == "0189"  # last 4 digits of the payee IBAN
    import hashlib

    raw = bytes(rec.to_bytes())
    h = int.from_bytes(hashlib.sha256(b"capkey/cap-challenge/v1\x00" + raw).digest(), "big") % 10**4
    assert ch.server_digits == f"{h:04d}"
    assert transaction_challenge(rec) == transaction_challenge(rec.to_bytes()) == transaction_challenge(raw)
    # The hash part follows every field and the nonce.
    variants = [payment(amount=125001), payment(currency="CHF"), payment(challenge=bytes(32)),
                payment(payee_iban="FR7630006000011234567890189".replace("0189", "0189"), payee_name="ACME SA")]
    assert len({transaction_challenge(v) for v in variants} | {transaction_challenge(rec)}) >= 4


def test_batch_and_operation_challenges():
    batch = payload.BatchPayload(challenge=NONCE, total=999, currency="EUR", count=12, payees=(IBAN,))
    ch = cap_challenge(batch)
    assert ch.mode is Mode.SIGN and ch.amount == 999 and ch.payee_digits == "0012"
    op = payload.OperationPayload(challenge=NONCE, purpose=payload.Purpose.MANAGE_PAYEES, operation_id="op-1")
    assert cap_challenge(op).mode is Mode.RESPOND
    assert operation_challenge(op).isdigit() and len(operation_challenge(op)) == 8
    with pytest.raises(TypeError):
        operation_challenge(batch)
    with pytest.raises(TypeError):
        transaction_challenge(op)


@ALL
def test_verify_payload(profile):
    rec = payment()
    ch = cap_challenge(rec)
    code = make_code(profile, PAN, PSN, 11, Mode.SIGN, challenge=ch.challenge, amount=ch.amount)
    assert verify_cap_payload(card(profile), code, rec, key_backend=BACKEND) == 11
    # A changed amount, payee, currency or nonce → refused.
    for other in (payment(amount=125001), payment(payee_iban="DE89370400440532013000"),
                  payment(currency="CHF"), payment(challenge=bytes(32))):
        with pytest.raises(InvalidCode):
            verify_cap_payload(card(profile), code, other, key_backend=BACKEND)
    # A Respond code over the same 8 digits (amount not typed) does not sign the payment.
    respond = make_code(profile, PAN, PSN, 11, Mode.RESPOND, challenge=ch.challenge)
    with pytest.raises(InvalidCode):
        verify_cap_payload(card(profile), respond, rec, key_backend=BACKEND)
    # An operation code is Respond over its own challenge.
    op = payload.OperationPayload(challenge=NONCE, purpose=payload.Purpose.ORDER_CHEQUEBOOK, operation_id="X1")
    code = make_code(profile, PAN, PSN, 12, Mode.RESPOND, challenge=operation_challenge(op))
    assert verify_cap_payload(card(profile), code, op, key_backend=BACKEND) == 12
    with pytest.raises(InvalidCode):
        verify_cap_payload(card(profile), code, dataclasses.replace(op, operation_id="X2"), key_backend=BACKEND)


# --- profile construction -----------------------------------------------------------------------


def test_profiles_registry():
    assert profile_by_id(1) is VISA_DPA_CVN10 and profile_by_id(2) is MC_CAP_CVN16
    assert VISA_DPA_CVN10.otp_bits == 26 and MC_CAP_CVN16.otp_bits == 26
    assert not VISA_DPA_CVN10.psn_prefix and MC_CAP_CVN16.psn_prefix
    with pytest.raises(KeyError):
        profile_by_id(3)


@pytest.mark.parametrize(
    "change, exc",
    [
        ({"cvn": 0x99}, UnsupportedCvn),
        ({"window": 0}, ValueError),
        ({"window": 257}, ValueError),  # > 2^8 ATC bits of the Barclays IPB
        ({"ipb": bytes.fromhex("80FFFF00000000FFFFFFFF")}, ValueError),  # 41 bits > 8 digits
        ({"ipb": bytes.fromhex("8000FF00000000000000FF")}, ValueError),  # only 8 AC bits
        ({"ipb": bytes.fromhex("8000FF")}, ValueError),  # does not reach the AC
        ({"ipb": bytes.fromhex("8000FF000000000001FFFF") + bytes(8)}, ValueError),  # longer than data
        ({"aid": bytes(4)}, ValueError),
        ({"aip": bytes(3)}, ValueError),
        ({"gpo_format": 3}, ValueError),
        ({"profile_id": 0}, ValueError),
        ({"cdol1": VISA_DPA_CVN10.cdol1[:-1]}, ValueError),
        ({"reader": VISA_DPA_CVN10.reader[:-1]}, ValueError),
        ({"reader": VISA_DPA_CVN10.reader[:-1] + ((0x9C, bytes(2)),)}, ValueError),
        ({"iad_candidates": ()}, ValueError),
        ({"iad_candidates": (bytes.fromhex("06011203A40000"),)}, ValueError),  # CVN 18 IAD
        ({"iad_candidates": (bytes.fromhex("06010A"),)}, ValueError),
        ({"derivation": "A"}, TypeError),
        ({"digits": 20}, ValueError),
        ({"iaf": 256}, ValueError),
        ({"iad_ptc_offset": 3}, ValueError),  # VIS byte 3 is the CVR length 03: low nibble set
        ({"iad_ptc_offset": 40}, ValueError),
    ],
)
def test_profile_refuses(change, exc):
    with pytest.raises(exc):
        dataclasses.replace(VISA_DPA_CVN10, **change)


def test_profile_accepts_a_variant():
    p = dataclasses.replace(VISA_DPA_CVN10, name="v2", window=64, derivation=KeyDerivation.OPTION_B)
    assert p.window == 64 and p.atc_mask == 0xFF


def test_card_checks():
    with pytest.raises(ValueError):
        CapCard(VISA_DPA_CVN10, "1234", 1, TEST_IMK_LABEL)
    with pytest.raises(ValueError):
        CapCard(VISA_DPA_CVN10, PAN, 1, TEST_IMK_LABEL, last_atc=0x10000)
    with pytest.raises(ValueError):
        CapCard(VISA_DPA_CVN10, PAN, 1, "")
    assert PAN not in repr(card(VISA_DPA_CVN10)) and PAN not in repr(card(VISA_DPA_CVN10).key_ref)


def test_cdol1_sizes():
    assert len(VISA_DPA_CVN10.cdol1_data(un=bytes(4))) == 29
    assert len(MC_CAP_CVN16.cdol1_data(un=bytes(4))) == 43
    assert emv.Ipb(MC_CAP_CVN16.ipb).bits == 26
