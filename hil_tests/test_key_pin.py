"""Certificate PIN and PUK through the keypad (a simulator, or a lab board with power control):
3 wrong PINs lock until the next power-up, 8 block; the PUK (MENU "Débloquer (PUK)") sets a new PIN and the key still signs; PIN
change from the MENU; 8 wrong PUKs wipe every key, and the screen says so."""

from __future__ import annotations

import pytest
from key_support import (
    HilCA,
    enrol,
    load_cert,
    menu_item,
    payload,
    puk_attempt,
    setup_and_generate,
    sign,
    start_sign,
    status,
    type_pin,
    verify,
    wait_any,
)

from capkey.link.errors import LinkError, PinBlocked, PinInvalid, ProtocolError

pytestmark = pytest.mark.destructive


def _wrong_pin(dev, op, expect_left, blocks=False):
    call = start_sign(dev, payload("login"))
    op.wait_for_text("Connexion", timeout=10)
    op.press("D")
    type_pin(op, "999999")
    wait_any(op, ("bloqué",) if blocks else ("incorrect",))
    op.press("D")  # OK on the notice: the answer leaves at once
    with pytest.raises(ProtocolError) as exc:
        call.join(30)
    e = exc.value
    if blocks:  # the 8th failure blocks the PIN: reason 1, unblock with the PUK
        assert e.code == LinkError.ERR.PIN_BLOCKED and e.payload == b"\x01"
    elif expect_left:
        assert isinstance(e, PinInvalid) and e.attempts_remaining == expect_left
    else:  # 0 tries left in this power-up: the host folds PIN_INVALID(0) into PinBlocked
        assert isinstance(e, PinBlocked) and e.payload == b"\x00"


def test_lockout_then_puk_unblock_through_the_menu(key_board):
    op, dev = key_board.op, key_board.dev
    ca = HilCA()
    att, puk = setup_and_generate(dev, op, 0)
    load_cert(dev, 0, ca.issue(att.public_key_bytes, "HIL Dan"))
    pub = att.public_key_bytes
    lefts = []
    for cycle in range(3):
        for _ in range(3 if cycle < 2 else 2):
            st = status(dev)
            _wrong_pin(dev, op, st.pin_now - 1, blocks=st.pin_left == 1)
            lefts.append(status(dev).pin_left)
        if cycle < 2:
            # a 4th try in the same power-up is refused at once, and the screen says why
            call = start_sign(dev, payload("login"))
            op.wait_for_text("débranchez")
            with pytest.raises(ProtocolError) as exc:
                call.join(30)
            assert exc.value.code == LinkError.ERR.PIN_BLOCKED and exc.value.payload == b"\x02"
            dev = key_board.power_cycle()
    assert lefts == [7, 6, 5, 4, 3, 2, 1, 0]
    st = status(dev)
    assert (st.pin_left, st.pin_now) == (0, 0)
    call = start_sign(dev, payload("login"))
    op.wait_for_text("PUK")  # "Code PIN bloqué / Débloquez-le avec le PUK (MENU)"
    with pytest.raises(ProtocolError) as exc:
        call.join(30)
    assert exc.value.code == LinkError.ERR.PIN_BLOCKED and exc.value.payload == b"\x01"
    # the person unblocks with the PUK from the MENU and chooses a new PIN
    menu_item(op, "Débloquer PIN")
    op.wait_for_text("Code PUK")
    op.press(puk + "D")
    op.wait_for_text("Nouveau code PIN")
    op.press("24680246D")
    op.wait_for_text("Confirmez")
    op.press("24680246D")
    op.wait_for_text("débloqué")
    st = status(dev)
    assert (st.pin_left, st.pin_now, st.puk_left) == (8, 3, 8)
    data = payload("payment")
    slot, sig = sign(dev, op, data, "Virement", pin="24680246")
    assert verify(pub, data, sig), "the key must survive a PUK reset"


def test_change_pin_from_the_menu(key_board):
    op, dev = key_board.op, key_board.dev
    pub = enrol(dev, op, HilCA(), 1, "HIL Eve")
    menu_item(op, "Changer PIN")
    op.wait_for_text("Code PIN actuel")
    op.press("123456D")
    op.wait_for_text("Nouveau code PIN")
    op.press("7654321D")
    op.wait_for_text("Confirmez")
    op.press("7654321D")
    op.wait_for_text("modifié")
    data = payload("login")
    slot, sig = sign(dev, op, data, "Connexion", pin="7654321")
    assert slot == 1 and verify(pub, data, sig)


def test_blocked_puk_wipes_every_key_and_says_so(key_board):
    op, dev = key_board.op, key_board.dev
    ca = HilCA()
    enrol(dev, op, ca, 0, "HIL Finn")
    enrol(dev, op, ca, 3, "HIL Finn 2")
    for i in range(8):
        if i and i % 3 == 0:
            dev = key_board.power_cycle()
        # the screen says plainly what happened
        call = puk_attempt(dev, op, "00000000", ("effacés",) if i == 7 else ("incorrect",))
        with pytest.raises(ProtocolError) as exc:
            call.join(30)
        if i < 7:  # PIN_INVALID with the tries left in this power-up (0 reads as PinBlocked)
            assert exc.value.raw_code == LinkError.ERR.PIN_INVALID or exc.value.payload == b"\x00"
            assert exc.value.payload == bytes((min(7 - i, 2 - i % 3),))
        else:
            assert exc.value.code == LinkError.ERR.PIN_BLOCKED
            assert exc.value.payload == b"\x03"
    st = status(dev)
    assert st.state == 0 and not any(s.key for s in st.slots)
