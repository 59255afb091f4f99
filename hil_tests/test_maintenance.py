"""Maintenance mode (docs/boards.md): *# held at power-up, or the MAINTENANCE request confirmed on
the keypad; then no link, a REPL that mpremote drives, the screen saying so; nothing secret in
reach that the flash does not already give (docs/threat-model.md). Simulator only: it holds the
keys at power-up and reads its REPL on its TCP port."""

from __future__ import annotations

import time

import pytest
from cap_support import InThread, personalisation_frame, personalise

from capkey.link.device import Device
from capkey.link.errors import DeviceTimeout, ProtocolError
from capkey.link.transport import Transport

pytestmark = pytest.mark.sim_only

HOME = "Choisir la fonction"


def assert_no_link(url: str) -> None:
    transport = Transport.open(url)
    try:
        with pytest.raises(DeviceTimeout):
            Device(transport, hello_timeout=1.0)
    finally:
        transport.close()  # the REPL, like a USB port, serves one connection at a time


def assert_maintenance_screen(sim) -> None:
    # the glass shows maintenance.py's screen: drawn again off-screen by the same code, compared
    shown = sim.repl("import board\nprint(board.BOARD.display.glass().hex())")
    expect = sim.repl("\n".join((
        "import board, maintenance",
        "from ui.screen import Screen",
        "d = board.SimDisplay()",
        "s = Screen(d, board.BOARD.lab)",
        "s.clear()",
        "s.row(0, maintenance.TITLE, True)",
        "rows = []",
        "for line in maintenance.LINES: __import__('ui.screen').screen.wrap(line, 16, rows)",
        "for i in range(len(rows)): s.row(i + 1, rows[i])",
        "s.flush()",
        "print(d.glass().hex(), ' '.join(s.lines()))",
    )))
    panel, text = expect.split(" ", 1)
    assert "Mode maintenance" in text and "débrancher puis rebrancher" in text
    assert shown == panel


def test_power_up_with_star_and_hash_held_is_maintenance(new_sim):
    sim = new_sim(held_keys="*#")
    assert "maintenance mode: REPL" in sim.console
    assert_no_link(sim.url)
    assert sim.repl("print(6 * 7)") == "42"  # the REPL answers, mpremote drives it
    assert_maintenance_screen(sim)
    sim.held_keys = ""
    sim.restart()  # unplug, plug back in: a normal boot
    with Device.open(sim.url) as dev:
        dev.ping(b"back")


def test_one_key_held_is_a_normal_boot(new_sim, operator_for):
    sim = new_sim(held_keys="*")
    operator_for(sim).wait_for_text(HOME)


def test_maintenance_request_refused_on_the_keypad(device, operator):
    operator.wait_for_text(HOME)
    call = InThread(device.maintenance)
    operator.wait_for_text("Accepter ?")
    operator.press("*")
    with pytest.raises(ProtocolError) as refused:
        call.join()
    assert refused.value.code is ProtocolError.ERR.DENIED
    operator.wait_for_text(HOME)
    device.ping(b"still the link")  # no restart, no maintenance


def test_maintenance_request_confirmed_restarts_into_maintenance(new_sim, operator_for, connect):
    sim = new_sim()
    op = operator_for(sim)
    dev = connect(sim.url)
    op.wait_for_text(HOME)
    call = InThread(dev.maintenance)
    lines = op.wait_for_text("Accepter ?")
    assert "Mode maintenance" in " ".join(lines) and "remplacer le logiciel" in " ".join(lines)
    op.press("D")
    call.join()
    op.close()
    deadline = time.monotonic() + 15
    while sim.reboots == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    sim.wait_ready()
    assert "maintenance mode: REPL" in sim.console.splitlines()[-1]
    assert sim.repl("import os\nprint(sorted(os.listdir()))").startswith("['.sim-glass', '.sim-serial'")
    assert_maintenance_screen(sim)
    sim.restart()  # the flag was for one boot: power cycling leaves maintenance
    op.wait_for_text(HOME, timeout=10)


def _tlv(data: bytes, tag: bytes) -> bytes:
    i = data.index(tag)
    n = data[i + len(tag)]
    return data[i + len(tag) + 1 : i + len(tag) + 1 + n]


def test_thief_in_maintenance_finds_no_command_and_no_clear_secret(new_sim, operator_for,
                                                                   connect):
    sim = new_sim()
    dev = connect(sim.url)
    personalise(dev, operator_for(sim))
    frame = bytes(personalisation_frame())
    udk, pin_block = _tlv(frame, b"\xdf\x02"), _tlv(frame, b"\xdf\x03")
    assert len(udk) == 16 and len(pin_block) == 8
    dev.close()
    sim.kill()
    sim.held_keys = "*#"
    sim.start()
    assert_no_link(sim.url)  # no link command at all: no card status, no code, no key
    # every file of the flash, read at the REPL: the card key and PIN block only sealed
    dump = sim.repl("\n".join((
        "import os",
        "for n in sorted(os.listdir()):",
        "    print(n, open(n, 'rb').read().hex())",
    )))
    names = [line.split()[0] for line in dump.splitlines()]
    assert "cap_card" in names and "dev.secret" in names
    assert udk.hex() not in dump and pin_block.hex() not in dump
    # and the maintenance boot loaded nothing that unseals or holds a secret (the simulator's
    # power-cut hook imports the store module, which opens nothing by itself)
    loaded = sim.repl("import sys\nprint(' '.join(sorted(sys.modules)))").split()
    for m in loaded:
        assert not m.startswith(("apps", "applets", "crypto", "commands", "flows", "link")), loaded


def test_the_session_board_boots_normally(device, operator):
    # the suite's own simulator, unaffected by the maintenance code: home screen, link, INFO
    operator.wait_for_text(HOME)
    assert device.info().board == "sim"
