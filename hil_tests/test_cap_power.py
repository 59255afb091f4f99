"""Pulling the plug at every storage write point of the soft card (simulator crash injection,
docs/architecture.md "Store", driven by cap_support.PowerCuts): after each cut the card loads
again and shows exactly the state of the writes that were durable, so a PIN decrement that is
lost, a try given back, an ATC that goes back or a lost "ARQC outstanding" flag fails the test.

- a code with the right PIN: 20 points, 5 saves of "cap_state" (GPO, VERIFY pre-decrement,
  restore, ARQC, closing AAC); with a wrong PIN: 8 (GPO, pre-decrement);
- PERSONALISE: 8 ("cap_state", then "cap_card": the card is factory or whole, never half);
- WIPE: 4 (delete "cap_card", then "cap_state").

After every cut a second PERSONALISE is refused unless the card is factory, and a code with the
right PIN verifies at exactly the next ATC."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from cap_support import (
    PANS,
    PERSONALISE,
    PIN,
    PowerCuts,
    Write,
    backend,
    flash_records,
    forget,
    get_code,
    personalisation_frame,
    personalise,
    status,
    wipe_if_needed,
    write_points,
)

from capkey.emv.issuer import TEST_IMK_LABEL
from capkey.emv.profiles import profile_by_id
from capkey.emv.verifier import CapCard, Mode, verify_cap
from capkey.link.errors import LinkError, PinInvalid, ProtocolError

pytestmark = [pytest.mark.sim_only, pytest.mark.slow]

STATE, CARD = "cap_state", "cap_card"  # the card's records (applets/emv_card.py)
_ARQC_OPEN, _NOT_ONLINE = 1, 2  # cap_state flags
TEST_CARD = CapCard(profile_by_id(1), PANS[1], 1, TEST_IMK_LABEL, last_atc=0, pin_try_limit=3)


@dataclass(frozen=True)
class Card:
    """What the card shows: CARD_STATUS (state 0 factory, 1 personalised), and the flags of its
    state record, read from flash (only the next transaction's CVR reveals them)."""

    state: int
    atc: int = 0
    tries: int = 0
    flags: int = 0


FACTORY = Card(0)
NEW = Card(1, atc=0, tries=3)  # the test card just personalised


def _card(sim, dev) -> Card:
    st = status(dev)
    assert st.state in (0, 1), "the card records no longer load"
    if st.state == 0:
        return FACTORY
    return Card(1, st.atc, st.tries, flash_records(sim.storage)[STATE][1][4])


def _code_writes(before: Card, right: bool) -> list[Write]:
    gpo = replace(before, atc=before.atc + 1)  # saved before the GPO answer leaves
    tried = replace(gpo, tries=before.tries - 1)  # saved before the PIN is compared
    if not right:
        return [Write(STATE, gpo), Write(STATE, tried)]
    arqc = replace(gpo, flags=before.flags | _ARQC_OPEN | _NOT_ONLINE)  # before the ARQC leaves
    return [Write(STATE, gpo), Write(STATE, tried), Write(STATE, gpo), Write(STATE, arqc),
            Write(STATE, replace(arqc, flags=arqc.flags & ~_ARQC_OPEN))]


def _check(sim):
    # after a cut: exactly the expected card, a second PERSONALISE accepted by a factory card
    # only, and a code the verifier accepts at exactly the next ATC
    def check(dev, op, point, outcome):
        assert _card(sim, dev) == point.state, f"point {point.number} ({point.tag})"
        frame = personalisation_frame()
        try:
            if point.state.state:  # a personalised card refuses a second personalisation
                with pytest.raises(ProtocolError) as exc:
                    dev.call(PERSONALISE, bytes(frame))
                assert exc.value.code == LinkError.ERR.ALREADY_PERSONALISED
            else:
                dev.call(PERSONALISE, bytes(frame))
        finally:
            frame[:] = bytes(len(frame))
        atc = point.state.atc
        code = get_code(dev, op)
        assert _verify(code, atc) == atc + 1, f"point {point.number}: next code's ATC"

    return check


def _verify(code: str, last_atc: int) -> int:
    return verify_cap(TEST_CARD.with_atc(last_atc), code, mode=Mode.IDENTIFY,
                      key_backend=backend())


@pytest.fixture
def cuts(new_sim, operator_for, connect):
    sim = new_sim()
    return PowerCuts(sim, operator_for(sim), connect)


def _start(cuts, personalised: bool) -> dict:
    """The card every round starts from (factory or just personalised); -> its flash."""
    dev = cuts.connect(cuts.sim.url)
    if personalised:
        personalise(dev, cuts.op)
    assert _card(cuts.sim, dev) == (NEW if personalised else FACTORY)
    forget(dev)
    return cuts.keep()


@pytest.mark.parametrize(("pin", "count"), [(PIN, 20), ("9999", 8)], ids=["right", "wrong"])
def test_power_cut_at_every_write_point_of_a_code(cuts, pin, count):
    flash = _start(cuts, personalised=True)
    points = write_points(NEW, flash, _code_writes(NEW, right=pin == PIN))
    # the uncut round's "Code PIN incorrect" is dismissed: the reply would wait 3 s for it
    notice = None if pin == PIN else "incorrect"

    def flow(dev, op, point):
        return get_code(dev, op, pin, notice if point.tag is None else None)

    cut, outcome = cuts.run(points, flow, _check(cuts.sim))
    assert cut == count
    if pin == PIN:
        assert _verify(outcome, 0) == 1
    else:
        assert isinstance(outcome, PinInvalid) and outcome.attempts_remaining == 2


def test_power_cut_at_every_write_point_of_personalise(cuts):
    flash = _start(cuts, personalised=False)
    # the state record alone is ignored: the card is factory until its card record is durable
    writes = [Write(STATE, FACTORY), Write(CARD, NEW)]
    cut, outcome = cuts.run(write_points(FACTORY, flash, writes),
                            lambda dev, op, _: personalise(dev, op), _check(cuts.sim))
    assert cut == 8
    assert outcome == TEST_CARD


def test_power_cut_at_every_write_point_of_wipe(cuts):
    flash = _start(cuts, personalised=True)
    # the card record first: once it is gone the card is factory, whatever is left of its state
    writes = [Write(CARD, FACTORY, delete=True), Write(STATE, FACTORY, delete=True)]
    cut, _ = cuts.run(write_points(NEW, flash, writes), lambda dev, op, _: wipe_if_needed(dev, op),
                      _check(cuts.sim))
    assert cut == 4
