"""The local signing agent and the KeyClient under it (with the test double of the device)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fake_certkey import FakeCertKey, FakeKeyLink
from starlette.testclient import TestClient

from capkey.agent.app import AgentConfig, create_app, parse_origins
from capkey.cert import payload as P
from capkey.cert.ca import CertificateAuthority
from capkey.cert.verifier import ExpectedPayload, certificate_fingerprint, verify_signature
from capkey.link.errors import ProtocolError
from capkey.link.key import KeyClient, KeyState, enrol

NOW = dt.datetime(2026, 11, 27, 14, 0, tzinfo=dt.UTC)
ORIGIN = "https://banque.example"
PORT = 8731
HOST = f"127.0.0.1:{PORT}"
CH = bytes(range(32))


@pytest.fixture
def setup(tmp_path):
    ca = CertificateAuthority.create(
        tmp_path / "ca", name="Banque Exemple", encryption=serialization.NoEncryption(), now=NOW
    )
    device = FakeCertKey()
    ca.provision_device(device.serial, device.attestation_public_key(), now=NOW)
    link = FakeKeyLink(device, chosen_slot=2)
    cert = enrol(KeyClient(link), ca, slot=2, subscription="123456789", user="01", now=NOW)

    @contextlib.contextmanager
    def open_key():
        yield KeyClient(link)

    config = AgentConfig(allowed_origins=frozenset({ORIGIN}), port=PORT, open_key=open_key)
    client = TestClient(create_app(config), base_url=f"http://{HOST}")
    return ca, device, link, cert, client, config


def _headers(origin=ORIGIN, host=HOST):
    return {"Origin": origin, "Host": host}


def test_enrol_through_the_key_client(setup):
    ca, device, link, cert, *_ = setup
    status = KeyClient(link).status()
    assert status.state is KeyState.ACTIVE
    assert (status.pin_left, status.pin_now, status.puk_left) == (8, 3, 8)
    assert status.slots[2].certified and status.slots[2].has_key
    assert status.slots[2].subject == cert.subject.public_bytes()
    assert not status.slots[0].has_key
    assert KeyClient(link).certificates() == {2: cert}
    assert cert.public_key() == device.slots[2].public_key()
    assert ca.issued()[0].slot == 2


def test_list_certificates(setup):
    _, _, _, cert, client, _ = setup
    r = client.get("/v1/certificates", headers=_headers())
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    (entry,) = r.json()["certificates"]
    assert entry["slot"] == 2
    assert base64.b64decode(entry["certificate"]) == cert.public_bytes(serialization.Encoding.DER)
    assert entry["fingerprint"] == certificate_fingerprint(cert).hex()
    assert "UID=01" in entry["subject"]


def test_sign_payment_and_the_bank_verifies_it(setup):
    ca, device, _, cert, client, _ = setup
    fields = P.PaymentPayload(CH, 125000, "EUR", "FR7630006000011234567890189", "ACME SARL")
    body = {"payload": base64.b64encode(fields.to_bytes()).decode()}
    r = client.post("/v1/sign", json=body, headers=_headers())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["slot"] == 2
    assert device.shown[-1][:3] == ["Virement", "1 250,00 EUR", "vers FR76 3000"]
    der = base64.b64decode(answer["certificate"])
    verify_signature(
        payload=bytes(fields.to_bytes()),
        signature=base64.b64decode(answer["signature"]),
        certificate=der,
        expected=ExpectedPayload(fields, NOW + dt.timedelta(minutes=5)),
        trust=ca.trust_config(),
        revocation=ca.revocation(),
        registered_fingerprints={certificate_fingerprint(cert)},
        now=NOW + dt.timedelta(seconds=30),
    )


def test_login_payload_must_name_the_requesting_origin(setup):
    *_, client, _ = setup
    own = P.LoginPayload(CH, ORIGIN, "123456789", "01")
    other = P.LoginPayload(CH, "https://other.example", "123456789", "01")
    ok = client.post(
        "/v1/sign", json={"payload": base64.b64encode(own.to_bytes()).decode()}, headers=_headers()
    )
    assert ok.status_code == 200
    r = client.post(
        "/v1/sign",
        json={"payload": base64.b64encode(other.to_bytes()).decode()},
        headers=_headers(),
    )
    assert (r.status_code, r.json()) == (403, {"error": "forbidden"})


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Host": HOST},
        {"Host": HOST},  # no Origin
        {"Origin": ORIGIN, "Host": f"rebind.evil.example:{PORT}"},  # DNS rebinding
        {"Origin": ORIGIN, "Host": "127.0.0.1:9999"},
        {"Origin": "null", "Host": HOST},
    ],
)
def test_foreign_callers_are_refused_without_cors(setup, headers):
    _, device, link, _, client, _ = setup
    before = len(link.calls)
    for r in (
        client.get("/v1/certificates", headers=headers),
        client.post("/v1/sign", json={"payload": ""}, headers=headers),
        client.options("/v1/sign", headers=headers),
    ):
        assert r.status_code == 403
        assert "access-control-allow-origin" not in r.headers
    assert len(link.calls) == before  # the device was never asked


def test_preflight_for_an_allowed_origin(setup):
    *_, client, _ = setup
    r = client.options(
        "/v1/sign",
        headers={
            **_headers(),
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-private-network"] == "true"


@pytest.mark.parametrize(
    "body",
    [
        {"payload": "not base64!"},
        {"payload": base64.b64encode(b"\x01\x02short").decode()},
        {"payload": base64.b64encode(bytes.fromhex("0102") + CH).decode()},
        {"payload": "", "pin": "1234"},  # the agent never takes a PIN
        {"data": "x"},
        ["payload"],
    ],
)
def test_malformed_requests(setup, body):
    _, _, link, _, client, _ = setup
    before = len(link.calls)
    r = client.post("/v1/sign", json=body, headers=_headers())
    assert (r.status_code, r.json()) == (400, {"error": "bad_request"})
    assert len(link.calls) == before


def test_person_refuses_on_the_device(setup):
    _, _, link, _, client, _ = setup
    link.refuse = True
    fields = P.OperationPayload(CH, P.Purpose.ORDER_CHEQUEBOOK, "op-1")
    r = client.post(
        "/v1/sign",
        json={"payload": base64.b64encode(fields.to_bytes()).decode()},
        headers=_headers(),
    )
    assert (r.status_code, r.json()) == (409, {"error": "denied"})


def test_one_device_conversation_at_a_time(setup):
    _, _, _, _, client, config = setup
    assert config._busy.acquire()
    try:
        r = client.get("/v1/certificates", headers=_headers())
        assert (r.status_code, r.json()) == (409, {"error": "busy"})
    finally:
        config._busy.release()


def test_cancel_reaches_the_waiting_request(setup):
    *_, client, config = setup
    event = threading.Event()
    config._cancel[:] = [event]
    assert client.post("/v1/cancel", headers=_headers()).status_code == 200
    assert event.is_set()


def test_agent_config_refuses_wildcards():
    with pytest.raises(ValueError):
        AgentConfig(allowed_origins=frozenset({"*"}), port=PORT, open_key=lambda: None)
    with pytest.raises(ValueError):
        AgentConfig(allowed_origins=frozenset(), port=PORT, open_key=lambda: None)
    with pytest.raises(ValueError):
        parse_origins(["https://Banque.example/"])
    assert parse_origins(["http://127.0.0.1:8000"]) == frozenset({"http://127.0.0.1:8000"})


def test_key_client_checks_answers(setup):
    _, device, link, *_ = setup
    key = KeyClient(link)
    with pytest.raises(ValueError):
        key.generate(4)
    seen = []
    attestation = key.generate(1, on_keepalive=seen.append)
    assert seen == [2, 1]  # on status changes only
    assert attestation.slot == 1 and attestation.serial == device.serial
    with pytest.raises(ProtocolError):
        key.generate(1)  # occupied
    assert isinstance(key.certificate(1), type(None))
    key.delete(1)
    assert not KeyClient(link).status().slots[1].has_key
    assert isinstance(key.certificate(2), x509.Certificate)


def test_status_answers_allowed_pages_even_without_a_device(setup):
    *_, config = setup
    dead = dataclasses.replace(config, open_key=lambda: (_ for _ in ()).throw(OSError("none")))
    client = TestClient(create_app(dead), base_url=f"http://{HOST}")
    r = client.get("/v1/status", headers=_headers())
    assert r.status_code == 200 and r.json() == {"agent": "capkey"}
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert client.get("/v1/status", headers=_headers(origin="https://evil.example")).status_code \
        == 403
