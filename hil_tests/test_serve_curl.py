"""The README's `capkey serve` example, step for step (issue 11): a real `capkey serve` process on
SQLite, `curl` for every call, and the device's card for the codes: a login with the guide's CODE
key (Identify) and a payee step-up with Réponse; a replayed code and a retried request as the
service answers them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cap_support import home, personalise, read_code, type_pin

pytestmark = pytest.mark.destructive

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Curl:
    def __init__(self, url: str, key: str):
        self.url, self.key = url, key

    def __call__(self, path: str, body: dict | None = None, *headers: str) -> tuple[int, dict]:
        cmd = ["curl", "-s", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {self.key}",
               "-H", "Content-Type: application/json"]
        for h in headers:
            cmd += ["-H", h]
        if body is not None:
            cmd += ["-d", json.dumps(body)]
        out = subprocess.run([*cmd, self.url + path], capture_output=True, text=True,
                             check=True, timeout=30).stdout
        text, status = out.rsplit("\n", 1)
        return int(status), json.loads(text)


@pytest.fixture
def served(tmp_path):
    env = os.environ | {"CAPKEY_AUDIT_TEST_KEY": "1"}
    db = f"sqlite:///{tmp_path / 'bank.db'}"

    def capkey(*args: str) -> str:
        return subprocess.run([BIN / "capkey", *args], env=env, capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()

    capkey("admin", "--db", db, "create-subscription", "C1234")
    capkey("admin", "--db", db, "add-user", "C1234", "U1", "--role", "principal")
    profile = tmp_path / "card.json"
    profile.write_text(json.dumps({"profile": "visa-dpa-cvn10", "pan": "4761739001010010",
                                   "psn": 1, "imk_label": "test-imk"}))
    capkey("admin", "--db", db, "attach-card", "C1234", "U1", str(profile))
    key = capkey("api-key", "--db", db, "create", "--scope", "login", "--scope", "stepup",
                 "--label", "web")
    port = _port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([BIN / "capkey", "serve", "--db", db, "--origin",
                             "https://banque.example", "--test-keys", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    curl = Curl(f"http://127.0.0.1:{port}", key)
    deadline = time.monotonic() + 30
    while subprocess.run(["curl", "-sf", f"{curl.url}/readyz"], capture_output=True).returncode:
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "serve.log").read_text()
        time.sleep(0.2)
    yield curl
    proc.terminate()
    proc.wait(20)
    log.close()


def test_readme_login_with_code_then_step_up_with_reponse(device, operator, served):
    curl = served
    personalise(device, operator, profile_id=1)
    home(operator)
    status, ch = curl("/v1/login/challenges", {"subscription": "C1234", "user_no": "U1"})
    assert status == 200 and len(ch["cap_challenge"]) == 8
    operator.press("A")  # CODE
    type_pin(operator)
    code = read_code(operator)
    login = {"subscription": "C1234", "user_no": "U1", "challenge_id": ch["challenge_id"],
             "cap_code": code}
    status, body = curl("/v1/logins", login, "Idempotency-Key: login-7f3a9c21")
    assert status == 200 and body["outcome"] == "OK", body
    session = body["session"]["id"]
    assert body["session"]["auth_level"] == "SCA"
    # the retry (same key) gets the same answer; the same code without it is a replay
    assert curl("/v1/logins", login, "Idempotency-Key: login-7f3a9c21") == (200, body)
    status, refused = curl("/v1/logins", login)
    assert status == 401 and refused["type"] == "urn:capkey:problem:auth-failed"
    home(operator)

    op = {"session": session, "operation": "MANAGE_PAYEES", "operation_id": "payee-7"}
    status, step = curl("/v1/step-ups", op)
    assert status == 200 and step["cap_mode"] == "respond", step
    operator.press("B1")  # SIGN → 1 Réponse
    operator.wait_for_text("Code défi")
    operator.press(step["cap_challenge"] + "D")
    type_pin(operator)
    answer = read_code(operator)
    status, done = curl(f"/v1/step-ups/{step['challenge_id']}/complete", op | {"cap_code": answer})
    assert (status, done) == (200, {"outcome": "OK"})
    assert curl("/v1/authorize", op) == (200, {"outcome": "OK"})
    home(operator)
