"""Test helper for the portal tests: a real `AuthService` on SQLite with the real CAP and signature
verifiers, a bank CA, one subscription, and the person's credentials computed in software:

- the CAP card: codes computed by `cap_card_model.make_code` (capkey.emv.hazmat, the card's own
  computation) for the card personalised with the published test IMK;
- the certificate key: `fake_certkey.FakeCertKey` (software P-256 keys with an attestation key the
  CA provisioned), certified by the CA for the user.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cap_card_model import make_code
from cryptography.hazmat.primitives import serialization
from fake_certkey import FakeCertKey, raw_signature
from starlette.testclient import TestClient

from capkey.cert.ca import CertificateAuthority
from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.emv.verifier import Mode
from capkey.portal import PortalConfig
from capkey.portal import create_app as create_portal
from capkey.rules import AuthService, RulesConfig
from capkey.rules.adapters import CapVerifier, SignatureVerifier
from capkey.rules.codes import CodeHasher
from capkey.store import open_store

ORIGIN = "http://testserver"
AGENT = "http://127.0.0.1:8401"
SUB = "123456789"


class Clock:
    def __init__(self) -> None:
        self.t = datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@dataclass
class Card:
    """The person's CAP card and reader (ATC moves with each code)."""

    pan: str
    psn: int = 1
    atc: int = 0
    profile = VISA_DPA_CVN10

    def respond(self, challenge: str) -> str:
        self.atc += 1
        return make_code(self.profile, self.pan, self.psn, self.atc, Mode.RESPOND,
                         challenge=challenge)

    def sign(self, challenge: str, amount: int) -> str:
        self.atc += 1
        return make_code(self.profile, self.pan, self.psn, self.atc, Mode.SIGN,
                         challenge=challenge, amount=amount)

    def identify(self) -> str:
        self.atc += 1
        return make_code(self.profile, self.pan, self.psn, self.atc, Mode.IDENTIFY)


@dataclass
class World:
    service: AuthService
    clock: Clock
    ca: CertificateAuthority
    cards: dict[str, Card] = field(default_factory=dict)
    keys: dict[str, tuple[FakeCertKey, bytes]] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)

    def sign(self, user: str, payload: bytes) -> tuple[str, str]:
        """What the agent answers: (base64 signature r||s, base64 certificate DER)."""
        key, der = self.keys[user]
        return (base64.b64encode(raw_signature(key.slots[0], payload)).decode(),
                base64.b64encode(der).decode())


def build(tmp_path, *, agent: str | None = AGENT, config: RulesConfig | None = None,
          **portal: Any) -> tuple[World, TestClient]:
    """The world and a client of its portal (`config`: the rules' settings; `portal`: more
    arguments of `create_portal`)."""
    clock = Clock()
    store = open_store(str(tmp_path / "capkey.db"))
    ca = CertificateAuthority.create(tmp_path / "ca", name="Banque demo",
                                     encryption=serialization.NoEncryption(),
                                     now=clock.now() - timedelta(minutes=1))
    signature = SignatureVerifier(ca.trust_config(), ca.revocation(), origin=ORIGIN)
    cap = CapVerifier(SoftwareIssuerBackend.for_tests(), origin=ORIGIN)
    service = AuthService(store, cap_verifier=cap, signature_verifier=signature, clock=clock,
                          code_hasher=CodeHasher.insecure_for_tests(), config=config)
    world = World(service, clock, ca)
    d = service.directory
    d.create_subscription(SUB, actor="ops")
    for n, (user, role) in enumerate((("0001", "principal"), ("0002", "user"),
                                      ("0003", "admin"))):
        d.add_user(SUB, user, role, actor="ops")
        card = Card(pan=f"49701012345678{n:02d}")
        d.attach_card(SUB, user, {"profile": card.profile.name, "pan": card.pan,
                                  "psn": card.psn, "imk_label": TEST_IMK_LABEL}, actor="ops")
        world.cards[user] = card
        key = FakeCertKey(serial=f"e661410{n}")
        ca.provision_device(key.serial, key.attestation_public_key(), now=clock.now())
        public, attestation = key.generate(0)
        cert = ca.issue_certificate(public, attestation, SUB, user, now=clock.now())
        der = cert.public_bytes(serialization.Encoding.DER)
        key.load_certificate(0, der)
        d.attach_certificate(SUB, user, der, actor="ops")
        world.keys[user] = (key, der)
        world.codes[user] = d.set_code(SUB, user, actor="ops")
    app = create_portal(service, PortalConfig(origin=ORIGIN, agent_url=agent), **portal)
    return world, TestClient(app, base_url=ORIGIN)


# -- reading pages as the person does ----------------------------------------------------------


def csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF token on the page"
    return m.group(1)


def text(page: str) -> str:
    """The visible text, tags removed, entities decoded, whitespace collapsed."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def challenge_digits(page: str, iban: str | None = None) -> str:
    """The digits the person types as the challenge: what the page shows, and for a transfer the
    last 4 digits of the payee's IBAN, which the person takes from their own record."""
    m = re.search(r'id="stepup-control">(\d{4})<', page)
    if m:
        if iban is None:  # a batch: the page gives the count too
            count = re.search(r"sur 4 chiffres \(<strong>(\d{4})</strong>\)", page)
            assert count, "no order count on the page"
            return m.group(1) + count.group(1)
        return m.group(1) + "".join(c for c in iban if c.isdigit())[-4:]
    parts = re.findall(r'class="challenge"[^>]*>([^<]+)<', page)
    assert parts, "no challenge on the page"
    return "".join(p for p in "".join(parts) if p.isdigit())


def payload_of(page: str) -> bytes:
    m = re.search(r'data-payload="([^"]+)"', page)
    assert m, "no payload on the page"
    return base64.b64decode(html.unescape(m.group(1)))
