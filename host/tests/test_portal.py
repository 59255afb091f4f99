"""The demo portal, in process (Starlette TestClient), on the real AuthService (SQLite), the real
CAP verifier (codes computed as the card computes them) and the real signature verifier
(certificates issued by the bank CA to software keys)."""

from __future__ import annotations

import re

import pytest
from test_portal_support import (
    AGENT,
    ORIGIN,
    SUB,
    build,
    challenge_digits,
    csrf,
    payload_of,
    text,
)

from capkey.cert import payload as pl
from capkey.emv import verifier as capv
from capkey.portal.login import SCA_NEEDED
from capkey.portal.web import EXPIRED, FAILED
from capkey.rules import LoginRequest, Outcome, RulesConfig

IBAN = "FR7630006000011234567890189"


def cap_login(world, client, user="0001", *, code=None):
    page = client.get("/connexion?methode=cap").text
    r = client.post("/connexion/defi?methode=cap",
                    data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": user})
    assert r.status_code == 200 and str(r.url).endswith("/connexion?methode=cap")
    challenge = challenge_digits(r.text)
    if code is None:
        code = world.cards[user].respond(challenge)
    return client.post("/connexion/cap", data={"csrf": csrf(r.text), "cap_code": code}), challenge


def code_login(client, user, code):
    page = client.get("/connexion?methode=code").text
    return client.post("/connexion/code", data={"csrf": csrf(page), "identifiant": SUB,
                                                "utilisateur": user, "code": code})


def logout(client):
    page = client.get("/espace").text
    return client.post("/deconnexion", data={"csrf": csrf(page)})


def activate(world, client, user="0001", new="Kq7mZt3xW9"):
    """First SCA, then the forced change at the first code login: leaves a normal code."""
    assert "Espace Client" in text(cap_login(world, client, user)[0].text)
    logout(client)
    r = code_login(client, user, world.codes[user])
    assert str(r.url).endswith("/code/changer")
    r = client.post("/code/changer", data={"csrf": csrf(r.text), "actuel": world.codes[user],
                                           "nouveau": new, "confirmation": new})
    assert str(r.url).endswith("/espace")
    world.codes[user] = new
    return r


# -- login page --------------------------------------------------------------------------------


def test_login_page_has_the_guide_words_and_safe_headers(portal):
    _, client = portal
    r = client.get("/")
    assert str(r.url).endswith("/connexion")
    t = text(r.text)
    for words in ("Accès à l'Espace Client Internet", "Complétez la zone avec votre Identifiant client",
                  "Complétez la zone avec votre numéro Utilisateur", "Lecteur CAP",
                  "Code confidentiel", "Certificat numérique", "une fois tous les 90 jours"):
        assert words in t
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and f"connect-src 'self' {AGENT}" in csp
    assert "frame-ancestors 'self'" in csp
    assert r.headers["cache-control"] == "no-store"


def test_certificate_tab_hidden_without_agent(tmp_path):
    world, client = build(tmp_path, agent=None)
    with client:
        page = client.get("/connexion").text
        assert "Certificat numérique" not in text(page)
        assert "connect-src 'self';" in client.get("/connexion").headers["content-security-policy"]
    world.service.store.close()


def test_requests_under_another_host_name_go_to_the_origin(portal):
    _, client = portal
    r = client.get("http://localhost/connexion", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"{ORIGIN}/connexion"


# -- CAP reader --------------------------------------------------------------------------------


def test_cap_login_respond_over_the_server_challenge(portal):
    world, client = portal
    r, challenge = cap_login(world, client)
    assert str(r.url).endswith("/espace")
    t = text(r.text)
    assert "Espace Client" in t and "authentification forte" in t and "lecteur CAP" in t
    assert re.fullmatch(r"\d{8}", challenge)


def test_cap_login_page_shows_the_steps_of_the_guide(portal):
    _, client = portal
    page = client.get("/connexion?methode=cap").text
    r = client.post("/connexion/defi?methode=cap",
                    data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": "0001"})
    t = text(r.text)
    assert "Insérer la carte dans le lecteur CAP" in t
    assert "Après affichage du message « Choisir la fonction », appuyer sur la touche CODE" in t
    assert ("Entrer le code PIN de la carte puis reprendre le code fourni par le lecteur pour le "
            "saisir dans la page de connexion.") in t
    assert 'src="/appareil/"' not in r.text  # no device configured in this world


def test_respond_only_policy_shows_the_reponse_steps_and_refuses_identify(tmp_path):
    world, client = build(tmp_path, config=RulesConfig(cap_login_respond_only=True))
    try:
        page = client.get("/connexion?methode=cap").text
        r = client.post("/connexion/defi?methode=cap",
                        data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": "0001"})
        assert "« Réponse »" in text(r.text) and "appuyer sur la touche CODE" not in text(r.text)
        r, _ = cap_login(world, client, code=world.cards["0001"].identify())
        assert FAILED in text(r.text)
        r, _ = cap_login(world, client)
        assert str(r.url).endswith("/espace")
    finally:
        client.close()
        world.service.store.close()


def test_cap_identify_code_logs_in_as_the_guide_says_and_replays_fail(portal):
    world, client = portal
    card = world.cards["0001"]
    r, _ = cap_login(world, client, code=card.identify())  # the guide's CODE key: no challenge
    assert str(r.url).endswith("/espace")
    logout(client)
    card.atc -= 1  # the same code again
    r, _ = cap_login(world, client, code=card.identify())
    assert str(r.url).endswith("/connexion?methode=cap") and FAILED in text(r.text)
    r, _ = cap_login(world, client)  # a Respond code over the page's challenge works too
    assert str(r.url).endswith("/espace")
    logout(client)
    card.atc -= 1  # the same ATC again: a replayed code over a new challenge
    r, _ = cap_login(world, client)
    assert FAILED in text(r.text)


def test_uniform_failure_whatever_failed(portal):
    world, client = portal
    answers = []
    answers.append(text(cap_login(world, client, code="12345678")[0].text))
    answers.append(text(code_login(client, "0002", "wrong-code-1").text))
    answers.append(text(code_login(client, "9999", "wrong-code-1").text))  # unknown user
    page = client.get("/connexion?methode=certificat").text
    r = client.post("/connexion/defi?methode=certificat",
                    data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": "0002"})
    sig, cert = world.sign("0003", payload_of(r.text))  # another user's certificate
    answers.append(text(client.post("/connexion/certificat", data={
        "csrf": csrf(r.text), "signature": sig, "certificate": cert}).text))
    for t in answers:
        assert FAILED in t
        for leak in ("inconnu", "incorrect", "bloqué", "PIN", "certificat invalide"):
            assert leak not in t.split(FAILED)[1][:80]


def test_a_blocked_user_sees_the_same_message(portal):
    world, client = portal
    for _ in range(5):
        assert FAILED in text(code_login(client, "0001", "wrong-code-1").text)
    assert world.service.directory.user_state(SUB, "0001").blocked_until is not None
    r, _ = cap_login(world, client)  # a right code while blocked: nothing is verified
    assert str(r.url).endswith("/connexion?methode=cap") and FAILED in text(r.text)


# -- confidential code -------------------------------------------------------------------------


def test_code_login_needs_a_first_strong_authentication(portal):
    world, client = portal
    t = text(client.get("/connexion?methode=code").text)
    assert "Saisissez votre code confidentiel" in t
    assert "l'Utilisateur principal ou l'Administrateur de votre abonnement peut vous générer" in t
    r = code_login(client, "0001", world.codes["0001"])
    assert str(r.url).endswith("/connexion?methode=cap")
    assert SCA_NEEDED in text(r.text)


def test_code_first_login_forces_the_change_with_policy_errors(portal):
    world, client = portal
    assert str(cap_login(world, client)[0].url).endswith("/espace")
    logout(client)
    old = world.codes["0001"]
    r = code_login(client, "0001", old)
    assert str(r.url).endswith("/code/changer")
    assert "première connexion" in text(r.text)
    # nothing else is allowed before the change (R14)
    assert str(client.get("/espace").url).endswith("/code/changer")
    assert str(client.get("/operations/chequiers").url).endswith("/code/changer")
    cases = [("court1", "court1", "au moins 8 caractères"),
             ("12345678", "12345678", "trop simple"),
             (old, old, "différent de l'ancien"),
             ("Kq7mZt3xW9", "Kq7mZt3xW8", "sont différentes")]
    for new, again, message in cases:
        page = client.get("/code/changer").text
        r = client.post("/code/changer", data={"csrf": csrf(page), "actuel": old,
                                               "nouveau": new, "confirmation": again})
        assert message in text(r.text), message
    page = client.get("/code/changer").text
    r = client.post("/code/changer", data={"csrf": csrf(page), "actuel": "not-the-code",
                                           "nouveau": "Kq7mZt3xW9", "confirmation": "Kq7mZt3xW9"})
    assert FAILED in text(r.text)
    page = client.get("/code/changer").text
    r = client.post("/code/changer", data={"csrf": csrf(page), "actuel": old,
                                           "nouveau": "Kq7mZt3xW9", "confirmation": "Kq7mZt3xW9"})
    assert str(r.url).endswith("/espace")
    t = text(r.text)
    assert "code confidentiel a été modifié" in t and "authentification simple" in t
    logout(client)
    assert str(code_login(client, "0001", "Kq7mZt3xW9").url).endswith("/espace")
    assert world.service.login(LoginRequest(SUB, "0001", code=old)).outcome is (
        Outcome.AUTH_FAILED)


# -- certificate -------------------------------------------------------------------------------


def test_certificate_login_signs_the_login_payload_of_this_site(portal):
    world, client = portal
    page = client.get("/connexion?methode=certificat").text
    assert "Branchez votre clé USB" in text(page)
    r = client.post("/connexion/defi?methode=certificat",
                    data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": "0002"})
    t = text(r.text)
    assert "Branchez votre Certificat sur votre ordinateur" in t
    assert "Sélectionner mon certificat" in t and f'data-agent="{AGENT}"' in r.text
    data = payload_of(r.text)
    fields = pl.parse(data)
    assert isinstance(fields, pl.LoginPayload)
    assert (fields.origin, fields.subscription, fields.user) == (ORIGIN, SUB, "0002")
    assert "Connexion à" in t  # what the device will show, shown on the page too
    sig, cert = world.sign("0002", data)
    r = client.post("/connexion/certificat", data={"csrf": csrf(r.text), "signature": sig,
                                                   "certificate": cert})
    assert str(r.url).endswith("/espace")
    assert "certificat numérique" in text(r.text)


def test_certificate_signature_over_another_payload_fails(portal):
    world, client = portal
    page = client.get("/connexion?methode=certificat").text
    r = client.post("/connexion/defi?methode=certificat",
                    data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": "0002"})
    fields = pl.parse(payload_of(r.text))
    other = pl.LoginPayload(fields.challenge, "https://evil.example", SUB, "0002").to_bytes()
    sig, cert = world.sign("0002", bytes(other))
    r = client.post("/connexion/certificat", data={"csrf": csrf(r.text), "signature": sig,
                                                   "certificate": cert})
    assert FAILED in text(r.text)


# -- CSRF, cookie, session -----------------------------------------------------------------------


def test_posts_need_the_csrf_token_and_this_origin(portal):
    world, client = portal
    client.get("/connexion")
    r = client.post("/connexion/code", data={"identifiant": SUB, "utilisateur": "0001",
                                             "code": world.codes["0001"]})
    assert "Formulaire expiré" in text(r.text)
    page = client.get("/connexion?methode=code").text
    r = client.post("/connexion/code", data={"csrf": csrf(page) + "x", "identifiant": SUB,
                                             "utilisateur": "0001", "code": "x"})
    assert "Formulaire expiré" in text(r.text)
    r = client.post("/connexion/code", headers={"Origin": "https://evil.example"},
                    data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": "0001",
                          "code": "x"})
    assert r.status_code == 403
    # no failure was counted for any of these
    assert world.service.directory.user_state(SUB, "0001").failures == 0


def test_tampered_cookie_is_a_new_visitor(portal):
    world, client = portal
    r, _ = cap_login(world, client)
    assert str(r.url).endswith("/espace")
    value = client.cookies.get("capkey_portal")
    sid, mac = value.split(".")
    client.cookies.set("capkey_portal", f"{sid}.{'0' * len(mac)}")
    assert str(client.get("/espace").url).endswith("/connexion")


def test_login_gives_a_new_cookie(portal):
    world, client = portal
    client.get("/connexion")
    before = client.cookies.get("capkey_portal")
    cap_login(world, client)
    assert client.cookies.get("capkey_portal") != before


def test_inactivity_expires_the_session(portal):
    world, client = portal
    assert str(cap_login(world, client)[0].url).endswith("/espace")
    world.clock.advance(seconds=299)
    assert str(client.get("/espace").url).endswith("/espace")
    world.clock.advance(seconds=301)
    r = client.get("/espace")
    assert str(r.url).endswith("/connexion") and EXPIRED in text(r.text)
    assert str(client.get("/espace").url).endswith("/connexion")


def test_logout(portal):
    world, client = portal
    cap_login(world, client)
    r = logout(client)
    assert "Vous êtes déconnecté" in text(r.text)
    assert str(client.get("/espace").url).endswith("/connexion")
    # the bank's session ended with the page's, not at the inactivity limit
    with world.service.store.transaction() as tx:
        assert any(row[7] == "logout" for row in tx.audit_rows())


# -- sensitive operations and step-up ---------------------------------------------------------


def test_espace_lists_the_guide_operations(portal):
    world, client = portal
    t = text(cap_login(world, client)[0].text)
    for title in ("Gestion des habilitations", "Gestion des destinataires",
                  "Commande de chéquiers", "Saisie d'un ordre de virement SEPA instantané",
                  "Signature des remises d'ordres de paiement"):
        assert title in t


def start_transfer(client, amount="125,00", iban="FR76 3000 6000 0112 3456 7890 189",
                   name="ATELIER DU PORT"):
    page = client.get("/operations/virement-instantane").text
    return client.post("/operations/virement-instantane", data={
        "csrf": csrf(page), "montant": amount, "iban": iban, "nom": name})


def test_sct_inst_from_a_code_session_steps_up_with_cap_sign(portal):
    world, client = portal
    activate(world, client, "0002")
    r = start_transfer(client)
    assert str(r.url).endswith("/operations/virement-instantane/validation")
    t = text(r.text)
    assert "Authentification renforcée" in t and "125,00 EUR" in t and "« Signature »" in t
    assert "FR76 3000 6000 0112 3456 7890 189" in t
    challenge = challenge_digits(r.text, IBAN)
    # the R7 encoding (docs/cap.md §5.4): control code from the record, then the payee's digits
    web = next(w for w in client.app.state.records._items.values() if w.operation is not None)
    ch = web.operation.step_up
    record = pl.PaymentPayload(ch.nonce, 12500, "EUR", IBAN, "ATELIER DU PORT")
    assert challenge == ch.cap_challenge == capv.transaction_challenge(record)
    assert "4 derniers chiffres de l'IBAN du bénéficiaire" in t and challenge[4:] == "0189"
    # a Sign code over another amount (the person typed 12,50) fails, with the one message
    code = world.cards["0002"].sign(challenge, 1250)
    r = client.post("/operations/virement-instantane/validation",
                    data={"csrf": csrf(r.text), "methode": "cap", "cap_code": code})
    assert FAILED in text(r.text)
    challenge2 = challenge_digits(r.text, IBAN)  # a new challenge was issued
    assert challenge2 != challenge
    code = world.cards["0002"].sign(challenge2, 12500)
    r = client.post("/operations/virement-instantane/validation",
                    data={"csrf": csrf(r.text), "methode": "cap", "cap_code": code})
    assert str(r.url).endswith("/operations/virement-instantane/effectuee")
    t = text(r.text)
    assert "Opération effectuée" in t and "125,00 EUR" in t and "lecteur CAP" in t
    # one step-up, one operation: the same transfer again asks again
    r = start_transfer(client)
    assert str(r.url).endswith("/validation")


def test_sct_inst_steps_up_even_in_a_strong_session_and_with_the_certificate(portal):
    world, client = portal
    cap_login(world, client, "0001")
    r = client.get("/operations/virement-instantane/validation?methode=certificat")
    assert str(r.url).endswith("/espace")  # nothing pending
    r = start_transfer(client, amount="1 250,50")
    assert str(r.url).endswith("/validation")
    r = client.get("/operations/virement-instantane/validation?methode=certificat")
    data = payload_of(r.text)
    fields = pl.parse(data)
    assert isinstance(fields, pl.PaymentPayload)
    assert (fields.amount, fields.currency, fields.payee_iban, fields.payee_name) == (
        125050, "EUR", IBAN, "ATELIER DU PORT")
    assert "Virement 1 250,50 EUR vers FR76 3000" in text(r.text)
    sig, cert = world.sign("0001", data)
    r = client.post("/operations/virement-instantane/validation", data={
        "csrf": csrf(r.text), "methode": "certificat", "signature": sig, "certificate": cert})
    assert str(r.url).endswith("/effectuee")
    assert "certificat numérique" in text(r.text)


def test_signature_over_a_changed_payee_name_fails(portal):
    world, client = portal
    cap_login(world, client, "0001")
    start_transfer(client)
    r = client.get("/operations/virement-instantane/validation?methode=certificat")
    f = pl.parse(payload_of(r.text))
    forged = pl.PaymentPayload(f.challenge, f.amount, f.currency, f.payee_iban, "MULE SARL")
    sig, cert = world.sign("0001", bytes(forged.to_bytes()))
    r = client.post("/operations/virement-instantane/validation", data={
        "csrf": csrf(r.text), "methode": "certificat", "signature": sig, "certificate": cert})
    assert FAILED in text(r.text)


@pytest.mark.parametrize("slug,form,purpose", [
    ("habilitations", {"utilisateur": "0002", "droit": "saisie"},
     pl.Purpose.MANAGE_HABILITATIONS),
    ("destinataires", {"nom": "ATELIER DU PORT", "iban": IBAN}, pl.Purpose.MANAGE_PAYEES),
    ("chequiers", {"nombre": "2"}, pl.Purpose.ORDER_CHEQUEBOOK),
])
def test_r8_operations_step_up_with_cap_respond_or_certificate(portal, slug, form, purpose):
    world, client = portal
    activate(world, client, "0002")
    page = client.get(f"/operations/{slug}").text
    r = client.post(f"/operations/{slug}", data={"csrf": csrf(page), **form})
    assert str(r.url).endswith(f"/operations/{slug}/validation")
    assert "« Réponse »" in text(r.text)
    code = world.cards["0002"].respond(challenge_digits(r.text))
    r = client.post(f"/operations/{slug}/validation",
                    data={"csrf": csrf(r.text), "methode": "cap", "cap_code": code})
    assert str(r.url).endswith(f"/operations/{slug}/effectuee")
    # the same operation again, confirmed with the certificate this time
    page = client.get(f"/operations/{slug}").text
    client.post(f"/operations/{slug}", data={"csrf": csrf(page), **form})
    r = client.get(f"/operations/{slug}/validation?methode=certificat")
    data = payload_of(r.text)
    fields = pl.parse(data)
    assert isinstance(fields, pl.OperationPayload) and fields.purpose is purpose
    sig, cert = world.sign("0002", data)
    r = client.post(f"/operations/{slug}/validation", data={
        "csrf": csrf(r.text), "methode": "certificat", "signature": sig, "certificate": cert})
    assert str(r.url).endswith(f"/operations/{slug}/effectuee")
    assert len(re.findall(r"<li>[^<]*UTC —", client.get("/espace").text)) == 2


def test_order_batch_signs_the_total_with_cap(portal):
    world, client = portal
    cap_login(world, client, "0001")
    page = client.get("/operations/remises").text
    r = client.post("/operations/remises", data={"csrf": csrf(page), "ordres": (
        "FR76 3000 6000 0112 3456 7890 189 ; 1 250,00\nDE89 3704 0044 0532 0130 00 ; 310,50")})
    t = text(r.text)
    assert "1 560,50 EUR" in t and "« Signature »" in t
    code = world.cards["0001"].sign(challenge_digits(r.text), 156050)
    r = client.post("/operations/remises/validation",
                    data={"csrf": csrf(r.text), "methode": "cap", "cap_code": code})
    assert str(r.url).endswith("/operations/remises/effectuee")


def test_operation_form_errors_are_shown(portal):
    world, client = portal
    cap_login(world, client)
    page = client.get("/operations/virement-instantane").text
    r = client.post("/operations/virement-instantane", data={
        "csrf": csrf(page), "montant": "abc", "iban": IBAN, "nom": "X"})
    assert "Montant invalide" in text(r.text)
    r = client.post("/operations/virement-instantane", data={
        "csrf": csrf(page), "montant": "10", "iban": "FR7630006000011234567890188", "nom": "X"})
    assert "IBAN invalide" in text(r.text)


# -- administration (R15) ------------------------------------------------------------------------


def reset(client, target):
    page = client.get("/administration/code").text
    return client.post("/administration/code", data={"csrf": csrf(page), "utilisateur": target})


def test_principal_in_a_strong_session_resets_a_user_code(portal):
    world, client = portal
    cap_login(world, client, "0001")
    assert "Générer un nouveau code confidentiel" in text(client.get("/espace").text)
    r = reset(client, "0002")
    m = re.search(r'<p class="code">([^<]+)</p>', r.text)
    assert m and "affiché une seule fois" in text(r.text)
    new = m.group(1)
    assert world.service.login(LoginRequest(SUB, "0002", code=world.codes["0002"])).outcome is (
        Outcome.AUTH_FAILED)
    # the new code verifies (R4 then asks this never-SCA user for a strong login first)
    assert world.service.login(LoginRequest(SUB, "0002", code=new)).outcome is (
        Outcome.SCA_REQUIRED)
    assert world.service.directory.user_state(SUB, "0002").must_change
    assert new not in client.get("/administration/code").text  # shown once


def test_reset_needs_a_strong_session_and_the_role(portal):
    world, client = portal
    activate(world, client, "0001")
    r = reset(client, "0002")
    assert "authentification forte" in text(r.text) and 'class="code"' not in r.text
    logout(client)
    cap_login(world, client, "0002")  # a plain user
    assert "Générer un nouveau code" not in text(client.get("/espace").text)
    r = client.get("/administration/code")
    assert str(r.url).endswith("/espace") and "réservée" in text(r.text)


def test_device_view_is_mounted_and_same_origin_only(tmp_path):
    from starlette.testclient import TestClient

    from capkey.portal import PortalConfig, create_app

    world, _ = build(tmp_path)
    from capkey_dev.devview import create_app as create_devview

    view = create_devview("socket://127.0.0.1:9")
    app = create_app(world.service, PortalConfig(origin=ORIGIN, device_view=view))
    with TestClient(app, base_url=ORIGIN) as client:
        page = client.get("/connexion?methode=cap").text
        assert 'src="/appareil/"' in page and "Votre appareil capkey" in text(page)
        assert "Votre appareil capkey" not in text(client.get("/connexion?methode=code").text)
        r = client.get("/appareil", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/appareil/"
        assert "Écran de l'appareil" in client.get("/appareil/").text
        r = client.post("/appareil/press", json={"keys": "1"},
                        headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        r = client.post("/appareil/press", json={"keys": "1"}, headers={"Origin": ORIGIN})
        assert r.status_code == 502  # reached the device view: no device behind this URL
    view.state.session.close()
    world.service.store.close()


def test_https_origin_sets_a_secure_cookie(tmp_path):
    from starlette.testclient import TestClient

    from capkey.portal import PortalConfig, create_app

    world, _ = build(tmp_path)
    origin = "https://banque.example"
    with TestClient(create_app(world.service, PortalConfig(origin=origin)),
                    base_url=origin) as client:
        assert "secure" in client.get("/connexion").headers["set-cookie"].lower()
    world.service.store.close()


def test_records_expire_and_are_bounded():
    from capkey.portal.app import Records

    now = [0.0]
    records = Records(ttl=100, clock=lambda: now[0], limit=3)
    first = records.new()
    now[0] = 1
    second = records.new()
    records.new()
    now[0] = 2
    records.new()  # over the limit: the least recently used goes
    assert records.get(first.id) is None and records.get(second.id) is not None
    now[0] = 200
    assert records.get(second.id) is None
