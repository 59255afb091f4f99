"""capkey.link.card (CardClient) and `capkey card`: exact request bytes against a fake device, then end
to end against the simulator: personalise over the link, codes typed on the (simulated) keypad in
every mode, each accepted once by the verifier — codes the firmware actually produced."""

from __future__ import annotations

import json
import threading
import time

import pytest
from capkey_dev.demo import accept
from click.testing import CliRunner

from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend
from capkey.emv.profiles import MC_CAP_CVN16, VISA_DPA_CVN10
from capkey.emv.verifier import CapCard, InvalidCode, Mode, verify_cap
from capkey.link.card import (
    CMD_CARD_STATUS,
    CMD_GET_CODE,
    CMD_PERSONALISE,
    KEEPALIVE_WAITING_FOR_USER,
    CapMode,
    CardClient,
    CardState,
    CardStatus,
    get_code_payload,
)
from capkey.link.errors import PinInvalid, ProtocolError

# --- request bytes ------------------------------------------------------------------------------


def test_get_code_payloads():
    assert get_code_payload(CapMode.IDENTIFY) == b"\x01"
    assert get_code_payload(CapMode.RESPOND, challenge="78901234") == b"\x02\x0878901234"
    assert get_code_payload(CapMode.SIGN, challenge="2371", amount=125000, currency="EUR") == (
        b"\x03\x042371\x06125000\x03EUR"
    )
    assert get_code_payload(CapMode.TDS, fields=["1234", "3101234567"]) == b"\x04\x041234\x0a3101234567"


@pytest.mark.parametrize(
    "mode, kw",
    [
        (CapMode.IDENTIFY, {"challenge": "1"}),
        (CapMode.RESPOND, {}),
        (CapMode.RESPOND, {"challenge": "123456789"}),
        (CapMode.RESPOND, {"challenge": "12a"}),
        (CapMode.SIGN, {"challenge": "1"}),
        (CapMode.SIGN, {"challenge": "1", "amount": 0}),
        (CapMode.SIGN, {"challenge": "1", "amount": 5, "currency": "eur"}),
        (CapMode.TDS, {}),
        (CapMode.TDS, {"fields": ["1"] * 11}),
        (CapMode.TDS, {"fields": "1234"}),
    ],
)
def test_get_code_payload_refuses(mode, kw):
    with pytest.raises(ValueError):
        get_code_payload(mode, **kw)


def test_status_parsing():
    s = CardStatus.from_bytes(bytes([1, 2, 2, 3, 0x01, 0x02, 0x45, 1]) + b"541333******0011")
    assert s == CardStatus(CardState.PERSONALISED, 2, 2, 3, 0x102, 45, True, "541333******0011")
    assert CardStatus.from_bytes(bytes(8)).state is CardState.FACTORY
    with pytest.raises(ValueError):
        CardStatus.from_bytes(bytes(7))
    with pytest.raises(ValueError):
        CardStatus.from_bytes(bytes([9]) + bytes(7))


class FakeDevice:
    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def call(self, cmd, payload=b"", **kw):
        self.calls.append((cmd, bytes(payload)))
        return self.answers.pop(0)


def test_client_sends_exact_bytes():
    dev = FakeDevice([b"", bytes(8), b"33810243", b"12x"])
    c = CardClient(dev)
    c.personalise(bytearray(b"\xdf\x01\x01\x01"))
    assert c.status().state is CardState.FACTORY
    assert c.get_code(CapMode.RESPOND, challenge="1") == "33810243"
    with pytest.raises(ValueError):  # a reply that is not a code
        c.get_code(CapMode.IDENTIFY)
    assert dev.calls[:3] == [
        (CMD_PERSONALISE, b"\xdf\x01\x01\x01"),
        (CMD_CARD_STATUS, b""),
        (CMD_GET_CODE, b"\x02\x011"),
    ]


# --- against the simulator ----------------------------------------------------------------------

CARDS = {VISA_DPA_CVN10.name: ("4761739001010010", 1), MC_CAP_CVN16.name: ("5413330089020011", 3)}


@pytest.fixture(params=[VISA_DPA_CVN10, MC_CAP_CVN16], ids=lambda p: p.name)
def sim(request, tmp_path):
    sim_mod = pytest.importorskip("capkey_dev.sim")
    s = sim_mod.Simulator(tmp_path / "sim", register=False)
    try:
        s.start()
    except Exception as exc:  # pragma: no cover - environment without MicroPython
        pytest.skip(f"simulator does not start: {exc}")
    yield request.param, s
    s.stop()


class _Result:
    def __init__(self, exit_code, output):
        self.exit_code, self.output = exit_code, output


def _cli(*args, input=None):
    """Runs `capkey card ARGS` in process; CliFail becomes its exit status as in main(), any other
    exception is re-raised."""
    from capkey._cli.card import card
    from capkey._cli.util import CliFail

    r = CliRunner().invoke(card, list(args), input=input)
    if isinstance(r.exception, CliFail):
        return _Result(r.exception.status, r.output + str(r.exception))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return _Result(r.exit_code, r.output)


def _code_on_keypad(client: CardClient, keys_dev, pin: str, **kw) -> str:
    """get_code, with a second connection pressing OK (scrolled to the request's end, as a
    confirmation longer than the screen wants) then the PIN when the device waits."""
    pressed = threading.Event()

    def press():
        time.sleep(0.2)  # the request is on the screen
        accept(lambda: keys_dev.screen()[1], keys_dev.press)
        time.sleep(0.2)
        keys_dev.press(pin + "D")

    def on_keepalive(status):
        if status == KEEPALIVE_WAITING_FOR_USER and not pressed.is_set():
            pressed.set()
            threading.Thread(target=press, daemon=True).start()

    try:
        return client.get_code(on_keepalive=on_keepalive, timeout=20, **kw)
    finally:
        time.sleep(0.1)
        keys_dev.press("D")  # dismiss the code (or the message) as the person would


@pytest.mark.slow
@pytest.mark.sim_only
def test_personalise_code_verify_through_simulator(sim, tmp_path):
    from capkey.link.device import Device

    profile, s = sim
    pan, psn = CARDS[profile.name]
    card_file = tmp_path / "card.json"
    pin_file = tmp_path / "pin"
    pin_file.write_text("1234\n")
    r = _cli("personalise", "--device", s.url, "--profile", profile.name, "--pan", pan, "--psn", str(psn),
             "--test-keys", "--card-file", str(card_file), "--pin-file", str(pin_file))
    assert r.exit_code == 0, r.output
    assert json.loads(card_file.read_text())["last_atc"] == 0
    r = _cli("status", "--device", s.url)
    assert r.exit_code == 0 and f"{pan[:6]}******{pan[-4:]}" in r.output and "3/3" in r.output
    # A personalised card is not overwritten.
    r = _cli("personalise", "--device", s.url, "--profile", profile.name, "--pan", pan, "--psn", str(psn),
             "--test-keys", "--pin-file", str(pin_file))
    assert r.exit_code == 1 and "already personalised" in r.output

    backend = SoftwareIssuerBackend.for_tests()
    card = CapCard(profile, pan, psn, TEST_IMK_LABEL, 0)
    with Device.open(s.url) as dev, Device.open(s.url) as keys:
        client = CardClient(dev)
        requests = [
            (CapMode.IDENTIFY, {}, Mode.IDENTIFY, {}),
            (CapMode.RESPOND, {"challenge": "78901234"}, Mode.RESPOND, {"challenge": "78901234"}),
            (CapMode.SIGN, {"challenge": "23710189", "amount": 125000, "currency": "EUR"}, Mode.SIGN,
             {"challenge": "23710189", "amount": 125000}),
            (CapMode.TDS, {"fields": ["1234", "3101234567"]}, Mode.SIGN_TDS, {"tds": ["1234", "3101234567"]}),
        ]
        for expected_atc, (cmode, ckw, vmode, vkw) in enumerate(requests, start=1):
            code = _code_on_keypad(client, keys, "1234", mode=cmode, **ckw)
            atc = verify_cap(card, code, mode=vmode, key_backend=backend, **vkw)
            assert atc == expected_atc
            # The same code through the CLI (which keeps the floor in the card file), then replay.
            args = ["--mode", {Mode.IDENTIFY: "identify", Mode.RESPOND: "respond", Mode.SIGN: "sign",
                               Mode.SIGN_TDS: "tds"}[vmode]]
            if "challenge" in vkw:
                args += ["--challenge", vkw["challenge"]]
            if "amount" in vkw:
                args += ["--amount", str(vkw["amount"])]
            for f in vkw.get("tds", []):
                args += ["--field", f]
            r = _cli("verify", "--card-file", str(card_file), "--test-keys", *args, code)
            assert r.exit_code == 0 and f"ATC {atc}" in r.output, r.output
            r = _cli("verify", "--card-file", str(card_file), "--test-keys", *args, code)
            assert r.exit_code == 1 and "code refused" in r.output  # refused, not a usage error
            card = card.with_atc(atc)
            with pytest.raises(InvalidCode):
                verify_cap(card, code, mode=vmode, key_backend=backend, **vkw)

        # Wrong PIN: the device answers PIN_INVALID with the tries left; no code.
        with pytest.raises(PinInvalid) as info:
            _code_on_keypad(client, keys, "9999", mode=CapMode.IDENTIFY)
        assert info.value.attempts_remaining == 2
        assert client.status().tries == 2
        code = _code_on_keypad(client, keys, "1234", mode=CapMode.IDENTIFY)
        assert verify_cap(card, code, mode=Mode.IDENTIFY, key_backend=backend) == 6  # ATC 5 was the failed try
        assert client.status().tries == 3
        with pytest.raises(ProtocolError):
            client.apdu(bytes.fromhex("00A4040007A000000003800200"))  # PC/SC mode is off


def test_cli_new_imk_and_verify_with_wrapped_keys(tmp_path):
    """R18 path: the IMK only exists wrapped on disk; verify unwraps it with the KEK."""
    from cap_card_model import make_code

    from capkey.emv.issuer import unwrap_key

    kek = tmp_path / "kek.bin"
    kek.write_bytes(bytes(range(32)).hex().encode())
    imk_file = tmp_path / "imk.json"
    r = _cli("new-imk", "--kek-file", str(kek), "--label", "prod-1", "--out", str(imk_file))
    assert r.exit_code == 0, r.output
    doc = json.loads(imk_file.read_text())
    imk = unwrap_key(bytes(range(32)), bytes.fromhex(doc["wrapped"]))
    assert imk.hex() not in imk_file.read_text() and (imk_file.stat().st_mode & 0o077) == 0
    assert _cli("new-imk", "--kek-file", str(kek), "--out", str(imk_file)).exit_code == 1  # no overwrite

    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps({"profile": "mc-cap-cvn16", "pan": "5413330089020011", "psn": 3,
                                     "imk_label": "prod-1", "pin_try_limit": 3, "last_atc": 40}))
    code = make_code(MC_CAP_CVN16, "5413330089020011", 3, 41, Mode.RESPOND, challenge="5", imk=imk)
    keys = ["--imk-file", str(imk_file), "--kek-file", str(kek)]
    r = _cli("verify", "--card-file", str(card_file), *keys, "--mode", "respond", "--challenge", "5", code)
    assert r.exit_code == 0 and "ATC 41" in r.output, r.output
    assert json.loads(card_file.read_text())["last_atc"] == 41
    assert _cli("verify", "--card-file", str(card_file), *keys, "--mode", "respond", "--challenge", "5",
                code).exit_code == 1
    # The test key does not verify a production card; a wrong KEK does not unwrap.
    code = make_code(MC_CAP_CVN16, "5413330089020011", 3, 42, Mode.IDENTIFY, imk=imk)
    r = _cli("verify", "--card-file", str(card_file), "--test-keys", "--mode", "identify", code)
    assert r.exit_code == 1 and "prod-1" in r.output
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(32))
    r = _cli("verify", "--card-file", str(card_file), "--imk-file", str(imk_file), "--kek-file", str(bad),
             "--mode", "identify", code)
    assert r.exit_code == 1 and "unwrap" in r.output
    # Resync with two consecutive Identify codes far ahead.
    c1 = make_code(MC_CAP_CVN16, "5413330089020011", 3, 500, Mode.IDENTIFY, imk=imk)
    c2 = make_code(MC_CAP_CVN16, "5413330089020011", 3, 501, Mode.IDENTIFY, imk=imk)
    r = _cli("verify", "--card-file", str(card_file), *keys, "--mode", "identify", c1, "--resync", c2)
    assert r.exit_code == 0 and "ATC 501" in r.output, r.output
