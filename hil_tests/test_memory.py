"""The heap on the device: the apps' heavy modules are loaded while a flow or a command runs and
given back after (firmware/ondemand.py), and two apps' uses that overlap stay safe. Figures come
from the HEAP command (0x07, docs/protocol.md)."""

from __future__ import annotations

import time

import pytest
from cap_support import InThread

HEAP = 0x07
CARD_STATUS = 0x20
KEY_STATUS = 0x40
HOME = "Choisir la fonction"
QSTR_SLACK = 8 * 1024  # names interned by a module's first load stay (MicroPython qstr pools)


class Heap:
    def __init__(self, raw: bytes):
        self.free, self.used, self.peak, self.loads = (int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4))
        self.held = raw[16]


def heap(device, reset: bool = False) -> Heap:
    return Heap(device.call(HEAP, b"\x01" if reset else b""))


def test_heap_command_rejects_a_bad_payload(device):
    from capkey.link.errors import ProtocolError

    for bad in (b"\x02", b"\x01\x00"):
        with pytest.raises(ProtocolError):
            device.call(HEAP, bad)


@pytest.mark.sim_only
def test_commands_give_their_modules_back(device, operator):
    operator.wait_for_text(HOME)
    device.call(CARD_STATUS)  # first loads: their names are interned for good
    device.call(KEY_STATUS)
    before = heap(device, reset=True)
    assert before.held == 0
    for _ in range(3):
        device.call(CARD_STATUS)
        device.call(KEY_STATUS)
    after = heap(device)
    assert after.held == 0, "modules still held after the commands ended"
    assert after.loads >= before.loads + 6, "each command loads its app's modules"
    assert after.used <= before.used + 1024, f"heap not given back: {before.used} -> {after.used}"
    assert after.peak > before.used + 16 * 1024, "the peak must show the modules were loaded"


@pytest.mark.sim_only
def test_a_key_request_during_a_cap_keypad_flow_is_answered(device, operator):
    """The CAP flow holds its modules while the screen waits for the person; a key STATUS from
    the host then loads the key's next to them, or waits until the flow gives them back."""
    operator.wait_for_text(HOME)
    operator.press("1")  # wakes a blanked screen (the key does nothing at the home screen)
    base = heap(device)
    operator.press("A")  # CODE: asks for the PIN, or says the card is not personalised
    deadline = time.monotonic() + 5
    while heap(device).held == 0:
        assert time.monotonic() < deadline, "the CAP flow did not load its modules"
        time.sleep(0.05)
    call = InThread(device.call, KEY_STATUS, b"", timeout=60)
    time.sleep(0.5)
    operator.press("*")  # the person leaves the flow
    status = call.join(60)
    assert status[0] == 1  # KEY_STATUS format version
    operator.wait_for_text(HOME, timeout=10)
    end = heap(device)
    assert end.held == 0
    assert end.used <= base.used + QSTR_SLACK


def _pcsc_menu(operator):
    from key_support import menu_item

    menu_item(operator, "Lecteur PC/SC")


@pytest.mark.sim_only
def test_pcsc_mode_gives_its_card_up_when_the_key_needs_the_heap(device, operator):
    """The PC/SC mode keeps the CAP card in RAM between APDUs. A certificate key command that
    does not fit next to it makes the card go (the mode stays on) instead of waiting for the
    mode's 10 minutes; the next APDU loads the card again."""
    from cap_support import APDU, CARD_RESET, personalise, status

    operator.wait_for_text(HOME)
    personalise(device, operator)
    _pcsc_menu(operator)
    operator.wait_for_text("Activer le lecteur")
    operator.press("D")
    operator.wait_for_text("activé")
    operator.press("D")
    operator.wait_for_text(HOME)
    try:
        assert status(device).pcsc == 1
        select = bytes.fromhex("00A4040007A000000003800200")
        assert device.call(CARD_RESET)[:1] == b"\x3b"
        assert device.call(APDU, select)[-2:] == b"\x90\x00"
        held = heap(device).held
        assert held > 0, "PC/SC mode keeps the card loaded"
        t = time.monotonic()
        assert device.call(KEY_STATUS, timeout=20)[0] == 1
        assert time.monotonic() - t < 5, "the key command waited for the PC/SC mode"
        assert status(device).pcsc == 1, "the mode stays on"
        assert device.call(APDU, select)[-2:] == b"\x90\x00"  # the card comes back
    finally:
        _pcsc_menu(operator)  # switches the mode off
        operator.wait_for_text("désactivé")
        operator.press("D")
        operator.wait_for_text(HOME)
    assert status(device).pcsc == 0
    assert heap(device).held == 0
