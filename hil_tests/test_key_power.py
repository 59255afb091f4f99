"""Pulling the plug at every storage write point of the certificate key (simulator crash
injection, docs/architecture.md "Store", driven by cap_support.PowerCuts). After each cut the
device loads again and shows exactly the state of the writes that were durable: a PIN or PUK try
is spent once its pre-decrement is durable and never before, a restore or a new PIN counts only
once durable, a key is there and signs or is absent, a wipe once started is finished, and no
record ever reads as corrupt or as a factory device. Write points per flow (records "dev.secret",
"sig.dev", "sig.pin", "sig.slotN"; a save passes 4 points, a delete 2):

- first start (provisioning): 8, the device secret then the attestation key;
- first GENERATE (personalisation: the PIN and PUK chosen, then the key): 16, SETUP, the PIN
  pre-decrement, its restore, the slot;
- GENERATE 12 (pre-decrement, restore, slot), LOAD_CERT 4, SIGN 8 (pre-decrement, restore),
  DELETE 10 (pre-decrement, restore, delete), CHANGE_PIN 12 and UNBLOCK_PIN 12 (pre-decrement,
  restore, the new PIN);
- a wrong PIN (GENERATE, SIGN, DELETE, CHANGE_PIN) or PUK: 4, the pre-decrement;
- the last wrong PUK: 16, the PUK counter to 0, the 4 slots deleted, the state reset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from cap_support import PowerCuts, Write, dialogue, forget, sequences, write_points
from cryptography.hazmat.primitives.asymmetric import ec
from key_support import (
    ACTIVE,
    ATTESTATION_KEY,
    CHANGE_PIN,
    DELETE,
    FACTORY,
    GENERATE,
    PIN,
    PUK,
    SIGN,
    UNBLOCK_PIN,
    HilCA,
    fresh,
    generate,
    load_cert,
    payload,
    setup_and_generate,
    sign,
    status,
    verify,
)

from capkey.cert.attestation import Attestation
from capkey.link.errors import LinkError, PinInvalid, ProtocolError

pytestmark = [pytest.mark.sim_only, pytest.mark.slow, pytest.mark.destructive]

NEW_PIN = "24681357"
WRONG_PIN, WRONG_PUK = "999999", "00000000"
SECRET, DEV, PIN_REC = "dev.secret", "sig.dev", "sig.pin"
DATA = payload("login")


def slot_rec(slot: int) -> str:
    return f"sig.slot{slot}"


@dataclass(frozen=True)
class Key:
    """What the key shows in KEY_STATUS; `slots` has a letter per slot: "-" empty, "k" a key,
    "c" a key and its certificate. `pin` is the PIN that must sign (not in KEY_STATUS: tried)."""

    state: int = FACTORY
    pin_left: int = 8
    puk_left: int = 8
    slots: str = "----"
    pin: str = field(default=PIN, compare=False)


NEW = Key()  # a factory device
ENROLLED = Key(ACTIVE, slots="c---")


@dataclass
class Ctx:
    """What a flow and its checks know of the device every round starts from."""

    ca: HilCA
    known: dict[int, bytes] = field(default_factory=dict)  # slot -> public key
    attestation_key: bytes | None = None


def _key(dev) -> Key:
    st = status(dev)
    # a fresh power-up: 3 tries now, or fewer when fewer are left
    assert (st.pin_now, st.puk_now) == (min(st.pin_left, 3), min(st.puk_left, 3))
    slots = "".join("c" if s.cert else "k" if s.key else "-" for s in st.slots)
    return Key(st.state, st.pin_left, st.puk_left, slots)


def _tried(before: Key, right: bool, puk: bool = False) -> list[Write]:
    """The pre-decrement (saved before the PIN or PUK is looked at), and for a right one the
    restore."""
    name = "puk_left" if puk else "pin_left"
    writes = [Write(PIN_REC, replace(before, **{name: getattr(before, name) - 1}))]
    return writes + [Write(PIN_REC, replace(before, **{name: 8}))] if right else writes


# the requests with the person's part on the keypad (cap_support.dialogue)
def _sign(pin):
    return SIGN, DATA, [("Connexion", "D"), ("Code PIN", pin + "D")]


def _generate(pin):
    return GENERATE, b"\x01", [("Nouvelle clé", "D"), ("Code PIN", pin + "D")]


def _delete(pin):
    return DELETE, b"\x00", [("Supprimer", "D"), ("Code PIN", pin + "D")]


def _change(old):
    return CHANGE_PIN, b"", [("Code PIN actuel", old + "D"), ("Nouveau code PIN", NEW_PIN + "D"),
                             ("Confirmez", NEW_PIN + "D")]


def _unblock(puk):
    return UNBLOCK_PIN, b"", [("Code PUK", puk + "D"), ("Nouveau code PIN", NEW_PIN + "D"),
                              ("Confirmez", NEW_PIN + "D")]


_REFUSED = ("incorrect", "bloqué", "effacés")  # what a refusal's notice says


# -- the flows: flow(dev, op, point, ctx) -> what the device answered ----------------------
def _dialogue(request, notice=None):
    """Sends `request` and plays the person; the uncut round dismisses `notice`, shown after the
    writes (the reply would wait 3 s for it)."""

    def flow(dev, op, point, ctx):
        return dialogue(dev, op, *request, notice=notice if point.tag is None else None)

    return flow


def _first_generate(dev, op, point, ctx):
    return setup_and_generate(dev, op, 0)[0]


def _load_cert(dev, op, point, ctx):
    return load_cert(dev, 0, ctx.ca.issue(ctx.known[0], "HIL Power"))


# -- what the uncut round answers ------------------------------------------------------
def _refused(out, ctx) -> bool:  # one try of the 3 of this power-up spent
    return isinstance(out, PinInvalid) and out.attempts_remaining == 2


def _wiped(out, ctx) -> bool:  # the keys are wiped, and the reply says so
    return isinstance(out, ProtocolError) and (out.code, out.payload) == (
        LinkError.ERR.PIN_BLOCKED, b"\x03")


def _attested(out, ctx) -> bool:
    return _attests(out, ctx.attestation_key)


def _signed(out, ctx) -> bool:
    return out[0] == 0 and verify(ctx.known[0], DATA, out[1:])


def _done(out, ctx) -> bool:
    return not isinstance(out, Exception)


def _attests(att, key: bytes) -> bool:
    """The attestation (an Attestation or its bytes) verifies under the attestation key `key`."""
    att = att if isinstance(att, Attestation) else Attestation(att)
    att.verify(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key))
    return True


# -- after each cut: the exact state, then the device used ------------------------------------
def _power_cycle(cuts, dev):
    forget(dev, cuts.op)
    cuts.sim.restart()
    return cuts.connect(cuts.sim.url)


def _usable(cuts, dev, ca: HilCA, want: Key):
    """Proves the device usable in the state `want`: the enrolment of slot 0 completed from where
    it stands (first use, key, certificate; each attestation verified), then a signature with
    the PIN that must work, by the last slot with a certificate. Nothing while the PIN is
    blocked. -> the connection."""
    if want.pin_left == 0:
        return dev
    made = None
    if want.state == FACTORY:
        made = setup_and_generate(dev, cuts.op, 0)[0]
    elif want.slots == "----":
        made = generate(dev, cuts.op, 0, pin=want.pin)
    if made is not None:
        assert _attests(made, dev.call(ATTESTATION_KEY))
    for s in status(dev).slots:
        if s.key and not s.cert:
            load_cert(dev, s.slot, ca.issue(s.public_key, f"HIL Power {s.slot}"))
    if made is not None:
        # at the Pico's heap a SIGN in the power-up of a GENERATE is sometimes refused BUSY (a
        # MemoryError, none at 400 KB): the signature is made after a restart
        dev = _power_cycle(cuts, dev)
    certs = [s for s in status(dev).slots if s.cert]
    slot, sig = sign(dev, cuts.op, DATA, "Connexion", pin=want.pin,
                     pick=str(len(certs)) if len(certs) > 1 else None)
    assert slot == certs[-1].slot and verify(certs[-1].public_key, DATA, sig)
    return dev


def _check(cuts, ctx: Ctx, made_once: tuple[str, ...]):
    def check(dev, op, point, outcome):
        assert _key(dev) == point.state, f"point {point.number} ({point.tag})"
        slots = status(dev).slots
        for slot, pub in ctx.known.items():  # a key that stays is the same key
            assert not slots[slot].key or slots[slot].public_key == pub, f"slot {slot} changed"
        # a record made once (device secret, attestation key) that was durable at the cut is
        # kept, not made again: its sequence number is still 1
        flash = sequences(cuts.sim.storage)
        assert {name: flash.get(name) for name in made_once} == dict.fromkeys(made_once, 1)
        forget(_usable(cuts, dev, ctx.ca, point.state))

    return check


# -- the device every round starts from --------------------------------------------------
def _refuse(cuts, dev, n: int, request):
    """n refused tries, 3 per power-up (the next one would be refused before the PIN); -> the
    connection. One connection per power-up: the device gives each open one its frame buffers."""
    for i in range(n):
        if i and i % 3 == 0:
            dev = _power_cycle(cuts, dev)
        with pytest.raises(ProtocolError):
            dialogue(dev, cuts.op, *request, notice=_REFUSED)
    return dev


def _start(cuts, ctx: Ctx, start: str) -> tuple[Key, dict]:
    """The device of every round: "blank" (never started), "factory", "key" (slot 0 without a
    certificate), "enrolled", "blocked" (enrolled, PIN blocked), "last-puk" (enrolled, one PUK
    try left). -> (its state, its flash)."""
    dev = cuts.connect(cuts.sim.url)
    if start != "blank":
        ctx.attestation_key = dev.call(ATTESTATION_KEY)
    if start not in ("blank", "factory"):
        ctx.known[0] = setup_and_generate(dev, cuts.op, 0)[0].public_key_bytes
        if start != "key":
            load_cert(dev, 0, ctx.ca.issue(ctx.known[0], "HIL Power"))
        dev = _power_cycle(cuts, dev)  # the tries below in a fresh heap (see _usable)
    if start == "blocked":
        dev = _refuse(cuts, dev, 8, _sign(WRONG_PIN))
    elif start == "last-puk":
        dev = _refuse(cuts, dev, 7, _unblock(WRONG_PUK))
    before = _key(dev)
    forget(dev)
    return before, cuts.keep(blank=start == "blank")


@pytest.fixture
def cuts(new_sim, operator_for, connect):
    sim, op, dev = fresh(new_sim, operator_for, connect)
    dev.close()  # now, not in the background: the running device keeps buffers per connection
    return PowerCuts(sim, op, connect)


@dataclass(frozen=True)
class Case:
    """One flow, cut at each of its write points."""

    start: str  # the device every round starts from (_start)
    before: Key  # its state
    writes: Callable[[Key], list[Write]]  # the flow's writes, from the state before
    count: int  # its write points
    flow: Callable | None  # None: the first start is the flow
    answer: Callable[[object, Ctx], bool]  # what the uncut round answers
    made_once: tuple[str, ...] = ()


_WIPE = [Write(PIN_REC, NEW)]  # PUK counter 0 saved first: the next start finishes the wipe
_WIPE += [Write(slot_rec(i), NEW, delete=True) for i in range(4)] + [Write(PIN_REC, NEW)]

BLOCKED = replace(ENROLLED, pin_left=0)
CASES = {
    "provisioning": Case("blank", NEW, lambda b: [Write(SECRET, b), Write(DEV, b)], 8, None,
                         lambda out, ctx: out is None, made_once=(SECRET, DEV)),
    "first-generate": Case("factory", NEW, lambda b: [
        Write(PIN_REC, Key(ACTIVE)), *_tried(Key(ACTIVE), right=True),
        Write(slot_rec(0), Key(ACTIVE, slots="k---"))], 16, _first_generate, _attested),
    "generate": Case("enrolled", ENROLLED, lambda b: [
        *_tried(b, right=True), Write(slot_rec(1), replace(b, slots="ck--"))], 12,
        _dialogue(_generate(PIN)), _attested),
    "load-cert": Case("key", Key(ACTIVE, slots="k---"), lambda b: [Write(slot_rec(0), ENROLLED)],
                      4, _load_cert, _done),
    "sign": Case("enrolled", ENROLLED, lambda b: _tried(b, right=True), 8, _dialogue(_sign(PIN)),
                 _signed),
    "delete": Case("enrolled", ENROLLED, lambda b: [
        *_tried(b, right=True), Write(slot_rec(0), Key(ACTIVE), delete=True)], 10,
        _dialogue(_delete(PIN)), _done),
    "change-pin": Case("enrolled", ENROLLED, lambda b: [
        *_tried(b, right=True), Write(PIN_REC, replace(b, pin=NEW_PIN))], 12,
        _dialogue(_change(PIN), "modifié"), _done),
    "unblock-pin": Case("blocked", BLOCKED, lambda b: [
        *_tried(b, right=True, puk=True), Write(PIN_REC, replace(ENROLLED, pin=NEW_PIN))], 12,
        _dialogue(_unblock(PUK), "débloqué"), _done),
    "wrong-pin-generate": Case("enrolled", ENROLLED, lambda b: _tried(b, right=False), 4,
                               _dialogue(_generate(WRONG_PIN), _REFUSED), _refused),
    "wrong-pin-sign": Case("enrolled", ENROLLED, lambda b: _tried(b, right=False), 4,
                           _dialogue(_sign(WRONG_PIN), _REFUSED), _refused),
    "wrong-pin-delete": Case("enrolled", ENROLLED, lambda b: _tried(b, right=False), 4,
                             _dialogue(_delete(WRONG_PIN), _REFUSED), _refused),
    "wrong-pin-change": Case("enrolled", ENROLLED, lambda b: _tried(b, right=False), 4,
                             _dialogue(_change(WRONG_PIN), _REFUSED), _refused),
    "wrong-puk": Case("blocked", BLOCKED, lambda b: _tried(b, right=False, puk=True), 4,
                      _dialogue(_unblock(WRONG_PUK), _REFUSED), _refused),
    "last-wrong-puk": Case("last-puk", replace(ENROLLED, puk_left=1), lambda b: _WIPE, 16,
                           _dialogue(_unblock(WRONG_PUK), _REFUSED), _wiped),
}


@pytest.mark.parametrize("name", CASES)
def test_power_cut_at_every_write_point(cuts, name):
    case = CASES[name]
    ctx = Ctx(HilCA())
    before, flash = _start(cuts, ctx, case.start)
    assert before == case.before
    flow = None
    if case.flow is not None:
        def flow(dev, op, point):
            return case.flow(dev, op, point, ctx)
    points = write_points(before, flash, case.writes(before))
    cut, outcome = cuts.run(points, flow, _check(cuts, ctx, case.made_once))
    assert cut == case.count
    assert case.answer(outcome, ctx), outcome
