"""CAP reader end to end through the keypad, the screen and the link: every mode on both
profiles, verified by the bank's verifier (capkey.emv.verifier); replay refused; connected mode;
3 wrong PINs block the card and the device says so; the PC/SC gate."""

from __future__ import annotations

import dataclasses
import time

import pytest
from cap_support import (
    APDU,
    GET_CODE,
    InThread,
    backend,
    home,
    personalise,
    read_code,
    status,
    type_pin,
)

from capkey.emv.verifier import InvalidCode, Mode, verify_cap
from capkey.link.errors import LinkError, PinBlocked, PinInvalid, ProtocolError

pytestmark = pytest.mark.destructive


@pytest.fixture(autouse=True)
def _back_home_after(operator):
    """Whatever a test left on the device (a code shown, a dialogue), the next starts at home."""
    yield
    home(operator, timeout=10, key="*")


def _accept(card, code, **kw):
    atc = verify_cap(card, code, key_backend=backend(), **kw)
    with pytest.raises(InvalidCode):  # the same code again: a replay
        verify_cap(card.with_atc(atc), code, key_backend=backend(), **kw)
    return card.with_atc(atc)


@pytest.mark.parametrize("profile_id", [1, 2])
def test_every_mode_through_the_keypad_is_accepted_once(device, operator, profile_id):
    card = personalise(device, operator, profile_id)
    home(operator)
    # CODE (Identify)
    operator.press("A")
    type_pin(operator)
    code = read_code(operator)
    card = _accept(card, code, mode=Mode.IDENTIFY)
    assert card.last_atc == 1
    home(operator)
    # SIGN -> 1 Réponse
    operator.press("B1")
    operator.wait_for_text("Code défi")
    operator.press("78901234D")
    type_pin(operator)
    card = _accept(card, read_code(operator), mode=Mode.RESPOND, challenge="78901234")
    home(operator)
    # SIGN -> 2 Signature: challenge then amount 1 250,00
    operator.press("B2")
    operator.wait_for_text("Code défi")
    operator.press("23710189D")
    operator.wait_for_text("Montant")
    operator.press("125000D")
    type_pin(operator)
    code = read_code(operator)
    card = _accept(card, code, mode=Mode.SIGN, challenge="23710189", amount=125000)
    with pytest.raises(InvalidCode):  # the same code for another amount
        verify_cap(dataclasses.replace(card, last_atc=card.last_atc - 1), code, mode=Mode.SIGN, challenge="23710189",
                   amount=125001, key_backend=backend())
    home(operator)
    # SIGN -> 3 Signer données: two fields, OK on an empty field ends the list
    operator.press("B3")
    operator.wait_for_text("Donnée 1")
    operator.press("1234D")
    operator.wait_for_text("Donnée 2")
    operator.press("3101234567D")
    operator.wait_for_text("Donnée 3")
    operator.press("D")
    type_pin(operator)
    card = _accept(card, read_code(operator), mode=Mode.SIGN_TDS, tds=["1234", "3101234567"])
    home(operator)
    st = status(device)
    assert (st.state, st.profile, st.tries, st.atc) == (1, profile_id, 3, 4)
    assert st.pan.endswith(card.pan[-4:]) and "*" in st.pan


def test_ok_to_code_time(device, operator):
    card = personalise(device, operator, 1)
    home(operator)
    operator.press("A")
    operator.wait_for_text("Code PIN")
    operator.press("1234")
    operator.wait_for_text("****")
    t0 = time.monotonic()
    operator.press("D")
    code = read_code(operator)
    ms = (time.monotonic() - t0) * 1000
    verify_cap(card, code, mode=Mode.IDENTIFY, key_backend=backend())
    # includes the PRESS and SCREEN round trips of the test itself
    print(f"\nOK -> code on screen, seen from the host: {ms:.0f} ms")
    home(operator)


def test_connected_mode_code_comes_back_and_stays_on_screen(device, operator):
    card = personalise(device, operator, 2)
    home(operator)
    payload = b"\x03" + b"\x08" + b"23710189" + b"\x06" + b"125000" + b"\x03" + b"EUR"
    seen = []
    call = InThread(device.call, GET_CODE, payload, timeout=30, on_keepalive=seen.append)
    operator.wait_for_text("1 250,00 EUR")
    assert "2371 0189" in operator.screen_text()
    deadline = time.monotonic() + 3
    while 2 not in seen and time.monotonic() < deadline:  # KEEPALIVE WAITING_FOR_USER
        time.sleep(0.02)
    assert 2 in seen
    operator.accept()
    type_pin(operator)
    code = call.join().decode()
    assert read_code(operator) == code
    _accept(card, code, mode=Mode.SIGN, challenge="23710189", amount=125000)
    home(operator)
    # ANNULER on the request: DENIED, no ATC used
    before = status(device).atc
    call = InThread(device.call, GET_CODE, b"\x01", timeout=30)
    operator.wait_for_text("Identification")
    operator.press("*")
    with pytest.raises(ProtocolError) as exc:
        call.join()
    assert exc.value.code == LinkError.ERR.DENIED
    assert status(device).atc == before


def test_three_wrong_pins_block_the_card_and_the_device_says_so(device, operator):
    personalise(device, operator, 1)
    home(operator)
    for left in (2, 1):
        operator.press("A")
        type_pin(operator, "9999")
        operator.wait_for_text(f"Essais restants : {left}")
        assert "Code PIN incorrect" in operator.screen_text()
        home(operator)
        assert status(device).tries == left
    # the third one through connected mode: the host learns it is blocked
    call = InThread(device.call, GET_CODE, b"\x01", timeout=30)
    operator.wait_for_text("Identification")
    operator.press("D")
    type_pin(operator, "9999")
    operator.wait_for_text("Code PIN bloqué")
    with pytest.raises(PinBlocked):
        call.join()
    home(operator)
    assert status(device).tries == 0
    # the right PIN does not help any more
    operator.press("A")
    type_pin(operator)
    operator.wait_for_text("Code PIN bloqué")
    assert "Contactez votre banque" in operator.screen_text()
    home(operator)


def test_wrong_pin_over_connected_mode_reports_tries_left(device, operator):
    personalise(device, operator, 2)
    home(operator)
    call = InThread(device.call, GET_CODE, b"\x02\x0242", timeout=30)
    operator.wait_for_text("Réponse")
    operator.press("D")
    type_pin(operator, "0000")
    with pytest.raises(PinInvalid) as exc:
        call.join()
    assert exc.value.attempts_remaining == 2
    home(operator)


def test_apdu_needs_the_pcsc_mode_switched_on_at_the_keypad(device, operator):
    personalise(device, operator, 1)
    home(operator)
    select = bytes.fromhex("00A4040007A000000003800200")
    with pytest.raises(ProtocolError) as exc:
        device.call(APDU, select)
    assert exc.value.code == LinkError.ERR.DENIED
    operator.press("#")
    operator.wait_for_text("Lecteur PC/SC")
    lines = operator.screen_lines()
    item = next(line.split()[0] for line in lines if "Lecteur" in line)
    operator.press(item)
    operator.wait_for_text("Activer")
    operator.press("D")
    operator.wait_for_text("activé")
    home(operator)
    r = device.call(APDU, select)
    assert r[-2:] == b"\x90\x00" and b"VisaRemAuthen" in r
    assert status(device).pcsc == 1
    # switch it off again from the same entry
    operator.press("#")
    operator.wait_for_text("Lecteur PC/SC")
    operator.press(item)
    operator.wait_for_text("désactivé")
    home(operator)
    with pytest.raises(ProtocolError):
        device.call(APDU, select)
