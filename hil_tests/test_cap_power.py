"""Pulling the plug at every storage write point of the card's GPO and VERIFY (simulator crash
injection, CAPKEY_CRASH_TAG="cap_state"): the ATC never goes backwards, no PIN try is given back,
the card always loads again and still gives codes the verifier accepts."""

from __future__ import annotations

import pytest
from cap_support import backend, home, personalise, read_code, status, type_pin

from capkey.emv.verifier import Mode, verify_cap

pytestmark = [pytest.mark.sim_only, pytest.mark.slow]

# store.save passes 4 write points (begin, torn, synced, renamed): a flow with the right PIN
# saves the card state at GPO (1-4), the VERIFY pre-decrement (5-8), the restore (9-12), the
# ARQC (13-16) and the closing AAC (17-20).
_GPO = range(1, 5)
_VERIFY = range(5, 13)


def _run_until_crash(sim, op, pin):
    op.press("A")
    type_pin(op, pin)
    sim.wait_exit(timeout=15)


def test_power_cut_during_gpo_and_verify(new_sim, operator_for, connect):
    sim = new_sim()
    op = operator_for(sim)
    dev = connect(sim.url)
    card = personalise(dev, op, 1)
    dev.close()
    floor_atc = 0
    tries_floor = 3
    checked = 0
    for pin, points in (("9999", list(_GPO) + list(range(5, 9))), ("1234", list(_GPO) + list(_VERIFY))):
        for k in points:
            op.close()
            sim.restart(crash_at=k, crash_tag="cap_state")
            dev = connect(sim.url)
            before = status(dev)
            dev.close()
            home(op)
            _run_until_crash(sim, op, pin)
            op.close()
            sim.restart(crash_at=None, crash_tag=None)
            dev = connect(sim.url)
            after = status(dev)
            dev.close()
            assert after.state == 1, f"the card no longer loads (point {k})"
            assert after.atc >= before.atc >= floor_atc, f"ATC went back at point {k}"
            if k > 4:  # the GPO answer left the card: its ATC is durable
                assert after.atc == before.atc + 1, f"GPO answered before its ATC was saved ({k})"
            assert after.tries <= before.tries, f"a PIN try was given back at point {k}"
            if pin == "9999":
                assert after.tries >= before.tries - 1
            floor_atc = after.atc
            tries_floor = after.tries
            checked += 1
            if tries_floor == 1:
                # keep tries for the rest: restore with one good session (no crash)
                home(op)
                op.press("A")
                type_pin(op)
                read_code(op)
                home(op)
                dev = connect(sim.url)
                tries_floor = status(dev).tries
                floor_atc = status(dev).atc
                dev.close()
                assert tries_floor == 3
    assert checked == 20
    # the card still works and the verifier accepts its code above every ATC used so far
    home(op)
    op.press("A")
    type_pin(op)
    code = read_code(op)
    atc = verify_cap(card.with_atc(floor_atc), code, mode=Mode.IDENTIFY, key_backend=backend())
    assert atc == floor_atc + 1
