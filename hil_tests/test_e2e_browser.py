"""The main job, end to end in a real browser: `capkey demo`'s setup (simulated device personalised
for the test customer, AuthService on SQLite, portal, device view, signing agent) driven by
headless Chromium, with the person's keypad presses and screen reading done on the simulated
device over its link (PRESS / SCREEN).

    pytest -m browser hil_tests/test_e2e_browser.py

Needs /usr/bin/chromium (Debian package) and the simulator; takes well under a minute. It takes
screenshots of the login and step-up pages; with CAPKEY_WRITE_SCREENS=1 they replace
docs/screens/portal-login.png and docs/screens/portal-step-up.png (otherwise they go to the test's
temporary folder, so that a test run leaves the tree untouched).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser_support import cap_code, digits, login_ids, logout
from capkey_dev.demo import DemoError, Keypad

pytestmark = [pytest.mark.browser, pytest.mark.sim_only, pytest.mark.slow]

DOC_SCREENS = Path(__file__).resolve().parents[1] / "docs" / "screens"
NEW_CODE = "Vq8nRt4kZm"
IBAN_DIGITS = "0189"  # FR76 3000 6000 0112 3456 7890 189, the transfer form's payee


@pytest.fixture
def screens(tmp_path) -> Path:
    return DOC_SCREENS if os.environ.get("CAPKEY_WRITE_SCREENS") == "1" else tmp_path


def test_cap_login_code_login_with_forced_change_and_step_up(demo, page, keypad, screens):
    creds = demo.credentials
    page.goto(demo.portal_url)
    page.wait_for_url(re.compile(r"/connexion"))
    assert "Accès à l'Espace Client Internet" in page.inner_text("h1")
    page.frame_locator("iframe.device").locator("#lines").wait_for(state="attached")
    screens.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screens / "portal-login.png"), full_page=True)
    assert (screens / "portal-login.png").stat().st_size > 10_000

    # 1. lecteur CAP, as the guide says: CODE, the card PIN, the code into the page
    login_ids(page, demo, "cap")
    assert "appuyer sur la touche CODE" in page.inner_text("#form-cap-code")
    page.fill("#cap_code", cap_code(keypad, creds.card_pin))
    page.click("#form-cap-code button[type=submit]")
    page.wait_for_url(re.compile(r"/espace$"))
    assert "authentification forte" in page.inner_text("main")
    logout(page)
    # ... or the reader's Réponse over the challenge the page also shows
    login_ids(page, demo, "cap")
    challenge = digits(page.inner_text("#cap-challenge"))
    assert len(challenge) == 8
    page.fill("#cap_code", cap_code(keypad, creds.card_pin, respond=challenge))
    page.click("#form-cap-code button[type=submit]")
    page.wait_for_url(re.compile(r"/espace$"))
    logout(page)

    # 2. code confidentiel: first code login forces the change; the policy is explained
    page.click("#tab-code")
    page.fill("#identifiant", creds.subscription)
    page.fill("#utilisateur", creds.user)
    page.fill("#code", creds.code)
    page.click("#form-code button[type=submit]")
    page.wait_for_url(re.compile(r"/code/changer$"))
    for field, value in (("#actuel", creds.code), ("#nouveau", "12345678"),
                         ("#confirmation", "12345678")):
        page.fill(field, value)
    page.click("#form-change button[type=submit]")
    assert "trop simple" in page.inner_text(".error")
    for field, value in (("#actuel", creds.code), ("#nouveau", NEW_CODE),
                         ("#confirmation", NEW_CODE)):
        page.fill(field, value)
    page.click("#form-change button[type=submit]")
    page.wait_for_url(re.compile(r"/espace$"))
    assert "authentification simple" in page.inner_text("main")

    # 3. a sensitive operation from the code session: SEPA instant transfer, step-up by CAP Sign
    page.click("#op-virement-instantane")
    page.click("#form-op button[type=submit]")
    page.wait_for_url(re.compile(r"/virement-instantane/validation"))
    text = page.inner_text("main")
    assert "Authentification renforcée" in text and "125,00 EUR" in text
    page.screenshot(path=str(screens / "portal-step-up.png"), full_page=True)
    control = digits(page.inner_text("#stepup-control"))
    amount = int(digits(page.inner_text("#stepup-amount")))
    assert amount == 12500
    page.fill("#cap_code", cap_code(keypad, creds.card_pin, sign=(control + IBAN_DIGITS, amount)))
    page.click("#form-stepup-cap button[type=submit]")
    page.wait_for_url(re.compile(r"/virement-instantane/effectuee$"))
    assert "Opération effectuée" in page.inner_text("h1")
    assert "125,00 EUR" in page.inner_text("#op-done")


def sign_on_device(page, keypad: Keypad, pin: str, shows: str) -> None:
    """The person at the key: reads what is signed, confirms with OK, types the PIN."""
    try:
        keypad.wait_for(shows)
    except DemoError as exc:
        raise AssertionError(f"{exc}; the page says: {page.inner_text('#signer .status')!r}") from exc
    keypad.accept()
    keypad.wait_for("Code PIN")
    keypad.press(pin + "D")


def test_certificate_login_through_the_agent_and_step_up(demo, page, keypad):
    creds = demo.credentials
    if creds.cert_pin is None:
        pytest.fail("the simulated device has no certificate key (firmware apps.key)")
    login_ids(page, demo, "certificat")
    assert "Branchez votre Certificat sur votre ordinateur" in page.inner_text("#signer")
    page.click("#signer [data-action=list]")
    page.wait_for_selector("#signer .certs input[type=radio]")
    assert f"{creds.subscription} {creds.user}" in page.inner_text("#signer .certs")
    page.click("#signer [data-action=sign]")
    sign_on_device(page, keypad, creds.cert_pin, "Connexion")
    page.wait_for_url(re.compile(r"/espace$"))
    assert "certificat numérique" in page.inner_text("main")

    # a sensitive operation (chequebook order, R8), confirmed with the certificate
    page.click("#op-chequiers")
    page.click("#form-op button[type=submit]")
    page.wait_for_url(re.compile(r"/chequiers/validation"))
    page.click("#tab-certificat")
    page.click("#signer [data-action=list]")
    page.wait_for_selector("#signer .certs input[type=radio]")
    page.click("#signer [data-action=sign]")
    sign_on_device(page, keypad, creds.cert_pin, "chéquier")
    page.wait_for_url(re.compile(r"/chequiers/effectuee$"))
    assert "Opération effectuée" in page.inner_text("h1")


def test_certificate_tab_says_how_to_start_turbo_sign_when_no_agent_answers(demo, page):
    page.goto(f"{demo.portal_url}connexion?methode=certificat")
    box = page.locator(".turbo-sign")
    page.wait_for_timeout(500)  # the page has asked the running agent by now
    assert box.is_hidden()
    # this computer without the agent: nothing answers on its port
    page.route(re.compile(re.escape(demo.agent_url.rstrip("/")) + "/.*"),
               lambda route: route.abort("connectionrefused"))
    page.reload()
    box.wait_for(state="visible")
    words = box.inner_text()
    assert "il vous sera demandé d'installer TURBO SIGN" in words
    assert "capkey agent" in words and "code PIN" in words


def test_the_other_sensitive_operations_each_with_its_cap_step_up(demo, page, keypad):
    """The guide's five operations: the transfer and the chequebook order above; here the
    habilitations and payees (R8, Réponse over the page's challenge) and a batch of orders (R7,
    Signature over the control code, the number of orders and the total)."""
    creds = demo.credentials
    login_ids(page, demo, "cap")
    page.fill("#cap_code", cap_code(keypad, creds.card_pin))
    page.click("#form-cap-code button[type=submit]")
    page.wait_for_url(re.compile(r"/espace$"))
    for slug in ("habilitations", "destinataires"):
        page.click(f"#op-{slug}")
        page.click("#form-op button[type=submit]")
        page.wait_for_url(re.compile(rf"/{slug}/validation"))
        assert "Réponse" in page.inner_text("#form-stepup-cap")
        challenge = digits(page.inner_text("#stepup-challenge"))
        page.fill("#cap_code", cap_code(keypad, creds.card_pin, respond=challenge))
        page.click("#form-stepup-cap button[type=submit]")
        page.wait_for_url(re.compile(rf"/{slug}/effectuee$"))
        assert "Opération effectuée" in page.inner_text("h1")
        page.goto(f"{demo.portal_url}espace")
    page.click("#op-remises")
    page.click("#form-op button[type=submit]")
    page.wait_for_url(re.compile(r"/remises/validation"))
    control = digits(page.inner_text("#stepup-control"))
    orders = digits(page.inner_text("#stepup-control + strong"))
    amount = int(digits(page.inner_text("#stepup-amount")))
    page.fill("#cap_code", cap_code(keypad, creds.card_pin, sign=(control + orders, amount)))
    page.click("#form-stepup-cap button[type=submit]")
    page.wait_for_url(re.compile(r"/remises/effectuee$"))
    assert "Opération effectuée" in page.inner_text("h1")
