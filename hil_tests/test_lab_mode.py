"""Lab mode (docs/boards.md, "Lab mode"): only a board whose strap pin is tied to ground at
power-up takes keys from the link (PRESS), and every frame of a lab board carries the lab marker,
a dashed line on the panel's last pixel row. Without the strap, a field unit: PRESS refused, no
marker. On the simulator the strap is fitted unless it is started with lab_strap=False."""

from __future__ import annotations

import time

import pytest
from cap_support import home

from capkey.link.device import Device
from capkey.link.errors import ProtocolError

HOME = "Choisir la fonction"


def last_pixel_row(framebuffer: bytes) -> list[int]:
    """The panel's row y = 63 (MONO_VLSB: byte (y // 8) * 128 + x, bit y % 8)."""
    return [(framebuffer[7 * 128 + x] >> 7) & 1 for x in range(128)]


def marked(framebuffer: bytes) -> bool:
    return last_pixel_row(framebuffer) == [1 if x % 8 < 4 else 0 for x in range(128)]


def test_a_lab_board_takes_keys_from_the_link_and_shows_the_marker(device, operator):
    assert device.takes_keys()
    home(operator, timeout=10, key="*")  # whatever an earlier test left on the screen
    operator.press("*")  # a panel blanked after a quiet while takes its first key to wake up
    frame, shown = device.screen()
    assert marked(frame)
    operator.press("A")  # CODE: another screen (whatever the card's state), the marker again
    deadline = time.monotonic() + 5
    while device.screen()[1] == shown:
        assert time.monotonic() < deadline, "the key pressed over the link changed nothing"
        time.sleep(0.05)
    assert marked(device.screen()[0])
    home(operator, timeout=10, key="*")


@pytest.mark.sim_only
def test_a_board_without_the_strap_refuses_press_and_shows_no_marker(new_sim):
    sim = new_sim(lab_strap=False)
    with Device.open(sim.url) as dev:
        assert not dev.takes_keys()
        with pytest.raises(ProtocolError) as refused:
            dev.press("#")
        assert refused.value.code is ProtocolError.ERR.UNSUPPORTED
        frame, lines = dev.screen()
        assert HOME in " ".join(lines)  # the key did not reach the UI
        assert not any(last_pixel_row(frame))
