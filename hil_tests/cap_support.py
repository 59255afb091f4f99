"""Helpers of the CAP HIL tests (hil_tests/test_cap_*.py): link commands of apps/cap.py
(docs/protocol.md "CAP commands"), a test card from the test issuer, reading a code off the screen."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend, personalisation_data
from capkey.emv.profiles import CapProfile, profile_by_id
from capkey.emv.verifier import CapCard

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
