"""Pulling the plug at every storage write point of the certificate PIN check (simulator crash
injection, CAPKEY_CRASH_TAG="sig.pin:"): the state always loads, and no PIN try is ever given
back. store.save passes 4 write points (begin, torn, synced, renamed; a save is durable from
"synced", when load() rolls the complete new copy forward):

- wrong PIN: 1-4 the pre-decrement (saved before the PIN is looked at);
- right PIN: 1-4 the pre-decrement, 5-8 the restore to 8 tries after the PIN matched.

Whenever the PIN could have been compared (the pre-decrement was durable), the try is spent; only
a completed restore after a right PIN gives it back."""

from __future__ import annotations

import pytest
from key_support import PIN, HilCA, enrol, fresh, payload, start_sign, status, type_pin

pytestmark = [pytest.mark.sim_only, pytest.mark.slow, pytest.mark.destructive]

_DURABLE = ("synced", "renamed")
_STAGES = ("begin", "torn", "synced", "renamed")


def _expected(before: int, point: int) -> int:
    save, stage = divmod(point - 1, 4)
    durable = _STAGES[stage] in _DURABLE
    if save == 0:
        return before - 1 if durable else before
    return 8 if durable else before - 1


def _sign_until_crash(sim, op, dev, pin):
    call = start_sign(dev, payload("login"))
    op.wait_for_text("Connexion", timeout=10)
    op.press("D")
    type_pin(op, pin)
    sim.wait_exit(timeout=20)
    try:
        call.join(20)
    except Exception:  # the connection died with the device: that is the point
        pass


def test_power_cut_at_every_write_point_of_a_pin_check(new_sim, operator_for, connect):
    sim, op, dev = fresh(new_sim, operator_for, connect)
    enrol(dev, op, HilCA(), 0, "HIL Power")
    dev.close()
    checked = 0
    for pin, points in (("999999", range(1, 5)), (PIN, range(1, 9))):
        for k in points:
            op.close()
            sim.restart(crash_at=k, crash_tag="sig.pin:")
            dev = connect(sim.url)
            before = status(dev).pin_left
            _sign_until_crash(sim, op, dev, pin)
            dev.close()
            op.close()
            sim.restart(crash_at=None, crash_tag=None)
            dev = connect(sim.url)
            st = status(dev)  # the state always loads
            assert st.state == 1 and st.slots[0].cert, f"key state lost at point {k}"
            want = _expected(before, k)
            assert st.pin_left == want, (
                f"{'right' if pin == PIN else 'wrong'} PIN, crash at point {k}: "
                f"{before} -> {st.pin_left} tries, want {want}"
            )
            if st.pin_left < 8:  # back to 8 with a right PIN, no crash armed
                call = start_sign(dev, payload("login"))
                op.wait_for_text("Connexion", timeout=10)
                op.press("D")
                type_pin(op)
                call.join(30)
                assert status(dev).pin_left == 8
            dev.close()
            checked += 1
    assert checked == 12
