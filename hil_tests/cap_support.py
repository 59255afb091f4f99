"""Helpers of the CAP HIL tests (hil_tests/test_cap_*.py): link commands of apps/cap.py
(docs/protocol.md "CAP commands"), a test card from the test issuer, reading a code off the screen."""

from __future__ import annotations

import re
import shutil
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from capkey_dev.sim import SimulatorError

from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend, personalisation_data
from capkey.emv.profiles import CapProfile, profile_by_id
from capkey.emv.verifier import CapCard
from capkey.link.errors import LinkError

CARD_STATUS = 0x20
PERSONALISE = 0x21
WIPE = 0x22
GET_CODE = 0x23
APDU = 0x24
CARD_RESET = 0x25

PIN = "1234"
PANS = {1: "4761739001010010", 2: "5413330089020011"}


@dataclass
class Status:
    state: int
    profile: int
    tries: int
    limit: int
    atc: int
    psn: int
    pcsc: int
    pan: str

    @classmethod
    def parse(cls, p: bytes) -> Status:
        return cls(p[0], p[1], p[2], p[3], int.from_bytes(p[4:6], "big"), p[6], p[7], p[8:].decode())


def status(device) -> Status:
    return Status.parse(device.call(CARD_STATUS))


class InThread:
    """Runs a blocking device call in a thread while the test, on another connection, is the
    person at the keypad."""

    def __init__(self, fn, *args, **kwargs):
        self.result = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self._t.start()

    def _run(self, fn, args, kwargs):
        try:
            self.result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test in join()
            self.error = exc

    def join(self, timeout: float = 30.0):
        self._t.join(timeout)
        if self._t.is_alive():
            raise AssertionError("the device call did not end")
        if self.error is not None:
            raise self.error
        return self.result


def wipe_if_needed(device, operator) -> None:
    if status(device).state == 0:
        return
    call = InThread(device.call, WIPE, b"", timeout=30)
    try:
        operator.wait_for_text("Effacer la carte")
    except AssertionError:
        call.join(1)  # the device's refusal explains more than the screen
        raise
    operator.press("D")
    call.join()


def personalise(device, operator, profile_id: int = 1, psn: int = 1, limit: int = 3) -> CapCard:
    """Factory state (wiping with a keypad confirmation if needed), then the test card."""
    wipe_if_needed(device, operator)
    backend = SoftwareIssuerBackend.for_tests()
    profile: CapProfile = profile_by_id(profile_id)
    data = personalisation_data(backend, profile=profile, imk_label=TEST_IMK_LABEL,
                                pan=PANS[profile_id], psn=psn, pin=PIN, pin_try_limit=limit)
    try:
        device.call(PERSONALISE, bytes(data))
    finally:
        data[:] = bytes(len(data))
    return CapCard(profile, PANS[profile_id], psn, TEST_IMK_LABEL, last_atc=0, pin_try_limit=limit)


def backend() -> SoftwareIssuerBackend:
    return SoftwareIssuerBackend.for_tests()


def read_code(operator, timeout: float = 5.0) -> str:
    """The code shown under "Votre code"."""
    lines = operator.wait_for_text("Votre code", timeout)
    for line in lines:
        s = line.strip()
        if re.fullmatch(r"\d{1,8}", s):
            return s
    raise AssertionError(f"no code on the screen: {lines}")


def type_pin(operator, pin: str = PIN) -> None:
    operator.wait_for_text("Code PIN")
    operator.press(pin + "D")


def home(operator, timeout: float = 5.0, key: str = "D") -> None:
    """Presses `key` until the home screen shows: OK leaves a code shown, ANNULER (*) any dialogue."""
    deadline = time.monotonic() + timeout
    while "Choisir la fonction" not in operator.screen_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"not back home: {operator.screen_lines()}")
        operator.press(key)
        time.sleep(0.1)


def personalisation_frame(profile_id: int = 1, psn: int = 1, limit: int = 3) -> bytearray:
    """The PERSONALISE payload of the test card (the caller wipes it), for a raw second call."""
    return personalisation_data(backend(), profile=profile_by_id(profile_id),
                                imk_label=TEST_IMK_LABEL, pan=PANS[profile_id], psn=psn, pin=PIN,
                                pin_try_limit=limit)


MODE_IDENTIFY = 1  # GET_CODE mode (docs/protocol.md)


def dialogue(device, operator, cmd: int, payload: bytes = b"", steps=(), notice=None,
             timeout: float = 30.0) -> bytes:
    """Sends `cmd` and plays the person's part: for each (text, keys) of `steps`, waits for the
    text on the screen, then presses the keys. `notice` (a text, or a tuple of texts): the notice
    the device shows before it replies ("Code PIN incorrect", "Code PIN modifié"), dismissed with
    OK so that the reply does not wait its 3 s. -> the reply; a refusal raises."""
    call = InThread(device.call, cmd, payload, timeout=timeout)
    for text, keys in steps:
        operator.wait_for_text(text, timeout=10)
        operator.press(keys)
    if notice is not None:
        texts = (notice,) if isinstance(notice, str) else notice
        deadline = time.monotonic() + 10
        while not any(t in operator.screen_text() for t in texts):
            assert time.monotonic() < deadline, f"none of {texts} on the screen: " \
                f"{operator.screen_lines()}"
            time.sleep(0.05)
        operator.press("D")
    return call.join(timeout)


def get_code(device, operator, pin: str = PIN, notice=None) -> str:
    """GET_CODE in Identify mode: the person approves on the keypad and types `pin`."""
    steps = [("Identification", "D"), ("Code PIN", pin + "D")]
    return dialogue(device, operator, GET_CODE, bytes((MODE_IDENTIFY,)), steps, notice).decode()


# -- power cuts: every storage write point of a flow, one per simulator run ---------------------
# docs/architecture.md, "Store": save() passes begin, torn, synced, renamed (durable from "synced":
# load() rolls a complete new copy forward); delete() passes delete, deleted (gone at "deleted").
_STAGES = {False: ("begin", "torn", "synced", "renamed"), True: ("delete", "deleted")}
_DURABLE = ("synced", "renamed", "deleted")
_PLUG = re.compile(r"plug pulled at write point (\S+)")


@dataclass(frozen=True)
class Write:
    """One store.save (or store.delete) of a flow and what the device must show once it is
    durable."""

    record: str
    state: object
    delete: bool = False


@dataclass(frozen=True)
class Point:
    """A write point: `number` counts from 1 like CAPKEY_CRASH_AT; after a cut there the device
    must show `state` and the flash hold `flash` (record -> sequence number of its durable copy).
    The round that runs the flow uncut has tag None and the flow's final state."""

    number: int
    tag: str | None
    state: object
    flash: dict


def write_points(before, flash: dict, writes: list[Write]) -> list[Point]:
    """The write points the flow passes, in order, then its uncut end."""
    points = []
    state, seqs = before, dict(flash)
    for w in writes:
        done = dict(seqs)
        if w.delete:
            done.pop(w.record, None)
        else:  # the sequence number grows by one per save; a deleted record starts again at 1
            done[w.record] = seqs.get(w.record, 0) + 1
        for stage in _STAGES[w.delete]:
            durable = stage in _DURABLE
            points.append(Point(len(points) + 1, f"{w.record}:{stage}",
                                w.state if durable else state, done if durable else seqs))
        state, seqs = w.state, done
    return points + [Point(len(points) + 1, None, state, seqs)]


def _flash_copy(path: Path):
    # (sequence, data) of one record file, False if it is not one complete valid record
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < 16:
        return False
    magic, version, _, seq, length, crc = struct.unpack_from(">HBBIII", raw)
    if (magic, version, length) != (0x434B, 1, len(raw) - 16):
        return False
    if zlib.crc32(raw[16:], zlib.crc32(raw[:12])) != crc:
        return False
    return seq, raw[16:]


def flash_records(folder: Path) -> dict[str, tuple[int, bytes]]:
    """The records a device would load from its flash `folder` after a cut: name -> (sequence,
    data), by the store's rules (a complete `name.new` newer than `name` is rolled forward, a torn
    one is ignored). A record with no valid copy fails the test: it would load as CorruptRecord."""
    out = {}
    names = {p.name.removesuffix(".new") for p in folder.iterdir() if not p.name.startswith(".")}
    for name in sorted(names):
        cur, new = _flash_copy(folder / name), _flash_copy(folder / f"{name}.new")
        best = new if new and (not cur or new[0] > cur[0]) else cur
        assert best is not False, f"record {name!r} is corrupt on flash"
        if best is not None:
            out[name] = best
    return out


def sequences(folder: Path) -> dict[str, int]:
    """flash_records(folder) reduced to each record's sequence number."""
    return {name: seq for name, (seq, _) in flash_records(folder).items()}


def forget(*conns) -> None:
    """Drops link connections to a simulator that is restarted. They close in a thread: pyserial's
    socket close sleeps 0.3 s, which would cost seconds per flow here. An Operator (conftest)
    keeps its Device in `_dev` and connects again on its next use."""
    for c in conns:
        dev = c
        if hasattr(c, "_dev"):
            dev, c._dev = c._dev, None
        if dev is not None:
            threading.Thread(target=dev.close, daemon=True).start()


class PowerCuts:
    """Pulls the plug of a simulator at each write point of a flow in turn.

    Every round starts from a copy of the same flash (`keep()`), so the state before the cut is
    known exactly and no round depends on another. Round k arms CAPKEY_CRASH_AT=k (every write
    point counts, no tag filter), runs the flow, and checks that the simulator died at the k-th
    expected tag and that the flash holds exactly the durable copies the model says; then it
    plugs the device back in and hands `check` the point (and its expected state). The last round
    runs the flow to its end with CAPKEY_CRASH_AT one past the last point, so a write point the
    model misses kills the device there and fails the test; its outcome is returned."""

    def __init__(self, sim, operator, connect):
        self.sim = sim
        self.op = operator
        self.connect = connect
        self.flash: Path | None = None

    def keep(self, blank: bool = False) -> dict:
        """Stops the simulator and keeps its flash as the start of every round (blank: an empty
        flash, a device never started); -> record -> sequence number."""
        forget(self.op)
        self.sim.stop()
        self.flash = self.sim.storage.with_name(self.sim.storage.name + "-start")
        shutil.rmtree(self.flash, ignore_errors=True)
        if blank:
            self.flash.mkdir()
        else:
            shutil.copytree(self.sim.storage, self.flash)
        return sequences(self.flash)

    def _start(self, crash_at: int) -> bool:
        # the flash back to the kept copy, the device plugged in: False if it died while booting
        sim = self.sim
        sim.kill()
        shutil.rmtree(sim.storage)
        shutil.copytree(self.flash, sim.storage)
        try:
            sim.restart(crash_at=crash_at, crash_tag=None)
        except SimulatorError:
            return False
        return True

    def run(self, points: list[Point], flow, check) -> tuple[int, object]:
        """flow(dev, op, point) drives the flow until it ends or the device dies (None: the boot
        is the flow; point.tag is None in the uncut round, the only one that may wait for what
        the screen shows after the writes); check(dev, op, point, outcome) judges the device
        after each cut and after the uncut round. -> (number of points cut, outcome of the uncut
        round: the flow's result or the LinkError it raised)."""
        cut = 0
        for p in points:
            try:
                outcome = self._round(p, flow, check)
            except Exception as exc:
                exc.add_note(f"in the round cut at point {p.number} ({p.tag or 'no cut'})")
                raise
            cut += p.tag is not None
        return cut, outcome

    def _round(self, p: Point, flow, check):
        # one round: the flow cut at p (uncut when p.tag is None), the device checked after
        sim, op = self.sim, self.op
        booted = self._start(p.number)
        outcome = None
        if booted and flow is not None:
            dev = self.connect(sim.url)
            try:
                outcome = flow(dev, op, p)
            except LinkError as exc:  # a refusal, or the connection died with the device
                outcome = exc
            forget(dev, op)
        if p.tag is None:
            assert booted and sim.running, f"the flow passed a write point after the " \
                f"{p.number - 1} expected: {self._pulled()}"
            sim.kill()  # an uncut flow is durable once it answered
        else:
            try:
                sim.wait_exit(10)
            except SimulatorError:
                raise AssertionError(f"the flow ended without passing point {p.number} "
                                     f"({p.tag})") from None
            assert self._pulled() == p.tag, f"point {p.number}: plug pulled at " \
                f"{self._pulled()}, expected {p.tag}; the simulator said:\n{sim.console[-1500:]}"
        flash = sequences(sim.storage)
        assert flash == p.flash, f"point {p.number} ({p.tag}): durable records {flash}, " \
            f"want {p.flash}"
        sim.restart(crash_at=None, crash_tag=None)
        dev = self.connect(sim.url)
        try:
            check(dev, op, p, outcome)
        finally:
            forget(dev, op)
        return outcome

    def _pulled(self) -> str | None:
        found = _PLUG.findall(self.sim.console)
        return found[-1] if found else None
