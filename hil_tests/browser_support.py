"""What the browser tests share (test_e2e_browser.py, test_accessibility.py): the person at the
simulated device's keypad (CAP codes read off its screen) and at the portal's login form. Their
fixtures (`demo`, `browser`, `page`, `keypad`) are in conftest.py."""

from __future__ import annotations

import re
import time

from capkey_dev.demo import Keypad


def read_code(keypad: Keypad) -> str:
    lines = keypad.wait_for("Votre code")
    for line in lines:
        if re.fullmatch(r"\d{4,12}", line.strip()):
            return line.strip()
    raise AssertionError(f"no code on the device: {lines}")


def home(keypad: Keypad, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while "Choisir la fonction" not in keypad.text():
        assert time.monotonic() < deadline, keypad.lines()
        keypad.press("D")
        time.sleep(0.15)


def cap_code(keypad: Keypad, pin: str, *, respond: str | None = None,
             sign: tuple[str, int] | None = None) -> str:
    """The person at the reader: CODE (neither `respond` nor `sign`, the guide's login), or SIGN,
    Réponse (1) or Signature (2), the challenge, the amount; then the PIN; returns the code the
    reader shows."""
    home(keypad)
    if respond is not None or sign is not None:
        keypad.press("B")
        keypad.wait_for("Réponse")
        keypad.press("1" if respond is not None else "2")
        keypad.wait_for("Code défi")
        keypad.press((respond if respond is not None else sign[0]) + "D")
        if sign is not None:
            keypad.wait_for("Montant")
            keypad.press(str(sign[1]) + "D")
    else:
        keypad.press("A")
    keypad.wait_for("Code PIN")
    keypad.press(pin + "D")
    code = read_code(keypad)
    keypad.press("D")
    return code


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def login_ids(page, demo, method: str) -> None:
    page.goto(f"{demo.portal_url}connexion?methode={method}&autre=1")
    page.fill("#identifiant", demo.credentials.subscription)
    page.fill("#utilisateur", demo.credentials.user)
    page.click(f"#form-{method} button[type=submit]")


def logout(page) -> None:
    page.click("header form button")
    page.wait_for_url(re.compile(r"/connexion"))


