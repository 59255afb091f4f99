"""`capkey serve` as a bank runs it (a process, two uvicorn workers, SQLite), fuzzed by
schemathesis from the schema it serves: no 5xx, every status, content type, header and body as
docs/openapi.json says (issue 11). Also: the committed schema is the one served, and one code
sent by many callers at once to both workers is accepted once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from capkey_dev.bench.rules import Card

from capkey.emv.issuer import TEST_IMK_LABEL
from capkey.rules import Directory
from capkey.store import SoftwareAuditKey, open_store

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RACE_PAN = "4974000000000016"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    env = os.environ | {"CAPKEY_AUDIT_TEST_KEY": "1"}
    db = f"sqlite:///{folder / 'bank.db'}"
    key = subprocess.run(
        [BIN / "capkey", "api-key", "--db", db, "create", "--label", "fuzz", *(
            a for s in ("login", "stepup", "admin", "audit", "metrics") for a in ("--scope", s))],
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    store = open_store(db, audit_key=SoftwareAuditKey.for_tests())
    directory = Directory(store)
    directory.create_subscription("R1", actor="tests")
    directory.add_user("R1", "U1", "user", actor="tests")
    directory.attach_card("R1", "U1", {"profile": "visa-dpa-cvn10", "pan": RACE_PAN, "psn": 1,
                                       "imk_label": TEST_IMK_LABEL}, actor="tests")
    store.close()
    port = _free_port()
    log = open(folder / "serve.log", "w")
    proc = subprocess.Popen(
        [BIN / "capkey", "serve", "--db", db, "--origin", "https://banque.example",
         "--test-keys", "--workers", "2", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, \
            (folder / "serve.log").read_text()
        time.sleep(0.2)
    yield url, key, folder / "serve.log"
    proc.terminate()
    proc.wait(20)
    log.close()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_breach(server):
    url, key, log = server
    result = subprocess.run(
        [BIN / "schemathesis", "run", f"{url}/openapi.json", "-H", f"Authorization: Bearer {key}",
         "--checks", CHECKS, "--max-examples", "15", "--workers", "2"],
        capture_output=True, text=True, timeout=600, cwd=log.parent)  # its cache stays there
    tail = "\n".join(result.stdout.splitlines()[-25:])
    print(tail)  # the summary (operations, test cases, seed) in the test log
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n--- server log ---\n" \
                                   f"{log.read_text()[-3000:]}"
    assert "generated" in tail


def test_the_committed_schema_is_the_served_one(server):
    url, _, _ = server
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=5) as r:
        served = json.load(r)
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == committed
    assert served["openapi"].startswith("3.1")


def test_metrics_sum_the_workers_and_logs_are_json(server):
    url, key, log = server
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"})
    for _ in range(4):  # several connections: both workers answer some
        with urllib.request.urlopen(request, timeout=5) as r:
            text = r.read().decode()
    assert "capkey_http_requests_total" in text
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["logger"] == "capkey.server.access" for line in lines)
    assert key.split("_")[2] not in log.read_text()


def _post(url: str, key: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_one_code_from_many_callers_at_once_is_accepted_once(server):
    url, key, _ = server
    card = Card(RACE_PAN)
    status, ch = _post(url, key, "/v1/login/challenges", {"subscription": "R1", "user_no": "U1"})
    assert status == 200
    login = {"subscription": "R1", "user_no": "U1", "challenge_id": ch["challenge_id"],
             "cap_code": card.identify()}
    start = threading.Barrier(16)
    answers: list[int] = []

    def caller() -> None:
        start.wait(10)
        answers.append(_post(url, key, "/v1/logins", login)[0])

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(answers) == [200] + [401] * 15
