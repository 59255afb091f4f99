"""Issue 12, break 8 and the CLI's rules: no traceback, one line per failure, documented exit
statuses mapped in main(), one language (English), every secret prompt named in --help with a
non-interactive alternative, and no prompt without a terminal."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import socket
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from link_fakes import FakePort, hello_ok

from capkey._cli import __main__ as cli_main
from capkey._cli import util
from capkey.link import transport
from capkey.link.errors import LinkError
from capkey.link.transport import Frame, Kind

ROOT = Path(__file__).resolve().parents[2]
URL = "socket://127.0.0.1:4711"
STATUSES = {0: "success", 1: "refused", 2: "usage", 3: "device or link", 4: "unexpected",
            130: "cancelled"}


@pytest.fixture(autouse=True)
def _default_log_levels():
    """-v sets capkey's loggers; the tests after these see the defaults again."""
    yield
    for name in ("capkey", "capkey_dev"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`capkey ARGV` through main(): (exit status, stdout, stderr)."""
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as e:
        mp.setattr(sys, "argv", ["capkey", *argv])
        cli_main.main()
    out, err = capsys.readouterr()
    return e.value.code, out, err


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("Error: ")
    return err


@pytest.fixture
def device(monkeypatch):
    """A scripted device: `answers[command] = (status, payload)`."""
    answers = {0x01: (0, hello_ok()), 0x02: (0, b""), 0x05: (0, bytes(1024))}

    def handler(f: Frame):
        status, payload = answers.get(f.code, (LinkError.ERR.UNKNOWN_COMMAND, b""))
        return [Frame(Kind.RESPONSE, f.rid, status, payload)]

    monkeypatch.setattr(transport.serial, "serial_for_url", lambda url, **kw: FakePort(handler))
    monkeypatch.delenv("CAPKEY_DEVICE", raising=False)
    return answers


# -- exit statuses: documented, and mapped in main() ------------------------------------------------


def test_help_and_readme_document_the_exit_statuses(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    readme = (ROOT / "README.md").read_text().split("**Exit statuses**", 1)[1].split("\n\n")[0]
    readme = " ".join(readme.split())
    for code, word in STATUSES.items():
        assert re.search(rf"^\s+{code}\s+.*{word}", out, re.M | re.I), (code, out)
        assert re.search(rf"`{code}` {word}", readme, re.I), (code, readme)


def test_version(capsys):
    from importlib.metadata import version

    assert run(capsys, "--version")[:2] == (0, f"capkey {version('capkey')}\n")


def test_refused_code_exits_1_not_the_usage_status(capsys, tmp_path):
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"profile": "mc-cap-cvn16", "pan": "5413330089020011", "psn": 3,
                                "imk_label": "test-imk", "last_atc": 0}))
    status, _, err = run(capsys, "card", "verify", "--card-file", str(card), "--test-keys",
                         "--mode", "identify", "12345678")
    assert status == 1 and one_line(err) == "Error: code refused.\n"


def test_the_person_pressing_annuler_is_a_cancel(capsys, device):
    device[0x22] = (LinkError.ERR.DENIED, b"")
    status, _, err = run(capsys, "card", "wipe", "-d", URL)
    assert status == 130 and one_line(err) == "Error: the person refused on the device\n"


def test_ctrl_c_is_a_cancel(capsys, monkeypatch):
    def interrupted(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("capkey._cli.device.scan_devices", interrupted)
    status, out, err = run(capsys, "devices")
    assert (status, out) == (130, "")
    assert one_line(err.lstrip("\n")) == "Error: cancelled.\n"  # click ends the ^C line first


def test_a_wrong_pin_is_a_refusal_and_a_busy_device_a_device_error(capsys, device):
    device[0x23] = (LinkError.ERR.PIN_INVALID, b"\x02")
    status, _, err = run(capsys, "card", "code", "-d", URL, "--mode", "identify")
    assert status == 1 and one_line(err) == "Error: wrong PIN, 2 attempt(s) left\n"
    device[0x23] = (LinkError.ERR.BUSY, b"")
    status, _, err = run(capsys, "card", "code", "-d", URL, "--mode", "identify")
    assert status == 3 and "busy" in one_line(err)


def test_an_unexpected_error_is_one_line_and_the_traceback_only_with_v(capsys, monkeypatch):
    def bug(**kw):
        raise RuntimeError("boom\nand more")

    monkeypatch.setattr("capkey._cli.device.scan_devices", bug)
    status, _, err = run(capsys, "devices")
    assert status == 4
    assert one_line(err) == "Error: unexpected RuntimeError: boom (run with -v for details)\n"
    status, _, err = run(capsys, "-v", "devices")
    assert status == 4 and "Traceback" in err and "RuntimeError: boom" in err


# -- break 8 ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.sim_only
def test_sim_on_a_busy_port_is_one_line_and_exit_3(capsys, tmp_path):
    pytest.importorskip("capkey_dev.sim")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run(capsys, "sim", "--port", str(port), "--storage", str(tmp_path / "flash"))
    assert status == 3
    assert one_line(err).startswith(f"Error: the simulator exited with code 1 before listening on "
                                    f"127.0.0.1:{port}: OSError: [Errno 98] EADDRINUSE")


def test_screen_png_into_a_missing_folder_is_one_line(capsys, device):
    status, _, err = run(capsys, "screen", "-d", URL, "--png", "/no/such/dir/x.png")
    assert status == 2
    assert one_line(err) == "Error: cannot write /no/such/dir/x.png: No such file or directory.\n"


@pytest.mark.parametrize("argv", [["audit", "--db", "{db}", "verify"],
                                  ["audit", "--db", "{db}", "list"],
                                  ["admin", "--db", "{db}", "show", "C1"]])
def test_read_commands_refuse_a_missing_database_instead_of_making_one(capsys, tmp_path, argv):
    db = tmp_path / "typo.db"
    status, out, err = run(capsys, *(a.format(db=db) for a in argv))
    assert status == 2 and one_line(err) == f"Error: no database at {db} (--db, or $CAPKEY_DB).\n"
    assert not db.exists() and "intact" not in out


@pytest.mark.parametrize("limit", ["-5", "0"])
def test_audit_list_limit_must_be_positive(capsys, tmp_path, limit):
    db = tmp_path / "bank.db"
    assert run(capsys, "admin", "--db", str(db), "create-subscription", "C1")[0] == 0
    status, out, err = run(capsys, "audit", "--db", str(db), "list", "--limit", limit)
    assert status == 2 and "Invalid value for '--limit'" in err and out == ""


# -- secrets: named in --help, taken from a file or the environment, never asked without a terminal


@pytest.mark.parametrize("argv,named", [
    (["card", "personalise"], ["card's PIN", "--pin-file"]),
    (["cert", "ca", "init"], ["CA password", "$CAPKEY_CA_PASSWORD"]),
    (["cert", "enrol"], ["CA password", "$CAPKEY_CA_PASSWORD", "PIN"]),
    (["cert", "issued"], ["CA password", "$CAPKEY_CA_PASSWORD"]),
])
def test_help_names_the_prompt_and_its_alternative(argv, named):
    text = " ".join(CliRunner().invoke(cli_main.cli, [*argv, "--help"]).output.split())
    for words in named:
        assert words in text, (words, text)


def _personalise(pin_file: Path | None = None) -> list[str]:
    argv = ["card", "personalise", "-d", URL, "--profile", "visa-dpa-cvn10", "--pan",
            "4761739001010010", "--psn", "1", "--test-keys"]
    return argv + (["--pin-file", str(pin_file)] if pin_file else [])


def test_no_terminal_no_secret_given_is_one_line_exit_2_without_getpass(capsys, device, tmp_path,
                                                                         monkeypatch):
    monkeypatch.delenv("CAPKEY_CA_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # a script's stdin, not a terminal
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a GetPassWarning fails the test
        status, _, err = run(capsys, *_personalise())
        assert status == 2 and "--pin-file" in one_line(err) and "no terminal" in err
        status, _, err = run(capsys, "cert", "ca", "init", "--ca", str(tmp_path / "ca"),
                             "--name", "B")
        assert status == 2 and "$CAPKEY_CA_PASSWORD" in one_line(err)


def test_the_pin_from_a_file_or_from_the_terminal(capsys, device, tmp_path, monkeypatch):
    device[0x21] = (0, b"")
    pin_file = tmp_path / "pin"
    pin_file.write_text("73915286\n")
    assert run(capsys, *_personalise(pin_file))[:2] == (
        0, "Card personalised (visa-dpa-cvn10, PAN ************0010, PSN 01).\n")
    monkeypatch.setattr(util, "stdin_is_terminal", lambda: True)
    result = CliRunner().invoke(cli_main.cli, _personalise(), input="73915286\n73915286\n")
    assert result.exit_code == 0, result.output
    assert "Card's PIN: \nRepeat the card's PIN: \n" in result.output


# -- one language: the CLI speaks English ----------------------------------------------------------

# The device's and the portal's own words, quoted by the CLI so that a person finds them.
_THEIR_WORDS = ("Identifiant client", "Numéro Utilisateur", "Choisir la fonction", "Lecteur PC/SC")
_FRENCH = re.compile(r"[àâçéèêëîïôûùœ«»]|\b(?:le|la|les|des|du|une|est|pas|sur|avec|pour|aucun|"
                     r"carte|appareil|erreur|annulé)\b", re.I)


def _strings(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


@pytest.mark.parametrize("path", sorted([*(ROOT / "host/capkey/_cli").glob("*.py"),
                                         *(ROOT / "host/dev/capkey_dev/cli").glob("*.py")]),
                         ids=lambda p: p.name)
def test_cli_messages_are_english(path):
    french = []
    for line, text in _strings(path):
        for words in _THEIR_WORDS:
            text = text.replace(words, "")
        if _FRENCH.search(text):
            french.append((line, text))
    assert not french, french
