"""Power cuts through the board's power switch, as a lab rig makes them with no person: the `power`
fixture (labgrid's power driver in a rig, the simulator's plug otherwise) at a sweep of moments
after the person's OK on the PIN. Wherever the cut lands, the card and the key lose nothing but
what the person was doing:

- a CAP code costs at most the PIN try it had spent (tries are spent before the PIN is looked
  at, docs/cap.md), its ATC never goes back (the next code verifies above the last one), and the
  next code with the right PIN gives the try back;
- a signature costs at most a PIN try, the key and its certificate stay, and the next signature
  verifies.

The sweep spans a board's flows (a Pico checks a key PIN in about half a second, signs in about
two); on the simulator most cuts come after the flow. The cuts at each exact write point are
test_cap_power.py's and test_key_power.py's, on the simulator, which alone can stop at a given
write."""

from __future__ import annotations

import dataclasses
import time

import pytest
from cap_support import backend, home, personalise, read_code, status, type_pin
from key_support import (
    ACTIVE,
    HilCA,
    display,
    enrol,
    payload,
    sign,
    start_sign,
    verify,
)
from key_support import status as key_status
from key_support import type_pin as type_key_pin

from capkey.emv.verifier import Mode, verify_cap
from capkey.link.errors import LinkError

pytestmark = pytest.mark.slow

CUT_AFTER_S = (0.0, 0.02, 0.1, 0.4, 1.2)  # from the OK on the PIN to the cut
HOME = "Choisir la fonction"
PIN_TRIES = 8  # the key's (applets/signer.py)


def _identify(operator) -> None:
    home(operator)
    operator.press("A")
    type_pin(operator)


def test_a_power_cut_during_a_code_costs_at_most_the_try_it_spent(operator, power):
    card = personalise(operator.device(), operator, 1)
    for delay in CUT_AFTER_S:
        _identify(operator)
        time.sleep(delay)
        power.off()
        power.on()
        operator.wait_for_text(HOME, timeout=20)
        st = status(operator.device())
        assert st.state == 1 and st.tries in (2, 3), (delay, st)
        assert st.atc >= card.last_atc, (delay, st)  # the ATC never goes back
        _identify(operator)
        atc = verify_cap(card, read_code(operator), mode=Mode.IDENTIFY, key_backend=backend())
        card = dataclasses.replace(card, last_atc=atc)
        assert status(operator.device()).tries == 3, delay  # the right PIN gives the try back
    home(operator)


def test_a_power_cut_during_a_signature_costs_at_most_a_try(key_board):
    b = key_board
    point = enrol(b.dev, b.op, HilCA(), 0, "Coupure Courant")
    data, first = payload("payment"), display("payment")[0]
    for delay in CUT_AFTER_S:
        call = start_sign(b.dev, data)
        b.op.wait_for_text(first, timeout=10)
        b.op.accept()
        type_key_pin(b.op)
        time.sleep(delay)
        b.power_cycle()
        try:
            call.join(10)
        except LinkError:
            pass  # the connection went with the power: no answer, or one that came before
        st = key_status(b.dev)
        assert st.state == ACTIVE and st.slots[0].key and st.slots[0].cert, (delay, st)
        assert st.pin_left in (PIN_TRIES - 1, PIN_TRIES), (delay, st)
        _, sig = sign(b.dev, b.op, data, first)
        assert verify(point, data, sig), delay
        assert key_status(b.dev).pin_left == PIN_TRIES, delay
