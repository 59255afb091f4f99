"""PC/SC end to end: the firmware's soft card (MicroPython) behind pcscd's vpcd reader, driven by
pyscard with the full CAP APDU sequence; the verifier accepts the codes it produces.

Needs pcscd with the vpcd driver (Debian: pcscd, vsmartcard-vpcd), pyscard and the MicroPython
unix port; skipped with the reason otherwise. Starts its own `pcscd -f` unless one is running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capkey.emv import hazmat as emv
from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend, personalisation_data
from capkey.emv.profiles import MC_CAP_CVN16, VISA_DPA_CVN10
from capkey.emv.verifier import CapCard, InvalidCode, Mode, verify_cap
from capkey.link.pcsc import CapReader, SoftCardProcess, VpcdClient, WrongPin

pytestmark = pytest.mark.pcsc

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = Path(sys.executable).with_name("micropython")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
READER = "Virtual PCD"
PIN = "1234"


def _missing() -> str | None:
    if shutil.which("pcscd") is None:
        return "pcscd is not installed (apt install pcscd)"
    if not VPCD_DRIVER.exists() or not Path("/etc/reader.conf.d/vpcd").exists():
        return "the vpcd driver is not installed (apt install vsmartcard-vpcd)"
    try:
        import smartcard  # noqa: F401
    except ImportError:
        return "pyscard is not installed"
    if not MICROPYTHON.exists():
        return "the MicroPython unix port is not installed in the venv"
    if not (ROOT / "firmware/applets/emv_card.py").exists():
        return "firmware/applets/emv_card.py does not exist yet"
    return None


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    if PCSCD_SOCKET.exists():
        yield None  # someone else's pcscd: use it, leave it alone
        return
    if os.geteuid() != 0:
        pytest.skip("pcscd is not running and starting it needs root here")
    log = open(tmp_path_factory.mktemp("pcscd") / "pcscd.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(["pcscd", "-f"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not PCSCD_SOCKET.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.skip(f"pcscd did not start (exit {proc.poll()})")
        time.sleep(0.05)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _reader(timeout: float = 15.0):
    from smartcard.System import readers

    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in readers() if str(r).startswith(READER)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no '{READER}' reader in {readers()}")
        time.sleep(0.1)


def _wait_card_gone(timeout: float = 5.0) -> None:
    """After a virtual card left, until pcscd saw it go (else it may power-cycle the next one in
    the middle of a transaction when it notices)."""
    from smartcard.Exceptions import CardConnectionException, NoCardException

    reader = _reader()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = reader.createConnection()
        try:
            conn.connect()
        except (NoCardException, CardConnectionException):
            return
        finally:
            conn.release()
        time.sleep(0.1)


def _connect(reader, timeout: float = 15.0):
    from smartcard.Exceptions import CardConnectionException, NoCardException

    deadline = time.monotonic() + timeout
    while True:
        conn = reader.createConnection()
        try:
            conn.connect()
            return conn
        except (NoCardException, CardConnectionException):
            conn.release()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(params=[VISA_DPA_CVN10, MC_CAP_CVN16], ids=lambda p: p.name)
def soft_card(request, tmp_path, pcscd):
    profile = request.param
    pan, psn = ("4761739001010010", 1) if profile is VISA_DPA_CVN10 else ("5413330089020011", 3)
    backend = SoftwareIssuerBackend.for_tests()
    data = personalisation_data(backend, profile=profile, imk_label=TEST_IMK_LABEL, pan=pan, psn=psn, pin=PIN)
    SoftCardProcess.personalise(tmp_path / "card", data)
    data[:] = bytes(len(data))
    card = SoftCardProcess(tmp_path / "card")
    client = VpcdClient(card)
    thread = client.start_thread()
    try:
        yield profile, CapCard(profile, pan, psn, TEST_IMK_LABEL, 0), backend
    finally:
        client.stop()
        thread.join(timeout=5)
        card.close()
        _wait_card_gone()


def test_cap_through_pcscd(soft_card):
    profile, card, backend = soft_card
    reader = _reader()
    conn = _connect(reader)
    try:
        _cap_session(profile, card, backend, reader, conn)
    finally:
        conn.release()


def _cap_session(profile, card, backend, reader, conn):
    assert bytes(conn.getATR()) == b"\x3b\x06capkey"

    # opensc-tool sees the same card through pcscd.
    if shutil.which("opensc-tool"):
        out = subprocess.run(["opensc-tool", "-r", str(reader), "-a"], capture_output=True, text=True, timeout=30)
        assert "3b:06:63:61:70:6b:65:79" in out.stdout.lower(), out.stdout + out.stderr

    def transmit(apdu: bytes) -> bytes:
        data, sw1, sw2 = conn.transmit(list(apdu))
        return bytes(data) + bytes([sw1, sw2])

    cap = CapReader(transmit)
    cap.select()
    assert cap.read_pin_tries() == 3

    # Respond over a challenge.
    r = cap.run(pin=PIN, un=emv.pack_bcd("78901234", 4))
    assert r.aid == profile.aid and r.atc == 1
    atc = verify_cap(card, str(r.otp), mode=Mode.RESPOND, challenge="78901234", key_backend=backend)
    assert atc == 1
    card = card.with_atc(atc)
    with pytest.raises(InvalidCode):  # replay
        verify_cap(card, str(r.otp), mode=Mode.RESPOND, challenge="78901234", key_backend=backend)

    # Sign with an amount.
    r = cap.run(pin=PIN, un=emv.pack_bcd("40960189", 4), amount=125000)
    atc = verify_cap(card, str(r.otp), mode=Mode.SIGN, challenge="40960189", amount=125000, key_backend=backend)
    card = card.with_atc(atc)

    # Wrong PIN: the card says how many tries are left, the session still consumed an ATC.
    with pytest.raises(WrongPin) as info:
        cap.run(pin="9999", un=emv.pack_bcd("1", 4))
    assert info.value.tries_left == 2
    cap.select()
    assert cap.read_pin_tries() == 2

    # Identify after the failed session: ATC skipped one value, still inside the window.
    r = cap.run(pin=PIN)
    assert r.atc == 4
    assert verify_cap(card, str(r.otp), mode=Mode.IDENTIFY, key_backend=backend) == 4
    cap.select()
    assert cap.read_pin_tries() == 3  # restored by the successful VERIFY


def _wait_text(dev, text: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = dev.screen()[1]
        if any(text in line for line in lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on the screen: {lines}")
        time.sleep(0.05)


def _home(dev, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while "Choisir la fonction" not in " ".join(dev.screen()[1]):
        if time.monotonic() > deadline:
            raise AssertionError(f"not back home: {dev.screen()[1]}")
        dev.press("D")
        time.sleep(0.1)


def test_device_card_through_pcscd(pcscd, tmp_path):
    """`capkey card pcsc --device URL`: the card of a (simulated) device, over the link APDU
    command, once the person switched "Lecteur PC/SC" on at the keypad."""
    from capkey.link.card import CardClient
    from capkey.link.device import Device
    from capkey.link.pcsc import LinkCard

    sim_mod = pytest.importorskip("capkey_dev.sim")
    sim = sim_mod.Simulator(tmp_path / "sim", register=False)
    sim.start()
    backend = SoftwareIssuerBackend.for_tests()
    pan, psn = "4761739001010010", 1
    try:
        with Device.open(sim.url) as dev, Device.open(sim.url) as keys:
            client = CardClient(dev)
            data = personalisation_data(backend, profile=VISA_DPA_CVN10, imk_label=TEST_IMK_LABEL, pan=pan,
                                        psn=psn, pin=PIN)
            client.personalise(data)
            _home(keys)
            keys.press("#")
            lines = _wait_text(keys, "Lecteur PC/SC")
            keys.press(next(line.split()[0] for line in lines if "Lecteur" in line))
            _wait_text(keys, "Activer")
            keys.press("D")
            _wait_text(keys, "activé")
            _home(keys)
            assert client.status().pcsc

            vpcd = VpcdClient(LinkCard(client))
            thread = vpcd.start_thread()
            try:
                conn = _connect(_reader())
                try:
                    assert bytes(conn.getATR()) == b"\x3b\x06capkey"

                    def transmit(apdu: bytes) -> bytes:
                        d, sw1, sw2 = conn.transmit(list(apdu))
                        return bytes(d) + bytes([sw1, sw2])

                    r = CapReader(transmit).run(pin=PIN, un=emv.pack_bcd("78901234", 4))
                finally:
                    conn.release()
            finally:
                vpcd.stop()
                thread.join(timeout=5)
                _wait_card_gone()
        card = CapCard(VISA_DPA_CVN10, pan, psn, TEST_IMK_LABEL, 0)
        assert verify_cap(card, str(r.otp), mode=Mode.RESPOND, challenge="78901234", key_backend=backend) == r.atc
    finally:
        sim.stop()
