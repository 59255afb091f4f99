"""Accessibility of every portal page (issue 13), checked by axe-core (npm, hil_tests/axe/) in
headless Chromium, in the standard version and in the « Version accessible »: no serious or
critical violation, the device view's frame included. The figures per page are printed in the
test session's summary ("axe-core")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_support import cap_code, digits, login_ids

from capkey.catalog.operations import SENSITIVE

pytestmark = [pytest.mark.browser, pytest.mark.sim_only, pytest.mark.slow]

AXE = Path(__file__).with_name("axe") / "node_modules" / "axe-core" / "axe.min.js"
SIGNED_OUT = ("connexion?methode=cap", "connexion?methode=code", "connexion?methode=certificat",
              "identifiant-oublie", "assistance", "securite")
SIGNED_IN = ("espace", *(f"operations/{op.slug}" for op in SENSITIVE), "code/changer",
             "administration/code")
# the device view's frame shows all of its content: no scrollbar, no key cut off
_FRAME_FITS = """() => {
  const f = document.querySelector("iframe.device");
  return !f || f.clientHeight >= f.contentDocument.documentElement.scrollHeight;
}"""
_RUN = """async () => {
  const r = await axe.run(document, {resultTypes: ["violations"]});
  return r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}));
}"""


@pytest.fixture
def axe_page(browser):
    if not AXE.exists():
        pytest.fail(f"{AXE} missing: run `npm ci --prefix hil_tests/axe` (make test does)")
    # axe is injected as an inline script, which the portal's CSP forbids to any page of its own
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR",
                                  bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def _check(page, url: str, version: str, report: list[str]) -> list[str]:
    page.goto(url)
    page.wait_for_load_state("load")
    for frame in page.frames:  # the device view's frame is checked with the page
        frame.add_script_tag(path=str(AXE))
    page.wait_for_function(_FRAME_FITS, timeout=5_000)
    violations = page.evaluate(_RUN)
    counts = {impact: sum(v["nodes"] for v in violations if v["impact"] == impact)
              for impact in ("critical", "serious", "moderate", "minor")}
    report.append(f"{version:10} {url.split('/', 3)[3]:40} " + " ".join(
        f"{k} {n}" for k, n in counts.items()))
    return [f"{version} /{url.split('/', 3)[3]}: {v['id']} ({v['impact']}, {v['nodes']})"
            for v in violations if v["impact"] in ("serious", "critical")]


def test_every_page_in_both_versions_has_no_serious_or_critical_violation(
        demo, axe_page, keypad, request):
    page, base = axe_page, demo.portal_url
    report: list[str] = request.config.stash.setdefault(AXE_REPORT, [])
    bad: list[str] = []
    for version in ("standard", "accessible"):
        page.goto(f"{base}connexion")
        page.click("header nav button[aria-pressed]")  # the guide's « Version accessible »
        expected = "accessible" if version == "accessible" else "standard"
        if page.get_attribute("body", "class") != expected:
            page.click("header nav button[aria-pressed]")
        assert page.get_attribute("body", "class") == expected
        for path in SIGNED_OUT:
            bad += _check(page, base + path, version, report)
        login_ids(page, demo, "cap")
        bad += _check(page, page.url, version, report)  # the CODE steps
        page.fill("#cap_code", cap_code(keypad, demo.credentials.card_pin))
        page.click("#form-cap-code button[type=submit]")
        page.wait_for_url(re.compile(r"/espace$"))
        for path in SIGNED_IN:
            bad += _check(page, base + path, version, report)
        # a step-up (both tabs) and the operation done
        page.goto(f"{base}operations/destinataires")
        page.click("#form-op button[type=submit]")
        page.wait_for_url(re.compile(r"/validation"))
        bad += _check(page, page.url, version, report)
        bad += _check(page, page.url.split("?")[0] + "?methode=certificat", version, report)
        page.goto(page.url.split("?")[0])
        challenge = digits(page.inner_text("#stepup-challenge"))
        page.fill("#cap_code", cap_code(keypad, demo.credentials.card_pin, respond=challenge))
        page.click("#form-stepup-cap button[type=submit]")
        page.wait_for_url(re.compile(r"/effectuee$"))
        bad += _check(page, page.url, version, report)
        page.click("header form button")
        page.wait_for_url(re.compile(r"/connexion"))
    assert len(report) >= 2 * (len(SIGNED_OUT) + len(SIGNED_IN) + 4)
    assert not bad, "\n".join(bad)


AXE_REPORT = pytest.StashKey[list]()
