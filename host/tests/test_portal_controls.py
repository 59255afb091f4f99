"""The login page's controls from the guide (issue 13): « Mémoriser mon identifiant » (a cookie
with the identifiant only, off by default, cleared by unticking), « Version accessible », the
« Identifiant oublié ? », « Assistance » and « Plus d'informations » pages, and the TURBO SIGN box
of the certificate tab."""

from __future__ import annotations

from test_portal_support import AGENT, ORIGIN, SUB, csrf, text

from capkey.portal.web import ACCESSIBLE_COOKIE, REMEMBER_COOKIE


def _set_cookie(response, name):
    return [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]


def test_the_login_form_has_the_guide_controls_and_remembers_nothing_by_default(portal):
    _, client = portal
    page = client.get("/connexion?methode=code").text
    t = text(page)
    for words in ("Mémoriser mon identifiant", "Identifiant oublié ?", "Version accessible",
                  "Assistance", "Plus d'informations"):
        assert words in t
    box = page[page.index('id="memoriser"') - 60:page.index('id="memoriser"') + 60]
    assert "checked" not in box
    r = client.post("/connexion/code", data={"csrf": csrf(page), "identifiant": SUB,
                                             "utilisateur": "0001", "code": "Wrong-code-1"},
                    follow_redirects=False)
    assert _set_cookie(r, REMEMBER_COOKIE) == [] or "Max-Age=0" in _set_cookie(
        r, REMEMBER_COOKIE)[0]
    assert REMEMBER_COOKIE not in client.cookies


def test_remember_my_identifiant_keeps_it_alone_and_unticking_clears_it(portal):
    _, client = portal
    page = client.get("/connexion?methode=cap").text
    r = client.post("/connexion/defi?methode=cap", follow_redirects=False, data={
        "csrf": csrf(page), "identifiant": SUB, "utilisateur": "0001", "memoriser": "1"})
    (cookie,) = _set_cookie(r, REMEMBER_COOKIE)
    assert cookie.startswith(f"{REMEMBER_COOKIE}={SUB};")
    assert "0001" not in cookie  # the identifiant, nothing else
    lower = cookie.lower()
    assert "httponly" in lower and "samesite=strict" in lower and "max-age=" in lower
    fresh = client.get("/connexion?methode=code&autre=1").text
    assert f'value="{SUB}"' in fresh
    box = fresh[fresh.index('id="memoriser"'):fresh.index('id="memoriser"') + 60]
    assert "checked" in box
    r = client.post("/connexion/code", follow_redirects=False, data={
        "csrf": csrf(fresh), "identifiant": SUB, "utilisateur": "0001", "code": "Wrong-code-1"})
    (cleared,) = _set_cookie(r, REMEMBER_COOKIE)
    assert 'max-age=0' in cleared.lower() or "expires=thu, 01 jan 1970" in cleared.lower()
    assert REMEMBER_COOKIE not in client.cookies


def test_a_forged_remembered_identifiant_is_ignored(portal):
    _, client = portal
    client.cookies.set(REMEMBER_COOKIE, '"><script>x</script>')
    page = client.get("/connexion?methode=code").text
    assert "<script>x" not in page and 'value=""' in page


def test_accessible_version_switches_on_and_off_and_stays_on_this_site(portal):
    _, client = portal
    r = client.get("/version-accessible?actif=1", follow_redirects=False,
                   headers={"referer": f"{ORIGIN}/assistance"})
    assert r.status_code == 303 and r.headers["location"] == "/assistance"
    (cookie,) = _set_cookie(r, ACCESSIBLE_COOKIE)
    assert "httponly" in cookie.lower()
    page = client.get("/connexion").text
    assert '<body class="accessible">' in page
    assert 'aria-pressed="true"' in page and "Version standard" in page
    r = client.get("/version-accessible?actif=0", follow_redirects=False,
                   headers={"referer": "https://evil.example/connexion"})
    assert r.headers["location"] == "/connexion"  # never back to another site
    assert '<body class="standard">' in client.get("/connexion").text


def test_help_pages_say_what_the_bank_does(portal):
    _, client = portal
    forgot = text(client.get("/identifiant-oublie").text)
    assert "Utilisateur principal" in forgot and "Administrateur" in forgot
    assert "0 800 052 018" in forgot and "client@assistance.credit-cooperatif.coop" in forgot
    help_page = text(client.get("/assistance").text)
    assert "0 800 052 018" in help_page and "TURBO SIGN" in help_page and "CODE" in help_page
    security = text(client.get("/securite").text)
    assert "Ne communiquez jamais vos codes confidentiels" in security


def test_certificate_tab_carries_the_turbo_sign_box_for_a_missing_agent(portal):
    _, client = portal
    page = client.get("/connexion?methode=certificat").text
    assert f'class="turbo-sign notice" data-agent="{AGENT}"' in page
    assert "capkey agent" in page and "il vous sera demandé d'installer TURBO SIGN" in page
