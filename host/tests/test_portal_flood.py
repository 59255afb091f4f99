"""Floods of anonymous visitors (issue 12): page views keep nothing on the server, so they cannot
push a signed-in customer out of the portal's records, and login forms are rate-limited per client
address."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from test_portal_support import ORIGIN, SUB, build, challenge_digits, csrf, text

from capkey.portal.session import Records


@pytest.fixture
def small(tmp_path):
    """A portal whose anonymous records hold 100 entries."""
    world, client = build(tmp_path, records=Records(1800, limit=100))
    yield world, client
    client.close()
    world.service.store.close()


def cap_login(world, client, user="0001"):
    page = client.get("/connexion?methode=cap").text
    r = client.post("/connexion/defi?methode=cap",
                    data={"csrf": csrf(page), "identifiant": SUB, "utilisateur": user})
    code = world.cards[user].respond(challenge_digits(r.text))
    r = client.post("/connexion/cap", data={"csrf": csrf(r.text), "cap_code": code})
    assert str(r.url).endswith("/espace")


def stranger(client, address="203.0.113.7"):
    """Another browser (no cookie) on the same portal, from `address`."""
    return TestClient(client.app, base_url=ORIGIN, client=(address, 40000))


def test_anonymous_page_views_do_not_evict_a_signed_in_customer(small):
    world, client = small
    cap_login(world, client)
    form = client.get("/operations/virement-instantane").text
    with stranger(client) as flood:
        for _ in range(150):  # more than the store holds
            assert flood.get("/", follow_redirects=False).status_code == 303
            flood.cookies.clear()
    r = client.post("/operations/virement-instantane", data={
        "csrf": csrf(form), "montant": "125,00", "iban": "FR76 3000 6000 0112 3456 7890 189",
        "nom": "ATELIER DU PORT"})
    assert str(r.url).endswith("/operations/virement-instantane/validation")


def test_anonymous_forms_do_not_evict_a_signed_in_customer(small):
    """Anonymous visitors who post forms get records, among the anonymous ones only."""
    world, client = small
    cap_login(world, client)
    form = client.get("/operations/virement-instantane").text
    for n in range(150):
        with stranger(client, f"198.51.100.{n}") as visitor:
            page = visitor.get("/connexion?methode=code").text
            visitor.post("/connexion/code", data={"csrf": csrf(page), "identifiant": SUB,
                                                  "utilisateur": "0009", "code": "x"})
    r = client.post("/operations/virement-instantane", data={
        "csrf": csrf(form), "montant": "125,00", "iban": "FR76 3000 6000 0112 3456 7890 189",
        "nom": "ATELIER DU PORT"})
    assert str(r.url).endswith("/operations/virement-instantane/validation")


def test_anonymous_page_views_keep_nothing_on_the_server(tmp_path):
    world, client = build(tmp_path)
    with client:
        records = client.app.state.records
        before = len(records)
        for _ in range(50):
            client.get("/")
            client.get("/connexion?methode=code")
            client.get("/espace")
            client.cookies.clear()
        assert len(records) == before
    world.service.store.close()


def test_the_anonymous_csrf_token_is_bound_to_the_cookie(small):
    world, client = small
    page = client.get("/connexion?methode=code").text
    with stranger(client) as other:
        other.get("/connexion?methode=code")
        r = other.post("/connexion/code", data={"csrf": csrf(page), "identifiant": SUB,
                                                "utilisateur": "0001", "code": "x"})
        assert "Formulaire expiré" in text(r.text)
    assert world.service.directory.user_state(SUB, "0001").failures == 0


def test_login_forms_are_rate_limited_per_address(small):
    world, client = small
    page = client.get("/connexion?methode=code").text
    form = {"csrf": csrf(page), "identifiant": SUB, "utilisateur": "0009", "code": "x"}
    statuses = [client.post("/connexion/code", data=form).status_code for _ in range(40)]
    assert 429 in statuses and statuses.index(429) >= 10
    records = len(client.app.state.records)
    r = client.post("/connexion/code", data=form, follow_redirects=False)
    assert r.status_code == 429 and "Trop de tentatives" in text(r.text)
    assert len(client.app.state.records) == records  # nothing kept for a refused form
    with stranger(client) as other:  # another address is not affected
        page = other.get("/connexion?methode=code").text
        r = other.post("/connexion/code", data={**form, "csrf": csrf(page)})
        assert r.status_code == 200


def test_the_rate_limit_table_is_bounded():
    from capkey.portal.session import Throttle

    now = [0.0]
    throttle = Throttle(per_minute=2, clients=3, clock=lambda: now[0])
    assert [throttle.allow("a") for _ in range(3)] == [True, True, False]
    now[0] = 30  # one attempt back after half a minute
    assert [throttle.allow("a") for _ in range(2)] == [True, False]
    for n in range(10):
        assert throttle.allow(f"10.0.0.{n}")
    assert len(throttle) == 3
