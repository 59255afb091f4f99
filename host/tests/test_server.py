"""`capkey serve`'s app (issue 11): callers by API key and scope, the rules' answers as problems
with the library's uniform failure, idempotent retries, limits, logs without secrets, metrics,
health; on both engines where the store matters."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from starlette.testclient import TestClient
from test_rules_support import ENGINES, build_world, make_target

from capkey.rules import Outcome
from capkey.server import ApiKeyError, Limits, create_app, create_key, revoke_key
from capkey.server.observe import JsonFormatter

ALL = ["login", "stepup", "admin", "audit", "metrics"]


class Api:
    def __init__(self, world, limits: Limits | None = None, scopes=ALL):
        self.w = world
        self.key, self.row = create_key(world.store, scopes, "tests")
        self.client = TestClient(create_app(world.service, limits=limits),
                                 raise_server_exceptions=False)

    def post(self, path, body, *, key=None, **headers):
        headers["Authorization"] = f"Bearer {key or self.key}"
        return self.client.post(path, json=body, headers=headers)

    def challenge(self, user="U1"):
        r = self.post("/v1/login/challenges", {"subscription": "C1", "user_no": user})
        assert r.status_code == 200, r.text
        return r.json()

    def cap_login(self, user="U1", **headers):
        ch = self.challenge(user)
        code = self.w.cards[user].respond(ch["cap_challenge"])
        body = {"subscription": "C1", "user_no": user, "challenge_id": ch["challenge_id"],
                "cap_code": code}
        return body, self.post("/v1/logins", body, **headers)


@pytest.fixture(params=ENGINES)
def api(request, tmp_path):
    target, schema = make_target(request.param, tmp_path)
    w = build_world(target, schema)
    yield Api(w)
    if schema is not None:
        w.store.drop_schema()
    w.store.close()


@pytest.fixture
def sqlite_world(tmp_path):
    w = build_world(str(tmp_path / "capkey.db"))
    yield w
    w.store.close()


def _problem(r, status, outcome=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["type"].startswith("urn:capkey:problem:")
    if outcome is not None:
        assert body["outcome"] == outcome
    return body


def test_cap_login_then_step_up_then_logout(api):
    _, r = api.cap_login()
    assert r.status_code == 200, r.text
    session = r.json()["session"]
    assert session["auth_level"] == "SCA" and session["method"] == "CAP"
    op = {"session": session["id"], "operation": "MANAGE_PAYEES", "operation_id": "payee-7"}
    _problem(api.post("/v1/authorize", op), 403, "STEP_UP_REQUIRED")
    r = api.post("/v1/step-ups", op)
    assert r.status_code == 200, r.text
    ch = r.json()
    code = api.w.cards["U1"].respond(ch["cap_challenge"])
    r = api.post(f"/v1/step-ups/{ch['challenge_id']}/complete", op | {"cap_code": code})
    assert r.status_code == 200 and r.json() == {"outcome": "OK"}, r.text
    assert api.post("/v1/authorize", op).json() == {"outcome": "OK"}
    assert api.post("/v1/logout", {"session": session["id"]}).status_code == 200
    _problem(api.post("/v1/authorize", op), 401, "SESSION_EXPIRED")


def test_every_refused_login_is_the_same_problem(api):
    body, r = api.cap_login()
    assert r.status_code == 200
    replay = api.post("/v1/logins", body)
    unknown = api.post("/v1/logins", body | {"user_no": "NOBODY"})
    wrong = api.post("/v1/logins", body | {"cap_code": "12345678"})
    bodies = [_problem(x, 401, "AUTH_FAILED") for x in (replay, unknown, wrong)]
    assert bodies[0] == bodies[1] == bodies[2]  # R2: nothing tells the cases apart


def test_payment_step_up_binds_the_amount(api):
    ses = api.cap_login()[1].json()["session"]["id"]
    pay = {"amount_minor": 12_345, "currency": "EUR", "payee_iban": "FR7630006000011234567890189",
           "payee_name": "Dupont SA"}
    op = {"session": ses, "operation": "SCT_INST_ENTRY", "payment": pay}
    ch = api.post("/v1/step-ups", op).json()
    code = api.w.cards["U1"].sign(ch["cap_challenge"], ch["amount_minor"], ch["currency"])
    other = op | {"payment": pay | {"amount_minor": 99_999}}
    _problem(api.post(f"/v1/step-ups/{ch['challenge_id']}/complete", other | {"cap_code": code}),
             401, "AUTH_FAILED")
    bad_iban = pay | {"payee_iban": "FR7630006000011234567890180"}  # check digits wrong
    _problem(api.post("/v1/step-ups", op | {"payment": bad_iban}), 400, "INVALID_REQUEST")


def test_callers_need_a_valid_key_with_the_scope(sqlite_world):
    api = Api(sqlite_world, scopes=["login"])
    body = {"subscription": "C1", "user_no": "U1"}
    assert api.client.post("/v1/login/challenges", json=body).status_code == 401
    r = api.post("/v1/login/challenges", body, key=api.key[:-1] + "0")
    assert _problem(r, 401)["type"].endswith("unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = api.post("/v1/admin/unblock", body)
    assert _problem(r, 403)["type"].endswith("missing-scope")
    assert api.post("/v1/login/challenges", body).status_code == 200
    revoke_key(sqlite_world.store, api.row.id)
    with pytest.raises(ApiKeyError):
        revoke_key(sqlite_world.store, api.row.id)
    fresh = Api(sqlite_world)  # a new app: no cached verdict
    assert fresh.post("/v1/login/challenges", body, key=api.key).status_code == 401
    with sqlite_world.store.read() as tx:
        row = tx.api_key_get(api.row.id)
    assert api.key.split("_")[2].encode() not in json.dumps(row._asdict(), default=str).encode()


def test_idempotent_retry_answers_the_first_answer(api):
    body, first = api.cap_login(**{"Idempotency-Key": "login-0001"})
    assert first.status_code == 200
    again = api.post("/v1/logins", body, **{"Idempotency-Key": "login-0001"})
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = api.post("/v1/logins", body | {"cap_code": "00000000"},
                     **{"Idempotency-Key": "login-0001"})
    assert _problem(other, 422)["type"].endswith("idempotency-key-reused")
    # without the key the same body is a second decision: refused (the challenge is spent)
    _problem(api.post("/v1/logins", body), 401, "AUTH_FAILED")


def test_a_reset_code_is_shown_once_even_to_a_retry(api):
    admin = api.cap_login("A1")[1].json()["session"]["id"]
    body = {"session": admin, "subscription": "C1", "user_no": "U2"}
    r = api.post("/v1/admin/reset-code", body, **{"Idempotency-Key": "reset-0001"})
    assert r.status_code == 200 and len(r.json()["code"]) >= 8
    again = api.post("/v1/admin/reset-code", body, **{"Idempotency-Key": "reset-0001"})
    assert _problem(again, 409)["type"].endswith("already-processed")
    with api.w.store.read() as tx:
        kept = tx.idempotent_get(api.row.id, "reset-0001")
    assert r.json()["code"].encode() not in kept.body


def test_malformed_and_oversized_requests_are_problems_not_errors(sqlite_world):
    api = Api(sqlite_world, limits=Limits(max_body_bytes=2048))
    r = api.post("/v1/logins", {"subscription": "C1", "user_no": "U1", "cap_code": "1" * 300})
    detail = _problem(r, 422)["detail"]
    assert "cap_code" in detail and "1" * 20 not in detail  # where, never the value
    r = api.client.post("/v1/logins", content=b"{" + b" " * 5000 + b"}",
                        headers={"Authorization": f"Bearer {api.key}",
                                 "content-type": "application/json"})
    _problem(r, 413)
    r = api.client.post("/v1/logins", content=(b"x" for _ in range(3000)),
                        headers={"Authorization": f"Bearer {api.key}"})  # chunked, no length
    _problem(r, 413)
    _problem(api.client.get("/v1/nowhere"), 404)


def test_a_slow_answer_is_a_503_within_the_limit(sqlite_world, monkeypatch):
    api = Api(sqlite_world, limits=Limits(request_seconds=0.3))
    release, done = threading.Event(), threading.Event()
    original = sqlite_world.service.login

    def slow_login(req):
        release.wait(5)
        try:
            return original(req)
        finally:
            done.set()

    monkeypatch.setattr(sqlite_world.service, "login", slow_login)
    t0 = time.monotonic()
    r = api.post("/v1/logins", {"subscription": "C1", "user_no": "U1", "code": "Wrong-code-1"})
    assert time.monotonic() - t0 < 2
    _problem(r, 503)
    assert r.headers["retry-after"] == "1"
    release.set()
    assert done.wait(5)  # the abandoned decision still ends (before the store closes)


def test_access_log_lines_are_json_without_secrets(api, caplog):
    with caplog.at_level(logging.INFO, logger="capkey.server.access"):
        body, r = api.cap_login()
        ses = r.json()["session"]["id"]
        api.post("/v1/logout", {"session": ses})
    lines = [JsonFormatter().format(rec) for rec in caplog.records
             if rec.name == "capkey.server.access"]
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert [p["route"] for p in parsed] == ["/v1/login/challenges", "/v1/logins", "/v1/logout"]
    assert all(p["key"] == api.row.id and p["status"] == 200 for p in parsed)
    everything = "\n".join(lines)
    for secret in (body["cap_code"], body["challenge_id"], ses, api.key.split("_")[2]):
        assert secret not in everything


def test_metrics_count_outcomes_and_health_answers(api):
    api.cap_login()
    api.post("/v1/logins", {"subscription": "C1", "user_no": "U1", "code": "Wrong-code-1"})
    r = api.client.get("/metrics", headers={"Authorization": f"Bearer {api.key}"})
    assert r.status_code == 200
    text = r.text
    assert 'capkey_decisions_total{operation="login",outcome="OK"} 1.0' in text
    assert 'capkey_decisions_total{operation="login",outcome="AUTH_FAILED"} 1.0' in text
    assert 'capkey_http_request_seconds_bucket{le="0.001",route="/v1/logins"}' in text
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ok"}
    r = api.client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {api.key}"})
    assert r.json()["ok"] is True and r.json()["records"] > 0


def test_readyz_is_503_when_the_database_is_gone(sqlite_world):
    api = Api(sqlite_world)
    sqlite_world.store.close()
    _problem(api.client.get("/readyz"), 503)
    assert api.client.get("/healthz").status_code == 200


def test_code_login_with_forced_change(api):
    api.cap_login()  # the first code login needs an SCA before it (R6)
    r = api.post("/v1/logins", {"subscription": "C1", "user_no": "U1",
                                "code": api.w.codes["U1"]})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "CODE_CHANGE_REQUIRED"
    ses = r.json()["session"]
    assert ses["must_change"] is True
    op = {"session": ses["id"], "operation": "VIEW_ACCOUNTS"}
    _problem(api.post("/v1/authorize", op), 403, Outcome.CODE_CHANGE_REQUIRED.value)
    r = api.post("/v1/code/change", {"session": ses["id"], "old_code": api.w.codes["U1"],
                                     "new_code": "Nouveau-code-42"})
    assert r.json() == {"outcome": "OK"}, r.text
    assert api.post("/v1/authorize", op).json() == {"outcome": "OK"}


def test_unblock_lifts_a_block_and_names_an_unknown_user(api):
    for _ in range(api.w.service.config.max_failures):
        api.post("/v1/logins", {"subscription": "C1", "user_no": "U2", "code": "Wrong-code-1"})
    assert api.w.state("U2").blocked_until is not None
    r = api.post("/v1/admin/unblock", {"subscription": "C1", "user_no": "U2"})
    assert r.json() == {"unblocked": True}, r.text
    assert api.w.state("U2").blocked_until is None
    _problem(api.post("/v1/admin/unblock", {"subscription": "C1", "user_no": "NOBODY"}), 404)


def test_api_key_commands_show_a_key_once_and_revoke_it(tmp_path):
    from click.testing import CliRunner

    from capkey._cli.__main__ import cli
    from capkey._cli.util import CliFail

    db = f"sqlite:///{tmp_path / 'bank.db'}"
    run = CliRunner().invoke
    made = run(cli, ["api-key", "--db", db, "create", "--scope", "login", "--label", "web"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("ck_") and "shown once" in made.stderr
    key_id = key.split("_")[1]
    listed = run(cli, ["api-key", "--db", db, "list"])
    assert key_id in listed.stdout and "login" in listed.stdout
    assert key.split("_")[2] not in listed.stdout
    assert run(cli, ["api-key", "--db", db, "revoke", key_id]).exit_code == 0
    assert "revoked" in run(cli, ["api-key", "--db", db, "list"]).stdout
    again = run(cli, ["api-key", "--db", db, "revoke", key_id]).exception
    assert isinstance(again, CliFail) and again.status == 1 and "no active key" in str(again)
    bad = run(cli, ["serve", "--db", db, "--origin", "https://b.example", "--ca",
                    str(tmp_path)]).exception
    assert isinstance(bad, CliFail) and bad.status == 2 and "not a CA folder" in str(bad)
