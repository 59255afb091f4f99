"""Certificate key end to end (a simulator, or a lab board with power control), through the link, the keypad and the screen:
first use (PIN chosen, PUK shown), key generation with a verified attestation, certificate
loading, and signatures of every payload type checked with `cryptography` over the exact payload
bytes; what the screen shows is the payload's display lines; ANNULER aborts; several
certificates ask which one; non-canonical payloads are refused before anything is shown."""

from __future__ import annotations

import pytest
from key_support import (
    PIN,
    SIGN,
    VECTORS,
    HilCA,
    display,
    enrol,
    payload,
    sign,
    start_sign,
    status,
    type_pin,
    verify,
)

from capkey.link.errors import LinkError, ProtocolError

pytestmark = pytest.mark.destructive


def test_enrol_and_sign_every_payload_type(key_board):
    op, dev = key_board.op, key_board.dev
    ca = HilCA()
    pub = enrol(dev, op, ca, 0, "HIL Alice")
    st = status(dev)
    assert (st.state, st.pin_left, st.puk_left) == (1, 8, 8)
    assert st.slots[0].key and st.slots[0].cert and st.slots[0].public_key == pub
    assert b"HIL Alice" in st.slots[0].subject
    for name in ("login", "payment", "batch", "operation habilitations"):
        data = payload(name)
        call = start_sign(dev, data)
        op.wait_for_text(display(name)[0], timeout=10)
        lines = op.accept()
        shown = " ".join(lines)
        for line in display(name):
            assert line in shown, f"{name}: {line!r} not shown: {lines}"
        type_pin(op)
        out = call.join(30)
        assert out[0] == 0
        assert verify(pub, data, out[1:]), f"{name}: the signature does not verify"
        assert not verify(pub, data + b"x", out[1:])


def test_annuler_aborts_and_costs_no_try(key_board):
    op, dev = key_board.op, key_board.dev
    enrol(dev, op, HilCA(), 0, "HIL Bob")
    # ANNULER on the payload screen
    call = start_sign(dev, payload("payment"))
    op.wait_for_text("Virement", timeout=10)
    op.press("*")
    with pytest.raises(ProtocolError) as exc:
        call.join(30)
    assert exc.value.code == LinkError.ERR.DENIED
    # ANNULER at the PIN
    call = start_sign(dev, payload("payment"))
    op.wait_for_text("Virement", timeout=10)
    op.accept()
    op.wait_for_text("Code PIN")
    op.press("12*")
    with pytest.raises(ProtocolError) as exc:
        call.join(30)
    assert exc.value.code == LinkError.ERR.DENIED
    assert status(dev).pin_left == 8


def test_several_certificates_ask_which_one(key_board):
    op, dev = key_board.op, key_board.dev
    ca = HilCA()
    enrol(dev, op, ca, 0, "Alice Pro")
    pub2 = enrol(dev, op, ca, 2, "Alice Perso")
    data = payload("payment")
    slot, sig = sign(dev, op, data, "Virement", pick="2")
    assert slot == 2 and verify(pub2, data, sig)
    lines = op.screen_lines()
    assert PIN not in " ".join(lines)


def test_non_canonical_payloads_are_refused_before_the_screen(key_board):
    op, dev = key_board.op, key_board.dev
    enrol(dev, op, HilCA(), 0, "HIL Carol")
    before = op.screen_lines()
    for vec in VECTORS["invalid"][:20]:
        with pytest.raises(ProtocolError) as exc:
            dev.call(SIGN, bytes.fromhex(vec["hex"]), timeout=5)
        assert exc.value.code == LinkError.ERR.INVALID_PARAMETER, vec["name"]
    assert op.screen_lines() == before
    assert status(dev).pin_left == 8
