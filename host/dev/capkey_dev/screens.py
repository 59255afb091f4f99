"""Pictures of the device's screens for docs/ui.md: every screen a person can meet, drawn by the
firmware in a fresh simulator driven over the link (PRESS, SCREEN and the host's commands, as
the HIL tests drive it), saved as PNG (the framebuffer 4x, `capkey.link.screen.to_png`).

    python -m capkey_dev.screens            # (re)writes docs/screens/<name>.png and the table of
                                            # docs/ui.md's "Screens" section  (make screens)
    python -m capkey_dev.screens --check    # exit 1 when either is out of date

The same firmware draws the same pixels and the PNG encoding has no date in it, so the pictures
are byte for byte the same from one run to the next: `--check` (hil_tests/test_screens.py)
fails when a firmware change altered a screen and `make screens` was not run. The table gives
each picture's rows of text as its alt text, and when a person meets the screen (SHOTS).
Nothing shown depends on chance: the CAP card has the test issuer's keys and a fixed PAN, codes
come from a fresh card's counter, the certificates' names are fixed. "Infos appareil" is left
out: its serial number and free heap differ from one simulator to another.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from capkey.cert import payload as P
from capkey.cert.ca import CertificateAuthority
from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend, personalisation_data
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.link.card import CapMode, CardClient
from capkey.link.device import Device
from capkey.link.errors import LinkError
from capkey.link.key import KeyClient, enrol
from capkey.link.screen import to_png
from capkey_dev.demo import Keypad
from capkey_dev.sim import ROOT, Simulator

FOLDER = ROOT / "docs" / "screens"
UI_DOC = ROOT / "docs" / "ui.md"
BEGIN = "<!-- screens: written by `make screens` (python -m capkey_dev.screens) -->"
END = "<!-- /screens -->"
SCALE = 4
CARD_PIN = "1234"
KEY_PIN = "135790"
KEY_PUK = "24680135"
PAN = "4970105558880011"
ORIGIN = "https://banque.example"
IBAN = "FR7630006000011234567890189"
_CHALLENGE = bytes(32)  # signed, never shown


@dataclass(frozen=True)
class Picture:
    """A screen as drawn: the PNG, and its rows of text (the picture's alt text in docs/ui.md)."""

    png: bytes
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Shot:
    """One picture: docs/screens/<name>.png, and when a person meets that screen (docs/ui.md)."""

    name: str
    when: str


#: Every picture, in the order a person meets them; docs/ui.md shows each with its line.
SHOTS = (
    Shot("choisir-la-fonction", "power-up and after every flow: the home screen"),
    Shot("menu", "`#` (MENU) at the home screen"),
    Shot("carte-non-personnalisee", "CODE or SIGN on a device whose CAP card is not personalised"),
    Shot("code-pin", "CODE (`A`): the card PIN, one `*` per digit"),
    Shot("cap-code", "the CAP code, after the right PIN, until OK or 60 s"),
    Shot("sign-menu", "SIGN (`B`): Réponse, Signature or Signer des données"),
    Shot("code-defi", "SIGN, Réponse or Signature: the challenge the bank's page shows"),
    Shot("montant", "SIGN, Signature: the amount, in cents as typed, shown with a comma"),
    Shot("donnee", "SIGN, Signer des données: the next data field, OK without digits ends"),
    Shot("operation-annulee", "ANNULER (`*`) in any dialogue, for 2 s"),
    Shot("carte-cap", "MENU, Carte CAP: the card's profile, PAN, PIN tries and counter"),
    Shot("lecteur-pcsc", "MENU, Lecteur PC/SC: the computer may talk to the card"),
    Shot("cap-demande", "a computer asks for a CAP code (`capkey card code`): what it asks"),
    Shot("code-pin-incorrect", "a wrong card PIN, with the tries left"),
    Shot("code-pin-bloque", "the card PIN blocked: the last try was wrong, or CODE afterwards"),
    Shot("cle-demande", "a computer asks for a new key (enrolment, `capkey cert enrol`)"),
    Shot("cle-choix-pin", "first enrolment: the person chooses the certificate PIN"),
    Shot("cle-choix-puk", "first enrolment: the person chooses the PUK, which unblocks the PIN"),
    Shot("certificats", "MENU, Certificats: the key slots and the PIN tries left"),
    Shot("cle-connexion", "a login signature (the signing agent): the site and the identity"),
    Shot("cle-choix-certificat", "several certificates: the person picks the one to sign with"),
    Shot("cle-code-pin", "the certificate PIN, under the certificate it unlocks"),
    Shot("cert-payment", "a payment signature: amount, payee's IBAN and name"),
    Shot("cle-code-puk", "MENU, Débloquer PIN: the PUK, then a new PIN"),
    Shot("mode-maintenance", "power-up with ANNULER and MENU held, or a confirmed request of "
                             "`capkey deploy`: no link, the REPL on USB (docs/boards.md)"),
)


class _Session:
    """A fresh simulator, a Keypad (PRESS/SCREEN) and a Device for the host's commands."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.sim = Simulator(folder / "flash", register=False)
        self.pictures: dict[str, Picture] = {}
        self._pool = ThreadPoolExecutor(max_workers=1)

    def __enter__(self) -> _Session:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.sim)
            self.keypad = Keypad(self.sim.url)
            stack.callback(self.keypad.close)
            self.device = stack.enter_context(Device.open(self.sim.url))
            stack.callback(self._pool.shutdown, wait=False, cancel_futures=True)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    # -- the person ------------------------------------------------------------------------

    def wait(self, words: str) -> None:
        self.keypad.wait_for(words, timeout=10.0)

    def press(self, keys: str, then: str | None = None) -> None:
        """Presses `keys`, then waits until `then` is on the screen."""
        self.keypad.press(keys)
        if then is not None:
            self.wait(then)

    def shot(self, name: str, words: str) -> None:
        """Waits until `words` is on the screen, then keeps it as the picture `name`."""
        self.wait(words)
        fb, lines = self.keypad.device.screen()
        self.pictures[name] = Picture(to_png(fb, scale=SCALE), tuple(lines))

    def home(self) -> None:
        self.wait("Choisir la fonction")

    # -- the host --------------------------------------------------------------------------

    def host(self, fn: Callable[[], object]) -> Future:
        """A host command that waits for the person, run while the keypad is driven here."""
        return self._pool.submit(fn)


def _cap(s: _Session) -> None:
    s.shot("choisir-la-fonction", "Choisir la fonction")
    s.press("#")
    s.shot("menu", "Infos appareil")
    s.press("*", "Choisir la fonction")
    s.press("A")
    s.shot("carte-non-personnalisee", "non personnalisée")
    s.press("D", "Choisir la fonction")
    data = personalisation_data(SoftwareIssuerBackend.for_tests(), profile=VISA_DPA_CVN10,
                                imk_label=TEST_IMK_LABEL, pan=PAN, psn=1, pin=CARD_PIN,
                                pin_try_limit=3)
    try:
        CardClient(s.device).personalise(data)
    finally:
        data[:] = bytes(len(data))
    s.press("A", "Code PIN")
    s.press("12")
    s.shot("code-pin", "**_")
    s.press("34D")
    s.shot("cap-code", "Votre code")
    s.press("D", "Choisir la fonction")
    s.press("B")
    s.shot("sign-menu", "Réponse")
    s.press("2", "Code défi")
    s.press("2371")
    s.shot("code-defi", "2371_")
    s.press("0189D", "Montant")
    s.press("125000")
    s.shot("montant", "1 250,00 EUR")
    s.press("*")
    s.shot("operation-annulee", "Opération annulée")
    s.home()
    s.press("B", "Réponse")
    s.press("3", "Donnée 1")
    s.press("1234D", "Donnée 2")
    s.press("5678")
    s.shot("donnee", "5678_")
    s.press("*")
    s.home()
    s.press("#", "Infos appareil")
    s.press("2")
    s.shot("carte-cap", "ATC")
    s.press("D", "Choisir la fonction")
    s.press("#", "Infos appareil")
    s.press("3")
    s.shot("lecteur-pcsc", "PC/SC ?")
    s.press("*")
    s.home()
    call = s.host(lambda: CardClient(s.device).get_code(
        CapMode.SIGN, challenge="23710189", amount=125000, currency="EUR"))
    s.shot("cap-demande", "Demande de l'ordinateur")
    s.keypad.accept()
    s.press(CARD_PIN + "D", "Votre code")
    call.result(timeout=10)
    s.press("D", "Choisir la fonction")
    s.press("A", "Code PIN")
    s.press("0000D")
    s.shot("code-pin-incorrect", "Essais restants : 2")
    s.press("D", "Choisir la fonction")
    s.press("A", "Code PIN")
    s.press("0000D", "Essais restants : 1")
    s.press("D", "Choisir la fonction")
    s.press("A", "Code PIN")
    s.press("0000D")
    s.shot("code-pin-bloque", "bloqué")
    s.press("D", "Choisir la fonction")


def _key(s: _Session) -> None:
    key = KeyClient(s.device)
    now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create(s.folder / "ca", name="Banque Exemple",
                                     encryption=serialization.NoEncryption(), now=now)
    ca.provision_device(s.device.info().serial, key.attestation_key(), now=now)
    call = s.host(lambda: enrol(key, ca, slot=0, subscription="123456789", user="01", now=now))
    s.shot("cle-demande", "Nouvelle clé")
    s.keypad.accept()
    s.wait("Choisissez votre code PIN")
    s.press(KEY_PIN)
    s.shot("cle-choix-pin", "******_")
    s.press("D", "Confirmez le code PIN")
    s.press(KEY_PIN + "D", "Choisissez votre code PUK")
    s.press(KEY_PUK)
    s.shot("cle-choix-puk", "********")
    s.press("D", "Confirmez le code PUK")
    s.press(KEY_PUK + "D")
    call.result(timeout=30)
    s.home()
    call = s.host(lambda: enrol(key, ca, slot=1, subscription="123456789", user="02", now=now))
    s.wait("Nouvelle clé")
    s.keypad.accept()
    s.press(KEY_PIN + "D")
    call.result(timeout=30)
    s.home()
    s.press("#", "Infos appareil")
    s.press("6")
    s.shot("certificats", "Essais restants")
    s.press("D", "Choisir la fonction")
    login = P.LoginPayload(_CHALLENGE, ORIGIN, "123456789", "01")
    call = s.host(lambda: key.sign(login.to_bytes()))
    s.shot("cle-connexion", "Connexion à")
    s.keypad.accept()
    s.shot("cle-choix-certificat", "Sélectionnez")
    s.press("1", "Code PIN")
    s.press(KEY_PIN[:3])
    s.shot("cle-code-pin", "***_")
    s.press(KEY_PIN[3:] + "D")
    call.result(timeout=30)
    s.home()
    payment = P.PaymentPayload(_CHALLENGE, 125000, "EUR", IBAN, "ACME SARL")
    call = s.host(lambda: key.sign(payment.to_bytes()))
    s.shot("cert-payment", "Virement")
    s.press("*")
    try:
        call.result(timeout=10)
    except LinkError:
        pass  # DENIED: the person said no
    s.home()
    s.press("#", "Infos appareil")
    s.press("5", "Code PUK")
    s.shot("cle-code-puk", "C:CORR D:OK")
    s.press("*")
    s.home()


def _maintenance(folder: Path) -> Picture:
    """The maintenance screen, from a simulator powered up with ANNULER and MENU held: its link
    is off then, so the glass and the rows drawn are read at its REPL."""
    with Simulator(folder / "maintenance", register=False, held_keys="*#") as sim:
        fb = bytes.fromhex(sim.repl("import board\nprint(board.BOARD.display.glass().hex())"))
        rows = sim.repl("\n".join((
            "import maintenance",
            "from ui.screen import COLS, wrap",
            "rows = [maintenance.TITLE]",
            "for line in maintenance.LINES: wrap(line, COLS, rows)",
            "print('\\n'.join(rows))")))
    return Picture(to_png(fb, scale=SCALE), tuple(rows.splitlines()))


def render() -> dict[str, Picture]:
    """Every picture of SHOTS, from fresh simulators."""
    with tempfile.TemporaryDirectory(prefix="capkey-screens-") as tmp:
        with _Session(Path(tmp)) as s:
            _cap(s)
            _key(s)
            pictures = s.pictures
        pictures["mode-maintenance"] = _maintenance(Path(tmp))
    if sorted(pictures) != sorted(shot.name for shot in SHOTS):
        raise RuntimeError(f"the screens taken {sorted(pictures)} are not SHOTS")
    return pictures


_ESCAPE = str.maketrans({c: "\\" + c for c in "\\*_[]|`<>"})


def section(pictures: dict[str, Picture]) -> str:
    """The part of docs/ui.md between BEGIN and END: a table of every picture and when it shows."""
    rows = ["| screen | when it shows |", "|---|---|"]
    for shot in SHOTS:
        alt = " / ".join(line.strip() for line in pictures[shot.name].lines if line.strip())
        rows.append(f"| ![{alt.translate(_ESCAPE)}](screens/{shot.name}.png) | {shot.when} |")
    return "\n".join(rows) + "\n"


def _split(doc: str) -> tuple[str, str, str]:
    try:
        head, rest = doc.split(BEGIN + "\n", 1)
        body, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"{UI_DOC} lacks the markers {BEGIN!r} ... {END!r}") from None
    return head, body, tail


def stale(pictures: dict[str, Picture], folder: Path = FOLDER) -> list[str]:
    """What is out of date: pictures missing or different on disk, docs/ui.md's table."""
    out = []
    for name, picture in pictures.items():
        path = folder / f"{name}.png"
        if not path.is_file() or path.read_bytes() != picture.png:
            out.append(str(path))
    if _split(UI_DOC.read_text(encoding="utf-8"))[1] != section(pictures):
        out.append(f"{UI_DOC}, the table between the {BEGIN!r} markers")
    return out


def write(pictures: dict[str, Picture], folder: Path = FOLDER) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, picture in pictures.items():
        (folder / f"{name}.png").write_bytes(picture.png)
    head, _, tail = _split(UI_DOC.read_text(encoding="utf-8"))
    UI_DOC.write_text(head + BEGIN + "\n" + section(pictures) + END + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if docs/screens or docs/ui.md is out of date")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    pictures = render()
    if args.check:
        out = stale(pictures)
        for line in out:
            print(f"out of date: {line}", file=sys.stderr)
        if out:
            print("run `make screens` (python -m capkey_dev.screens)", file=sys.stderr)
            return 1
        print(f"docs/screens: {len(pictures)} device screens up to date "
              f"({time.monotonic() - t0:.1f} s)")
        return 0
    write(pictures)
    print(f"wrote {len(pictures)} device screens to {FOLDER} and their table to {UI_DOC} "
          f"({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
