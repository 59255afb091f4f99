"""Issue 12, break 1: `capkey -vv` must not write secrets to the log. The traffic logger redacts by
field type (capkey.link.transport.TRAFFIC_FIELDS, docs/protocol.md "Host logging"): the card key
and PIN block of PERSONALISE, the keys pressed, what the screen shows, the CAP code, VERIFY's PIN
block, APDU answers, and every PAN digit but the last 4.

The CLI runs in process with -vv over the personalise, status, code, press, screen, verify and
certificate flows, against a scripted device and against the simulator, and the captured log is
searched for each secret in every form an old log had it (text, hex, ASCII as hex): none."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from link_fakes import FakePort, hello_ok

from capkey._cli import __main__ as cli_main
from capkey.emv import tlv
from capkey.emv.issuer import TEST_IMK, TEST_IMK_LABEL, SoftwareIssuerBackend, personalisation_data
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.link import transport
from capkey.link.card import CardClient
from capkey.link.device import Device
from capkey.link.pcsc import LinkCard, VpcdClient
from capkey.link.transport import LOG_LEVEL_TRAFFIC, TRAFFIC_FIELDS, Frame, Kind, Transport

ROOT = Path(__file__).resolve().parents[2]
URL = "socket://127.0.0.1:4711"
PAN, PSN = "4761739001010010", 1
PIN = "73915286"
CODE = "48213906"
VERIFY_APDU = bytes.fromhex("0020008008") + bytes.fromhex("28" + PIN + "FFFFFF")
RECORD = bytes.fromhex("7012" "5A08" + PAN + "5F3401" "01" "9F1701" "03" "9000")


@pytest.fixture
def traffic(caplog):
    """The log the CLI's -vv turns on (nothing else raises a level); capkey's loggers back to the
    default afterwards."""
    yield caplog
    for name in ("capkey", "capkey_dev"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def card_secrets(pin: str = PIN) -> dict[str, str]:
    data = personalisation_data(SoftwareIssuerBackend.for_tests(), profile=VISA_DPA_CVN10,
                                imk_label=TEST_IMK_LABEL, pan=PAN, psn=PSN, pin=pin)
    fields = tlv.parse_dict(bytes(data))
    return {"the test IMK": TEST_IMK.hex(), "the card key": fields[0xDF02].hex(),
            "the PIN block": fields[0xDF03].hex(), "the PIN": pin, "the full PAN": PAN,
            "the PAN's first 6 digits, masked": PAN[:6] + "******"}


def assert_no_secret(log: str, secrets: dict[str, str]) -> None:
    low = log.lower()
    for name, secret in secrets.items():
        for form in (secret, secret.encode().hex()):
            assert form.lower() not in low, f"{name} ({form}) is in the log"


def capkey(*argv: str):
    result = CliRunner().invoke(cli_main.cli, list(argv), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


# -- the table -------------------------------------------------------------------------------------


def _documented_commands() -> dict[int, str]:
    text = (ROOT / "docs/protocol.md").read_text()
    found = {}
    for section in ("## System commands", "## Certificate key commands", "## CAP commands"):
        body = text.split(section, 1)[1].split("\n## ", 1)[0]
        for code, name in re.findall(r"^\| (0x[0-9A-F]{2}) \| ([A-Z_]+) \|", body, re.M):
            found[int(code, 16)] = name
    return found


def test_every_documented_command_has_a_line_in_the_table():
    documented = _documented_commands()
    assert len(documented) >= 20
    assert {c: f.name for c, f in TRAFFIC_FIELDS.items()} == documented


class ScriptedCard:
    """A device whose card answers what a personalised CAP card would."""

    def __init__(self):
        self.personalised = b""

    def handler(self, f: Frame):
        ok = lambda p=b"": [Frame(Kind.RESPONSE, f.rid, 0, p)]  # noqa: E731
        answers = {
            0x01: lambda: hello_ok(),
            0x05: lambda: bytes(1024) if f.payload == b"\x00" else f"Votre code\n\n{CODE}".encode(),
            0x06: lambda: b"",
            0x20: lambda: bytes((1, 1, 3, 3, 0, 5, 0x01, 0)) + (PAN[:6] + "******" + PAN[-4:]).encode(),
            0x21: lambda: b"",
            0x23: lambda: CODE.encode(),
            0x24: lambda: RECORD if f.payload[1] == 0xB2 else b"\x90\x00",
            0x25: lambda: b"\x3b\x06capkey",
        }
        if f.code == 0x21:
            self.personalised = f.payload
        if f.code not in answers:
            return [Frame(Kind.RESPONSE, f.rid, 0x04)]
        return ok(answers[f.code]())


@pytest.fixture
def scripted(monkeypatch):
    card = ScriptedCard()
    monkeypatch.setattr(transport.serial, "serial_for_url", lambda url, **kw: FakePort(card.handler))
    monkeypatch.setattr("capkey._cli.device.scan_devices", lambda **kw: [])
    monkeypatch.delenv("CAPKEY_DEVICE", raising=False)
    return card


def test_apdus_over_the_link_and_the_pcsc_bridge_keep_headers_and_status_words(scripted, caplog):
    caplog.set_level(LOG_LEVEL_TRAFFIC, logger="capkey")
    bridge = VpcdClient(LinkCard(CardClient(Device(Transport(FakePort(scripted.handler))))))
    assert bridge.handle(VERIFY_APDU) == b"\x90\x00"
    assert bridge.handle(bytes.fromhex("00B2010C00")) == RECORD
    assert_no_secret(caplog.text, {"the PIN": PIN, "the full PAN": PAN})
    assert "vpcd > 0020008008 <8 bytes redacted>" in caplog.text
    assert "vpcd > 00b2010c00" in caplog.text
    assert f"vpcd < <{len(RECORD) - 2} bytes redacted> SW 9000" in caplog.text
    assert "APDU: 0020008008 <8 bytes redacted>" in caplog.text


def test_an_unlisted_command_and_an_unknown_answer_are_redacted(caplog):
    caplog.set_level(LOG_LEVEL_TRAFFIC, logger="capkey")

    def handler(f: Frame):
        return [Frame(Kind.RESPONSE, f.rid, 0, hello_ok()) if f.code == 0x01 else
                Frame(Kind.RESPONSE, f.rid, 0, b"secret answer"),
                Frame(Kind.RESPONSE, 999, 0, b"stray answer")]

    assert Device(Transport(FakePort(handler))).call(0x7E, b"secret request") == b"secret answer"
    assert_no_secret(caplog.text, {"request": "secret", "answer": "stray"})
    assert "unlisted: <14 bytes redacted>" in caplog.text
    assert "unlisted: <13 bytes redacted>" in caplog.text
    assert "unlisted: <12 bytes redacted>" in caplog.text  # rid 999: no request of ours


# -- the CLI with -vv --------------------------------------------------------------------------------


def test_cli_vv_against_a_scripted_device_logs_frames_but_no_secret(scripted, traffic, tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    capkey("-vv", "card", "personalise", "-d", URL, "--profile", VISA_DPA_CVN10.name, "--pan", PAN,
           "--psn", str(PSN), "--test-keys", "--pin-file", str(pin_file))
    secrets = card_secrets()
    assert bytes.fromhex(secrets["the card key"]) in scripted.personalised  # it did cross the link
    capkey("-vv", "card", "status", "-d", URL)
    assert capkey("-vv", "card", "code", "-d", URL, "--mode", "respond",
                  "--challenge", "78901234").stdout.strip() == CODE
    assert CODE in capkey("-vv", "screen", "-d", URL).stdout
    capkey("-vv", "press", "-d", URL, PIN + "D")
    log = traffic.text
    assert_no_secret(log, {**secrets, "the code": CODE})
    for seen in ("SEND REQUEST", "PERSONALISE: <", "GET_CODE: <", "PRESS: <9 bytes redacted>",
                 "SCREEN: <", "PAN ************0010", "RECV RESPONSE"):
        assert seen in log  # the frames are in the log, their secrets are not


# -- the same against the simulator ------------------------------------------------------------------


class Person:
    """The person at the simulator's keypad, on a second connection, in a thread: waits for each
    text and presses the keys that go with it."""

    def __init__(self, url: str, steps: list[tuple[str, str]]):
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url, steps), daemon=True)
        self._thread.start()

    def _run(self, url, steps):
        try:
            with Device.open(url) as dev:
                for text, keys in steps:
                    deadline = time.monotonic() + 20
                    while text not in " ".join(dev.screen()[1]):
                        assert time.monotonic() < deadline, f"{text!r} never showed"
                        time.sleep(0.1)
                    dev.press(keys)
        except BaseException as exc:  # handed to the test in done()
            self.error = exc

    def done(self) -> None:
        self._thread.join(30)
        if self.error is not None:
            raise self.error


@pytest.fixture
def simulator(tmp_path):
    sim_mod = pytest.importorskip("capkey_dev.sim")
    s = sim_mod.Simulator(tmp_path / "sim", register=False)
    try:
        s.start()
    except sim_mod.SimulatorError as exc:  # pragma: no cover - no MicroPython here
        pytest.skip(f"simulator does not start: {exc}")
    yield s
    s.stop()


@pytest.mark.slow
@pytest.mark.sim_only
def test_cli_vv_against_the_simulator_logs_no_secret(simulator, traffic, tmp_path, monkeypatch):
    url = simulator.url
    monkeypatch.setenv("CAPKEY_CA_PASSWORD", "ca-Secret-4417")
    pin_file, card_file, ca = tmp_path / "pin", tmp_path / "card.json", str(tmp_path / "ca")
    pin_file.write_text(PIN + "\n")
    capkey("-vv", "card", "personalise", "-d", url, "--profile", VISA_DPA_CVN10.name, "--pan", PAN,
           "--psn", str(PSN), "--test-keys", "--pin-file", str(pin_file), "--card-file", str(card_file))
    capkey("-vv", "card", "status", "-d", url)
    person = Person(url, [("Code défi", "D"), ("Code PIN", PIN + "D")])
    code = capkey("-vv", "card", "code", "-d", url, "--mode", "respond",
                  "--challenge", "78901234").stdout.strip()
    person.done()
    assert code in capkey("-vv", "screen", "-d", url).stdout  # the code is still on the screen
    capkey("-vv", "press", "-d", url, "D")
    capkey("-vv", "card", "verify", "--card-file", str(card_file), "--test-keys", "--mode", "respond",
           "--challenge", "78901234", code)

    cert_pin, puk = "604172", "58301947"
    capkey("-vv", "cert", "ca", "init", "--ca", ca, "--name", "Banque Exemple")
    capkey("-vv", "cert", "provision", "-d", url, "--ca", ca)
    person = Person(url, [("Nouvelle clé", "D"), ("Choisissez votre code PIN", cert_pin + "D"),
                          ("Confirmez le code PIN", cert_pin + "D"),
                          ("Choisissez votre code PUK", puk + "D"),
                          ("Confirmez le code PUK", puk + "D")])
    capkey("-vv", "cert", "enrol", "-d", url, "--ca", ca, "--slot", "1", "--subscription", "123456789",
           "--user", "01")
    person.done()
    capkey("-vv", "cert", "list", "-d", url)

    log = traffic.text
    assert_no_secret(log, {**card_secrets(), "the code": code, "the key's PIN": cert_pin,
                           "the PUK": puk, "the CA password": "ca-Secret-4417"})
    for seen in ("PERSONALISE: <", "GET_CODE: <", "PRESS: <", "KEY_GENERATE", "KEY_LOAD_CERT"):
        assert seen in log
