"""Helpers of the certificate key HIL tests (hil_tests/test_key_*.py): the link commands of
firmware/apps/key.py (docs/protocol.md, "Certificate key commands"), the keypad dialogues, a
throw-away test CA, and signature checks with `cryptography`."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cap_support import InThread, home
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from capkey.cert.attestation import Attestation
from capkey.link.errors import ProtocolError

STATUS = 0x40
GENERATE = 0x41
LOAD_CERT = 0x42
SIGN = 0x43
ATTESTATION_KEY = 0x44
DELETE = 0x45
READ_CERT = 0x46
CHANGE_PIN = 0x47
UNBLOCK_PIN = 0x48

PIN = "123456"
PUK = "87654321"
FACTORY, ACTIVE = 0, 1
PERSON_TIMEOUT = 30.0

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "docs" / "vectors" / "payloads.json").read_text())


def payload(name: str) -> bytes:
    for v in VECTORS["valid"]:
        if v["name"] == name:
            return bytes.fromhex(v["hex"])
    raise KeyError(name)


def display(name: str) -> list[str]:
    for v in VECTORS["valid"]:
        if v["name"] == name:
            return v["display"]
    raise KeyError(name)


def sim_kwargs() -> dict:
    """Simulator arguments of the key tests' own simulators: the Pico profile (190 KB heap), like
    the session's simulator. The simulator runs the firmware as .mpy files and the apps load their
    heavy modules only while a flow runs (firmware/ondemand.py), so both apps fit.
    CAPKEY_TEST_SIM_HEAP=bytes sets the heap instead, and CAPKEY_TEST_SIM_ROOT=dir runs the
    simulator from another tree."""
    heap = os.environ.get("CAPKEY_TEST_SIM_HEAP")
    root = os.environ.get("CAPKEY_TEST_SIM_ROOT")
    kwargs: dict = {"heap": int(heap)} if heap else {}
    if root:
        kwargs["root"] = root
    return kwargs


@dataclass
class Slot:
    slot: int
    key: bool
    cert: bool
    public_key: bytes | None
    subject: bytes | None


@dataclass
class KeyState:
    state: int
    pin_left: int
    pin_now: int
    puk_left: int
    puk_now: int
    slots: list[Slot]

    @classmethod
    def parse(cls, p: bytes) -> KeyState:
        assert p[0] == 1, "KEY_STATUS version"
        state, pin_left, pin_now, puk_left, puk_now, n = p[1:7]
        pos = 7
        slots = []
        for _ in range(n):
            slot, flags = p[pos], p[pos + 1]
            pos += 2
            pub = subject = None
            if flags & 1:
                pub = p[pos : pos + 65]
                pos += 65
            if flags & 2:
                ln = int.from_bytes(p[pos : pos + 2], "big")
                subject = p[pos + 2 : pos + 2 + ln]
                pos += 2 + ln
            slots.append(Slot(slot, bool(flags & 1), bool(flags & 2), pub, subject))
        assert pos == len(p), "KEY_STATUS: trailing bytes"
        return cls(state, pin_left, pin_now, puk_left, puk_now, slots)


def status(device) -> KeyState:
    return KeyState.parse(device.call(STATUS))


def ensure_key_app(device) -> None:
    info = device.info()
    apps = [name for name, _ in info.apps]
    assert "key" in apps, (
        f"the certificate key app is not installed on the device (apps: {apps}, heap "
        f"{info.heap_total} bytes): on the simulator see key_support.sim_kwargs()"
    )


class KeyBoard:
    """A device whose certificate key is at its first use (FACTORY): `dev` (a connection), `op`
    (the operator at its keypad) and power_cycle(), which switches it off and on and connects
    again (`dev` is then a new connection). Made by the key_board fixture (conftest.py)."""

    def __init__(self, op, dev, cycle):
        self.op = op
        self.dev = dev
        self._cycle = cycle

    def power_cycle(self):
        """Off, on, a new connection (also returned)."""
        self.dev = self._cycle(self.dev)
        return self.dev


WRONG_PUKS = ("00000000", "11111111")  # two guesses: at most one of them is the PUK


def wait_any(op, texts, timeout: float = 10.0) -> str:
    """Waits until one of `texts` is on the screen; returns the screen's text."""
    deadline = time.monotonic() + timeout
    while True:
        shown = op.screen_text()
        if any(t in shown for t in texts):
            return shown
        assert time.monotonic() < deadline, f"none of {texts} on the screen: {shown}"
        time.sleep(0.05)


def puk_attempt(dev, op, puk: str, outcomes, new_pin: str = "111111") -> InThread:
    """UNBLOCK_PIN with `puk` and a new PIN typed on the keypad, then OK on the notice that ends
    it (one of `outcomes`: the answer then leaves at once instead of after the notice's time);
    returns the running call."""
    call = InThread(dev.call, UNBLOCK_PIN, b"", timeout=PERSON_TIMEOUT)
    op.wait_for_text("Code PUK", timeout=10)
    op.press(puk + "D")
    op.wait_for_text("Nouveau code PIN")
    op.press(new_pin + "D")
    op.wait_for_text("Confirmez")
    op.press(new_pin + "D")
    wait_any(op, outcomes)
    op.press("D")
    return call


def wipe_keys(board: KeyBoard) -> None:
    """Brings a board's certificate key back to FACTORY the way a person would: eight wrong PUKs
    (MENU's unblock over the link, UNBLOCK_PIN), with a power cycle after every three (they lock
    until the next power-up); the eighth wipes every key and certificate. Nothing to do when it
    is at FACTORY already."""
    failures = 0
    guess = 0
    while status(board.dev).state != FACTORY:
        if failures == 3:
            board.power_cycle()
            failures = 0
        call = puk_attempt(board.dev, board.op, WRONG_PUKS[guess],
                           ("incorrect", "effacés", "débloqué", "débranchez"))
        try:
            call.join(PERSON_TIMEOUT)
        except ProtocolError:
            failures += 1
        else:  # the guess was the PUK: the other one is wrong
            guess = 1 - guess
    home(board.op, timeout=15)


def fresh(new_sim, operator_for, connect):
    """A simulator with empty flash (FACTORY key), its operator and a connection."""
    sim = new_sim(**sim_kwargs())
    op = operator_for(sim)
    dev = connect(sim.url)
    ensure_key_app(dev)
    return sim, op, dev


def menu_item(operator, label: str) -> None:
    """Opens the MENU (#) and picks the entry `label` by its number, moving the cursor down (B)
    until the entry scrolls into view."""
    operator.press("#")
    lines = operator.wait_for_text("Menu")
    for _ in range(12):
        m = re.search(r"(\d) " + re.escape(label), " ".join(lines))
        if m:
            operator.press(m.group(1))
            return
        operator.press("B")
        time.sleep(0.1)
        lines = operator.screen_lines()
    raise AssertionError(f"{label!r} not in the menu: {lines}")


def type_pin(operator, pin: str = PIN, title: str = "Code PIN") -> None:
    operator.wait_for_text(title, timeout=10)
    operator.press(pin)
    operator.wait_for_text("*" * len(pin))
    assert pin not in operator.screen_text(), "the PIN shows on the screen"
    operator.press("D")


def setup_and_generate(device, operator, slot: int, pin: str = PIN,
                       puk: str = PUK) -> tuple[Attestation, str]:
    """FACTORY device: GENERATE runs the first-use dialogue (PIN twice, PUK twice). Returns
    (attestation, PUK)."""
    call = InThread(device.call, GENERATE, bytes((slot,)), timeout=PERSON_TIMEOUT)
    operator.wait_for_text("Nouvelle clé", timeout=10)
    operator.press("D")
    operator.wait_for_text("Choisissez votre code PIN")
    operator.press(pin + "D")
    operator.wait_for_text("Confirmez le code PIN")
    operator.press(pin + "D")
    operator.wait_for_text("Choisissez votre code PUK")
    operator.press(puk)
    operator.wait_for_text("*" * len(puk))
    assert puk not in operator.screen_text(), "the PUK shows on the screen"
    operator.press("D")
    operator.wait_for_text("Confirmez le code PUK")
    operator.press(puk + "D")
    return Attestation(call.join(PERSON_TIMEOUT)), puk


def generate(device, operator, slot: int, pin: str = PIN) -> Attestation:
    call = InThread(device.call, GENERATE, bytes((slot,)), timeout=PERSON_TIMEOUT)
    operator.wait_for_text("Nouvelle clé", timeout=10)
    operator.press("D")
    type_pin(operator, pin)
    return Attestation(call.join(PERSON_TIMEOUT))


def delete(device, operator, slot: int, pin: str = PIN) -> None:
    call = InThread(device.call, DELETE, bytes((slot,)), timeout=PERSON_TIMEOUT)
    operator.wait_for_text("Supprimer", timeout=10)
    operator.press("D")
    type_pin(operator, pin)
    call.join(PERSON_TIMEOUT)


class HilCA:
    """A throw-away CA for these tests (the bank CA is capkey.cert.ca; its own HIL tests use it)."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "capkey HIL test CA")])

    def issue(self, point: bytes, cn: str) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .sign(self.key, hashes.SHA256())
        )


def load_cert(device, slot: int, cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = cert.public_bytes(Encoding.DER)
    device.call(LOAD_CERT, bytes((slot,)) + der)
    return der


def enrol(device, operator, ca: HilCA, slot: int, cn: str) -> bytes:
    """GENERATE (first use included) + certificate; returns the slot's public key."""
    st = status(device)
    if st.state == FACTORY:
        att, _ = setup_and_generate(device, operator, slot)
    else:
        if st.slots[slot].key:
            delete(device, operator, slot)
        att = generate(device, operator, slot)
    att.verify(ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), device.call(ATTESTATION_KEY)))
    load_cert(device, slot, ca.issue(att.public_key_bytes, cn))
    return att.public_key_bytes


def start_sign(device, data: bytes) -> InThread:
    return InThread(device.call, SIGN, data, timeout=PERSON_TIMEOUT)


def sign(device, operator, data: bytes, first_line: str, pin: str = PIN,
         pick: str | None = None) -> tuple[int, bytes]:
    call = start_sign(device, data)
    operator.wait_for_text(first_line, timeout=10)
    operator.accept()
    if pick is not None:
        operator.wait_for_text("Sélectionnez")
        operator.press(pick)
    type_pin(operator, pin)
    out = call.join(PERSON_TIMEOUT)
    assert len(out) == 65
    return out[0], out[1:]


def verify(point: bytes, data: bytes, sig: bytes) -> bool:
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    try:
        public.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
