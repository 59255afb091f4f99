"""Honest fakes and fixtures for the rule and store tests (imported by test_rules_*, test_store_*,
test_audit*). The fakes implement `CapCheck` and `SignatureCheck` with real cryptography:

- `FakeCap`: a card computes ``code = ATC mod 64 (2 digits) ‖ 6 digits of HMAC-SHA256(card key,
  ATC ‖ mode ‖ challenge ‖ amount ‖ currency)``; the verifier rebuilds the ATC from its low bits
  inside a look-ahead window above the floor (at most one candidate), like a CAP verifier. Card keys
  live in the fake "HSM" (derived from the profile's key reference), never in the profile.
- `FakeSignature`: a test CA (ECDSA P-256, real X.509), leaf certificates with validity, key usage
  and a revocation table; the signature is ECDSA over a canonical encoding of the `SigningIntent`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from capkey.rules import (
    AuthService,
    CapCard,
    CapCheck,
    CapMode,
    CertEvidence,
    LoginRequest,
    Outcome,
    Payment,
    RegisteredCertificate,
    Rejected,
    RulesConfig,
    SignatureCheck,
    SigningIntent,
)
from capkey.rules.codes import CodeHasher
from capkey.store import open_store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PG_DEFAULT_DSN = "postgresql://capkey:capkey@127.0.0.1:5432/capkey"
HSM_SECRET = b"capkey-tests-hsm"
_WINDOW = 32


class ManualClock:
    def __init__(self, t: datetime = T0):
        self.t = t

    def now(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> datetime:
        self.t += timedelta(**kw)
        return self.t


def card_key(key_ref: str) -> bytes:
    """The fake HSM: a card key is derived from its reference (never stored in a profile)."""
    return hmac.new(HSM_SECRET, key_ref.encode(), hashlib.sha256).digest()


def fake_challenge(mode: CapMode) -> str:
    """8 digits from the nonce, purpose and digest (what a real verifier derives from the
    canonical payload)."""
    h = hashlib.sha256(b"fake-cap\x00" + mode.nonce + mode.purpose.encode() + b"\x00" + mode.digest)
    return f"{int.from_bytes(h.digest()[:8], 'big') % 10**8:08d}"


def _mac(key: bytes, atc: int, kind: str, challenge: str, amount: int | None,
         currency: str | None) -> str:
    msg = f"{atc}|{kind}|{challenge}|{amount}|{currency}".encode()
    return f"{int.from_bytes(hmac.new(key, msg, hashlib.sha256).digest()[:8], 'big') % 10**6:06d}"


@dataclass
class FakeCard:
    """The person's card and reader: produces codes with a moving ATC."""

    key_ref: str
    pan: str = "4970101234567890"
    atc: int = 0

    @property
    def profile(self) -> dict:
        return {"pan": self.pan, "psn": "01", "key_ref": self.key_ref, "cvn": 10}

    def respond(self, challenge: str) -> str:
        return self._code("respond", challenge, None, None)

    def sign(self, challenge: str, amount: int, currency: str) -> str:
        return self._code("sign", challenge, amount, currency)

    def identify(self) -> str:
        return self._code("identify", "", None, None)

    def _code(self, kind: str, challenge: str, amount: int | None, currency: str | None) -> str:
        self.atc += 1
        return f"{self.atc % 64:02d}" + _mac(card_key(self.key_ref), self.atc, kind, challenge,
                                             amount, currency)


class FakeCap:
    """A `CapCheck`: rebuilds the ATC above the floor from its low bits, then checks the MAC."""

    def __init__(self) -> None:
        self.calls = 0

    def challenge(self, mode: CapMode) -> str:
        return fake_challenge(mode)

    def verify(self, card: CapCard, code: str, mode: CapMode) -> int:
        self.calls += 1
        challenge = fake_challenge(mode)
        if not (isinstance(code, str) and len(code) == 8 and code.isdigit()):
            raise Rejected()
        low = int(code[:2])
        # a login takes a Respond code over its challenge or an Identify code (the CODE key)
        kinds = (("respond", challenge), ("identify", "")) if mode.kind == "login" else (
            (mode.kind, challenge),)
        for atc in range(card.last_atc + 1, card.last_atc + 1 + _WINDOW):
            if atc % 64 == low:
                key = card_key(card.profile["key_ref"])
                for kind, digits in kinds:
                    want = _mac(key, atc, kind, digits, mode.amount_minor, mode.currency)
                    if hmac.compare_digest(want, code[2:]):
                        return atc
                break
        raise Rejected()


    def resync(self, card: CapCard, code1: str, code2: str) -> int:
        """Two consecutive Identify codes anywhere in the next 4096 ATC values."""
        key = card_key(card.profile["key_ref"])
        found = [atc + 1 for atc in range(card.last_atc + 1, card.last_atc + 4096)
                 if code1 == f"{atc % 64:02d}" + _mac(key, atc, "identify", "", None, None)
                 and code2 == f"{(atc + 1) % 64:02d}" + _mac(key, atc + 1, "identify", "", None,
                                                              None)]
        if len(found) != 1:
            raise Rejected()
        return found[0]


def intent_payload(intent: SigningIntent) -> bytes:
    parts = [intent.purpose.encode(), intent.challenge, intent.subscription.encode(),
             intent.user_no.encode(), intent.digest]
    return b"capkey-test-sig\x00" + b"".join(len(p).to_bytes(2, "big") + p for p in parts)


@dataclass
class TestCA:
    """A bank CA for the fake signature verifier, and the certificate keys it issues."""

    __test__ = False
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(
        ec.SECP256R1()))
    revoked: set[int] = field(default_factory=set)
    good: set[int] = field(default_factory=set)  # serials with a known, good status

    def issue(self, name: str, *, not_before: datetime = T0 - timedelta(days=1),
              days: int = 365, digital_signature: bool = True) -> tuple[ec.EllipticCurvePrivateKey,
                                                                        bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Bank CA")]))
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=days))
            .add_extension(x509.KeyUsage(digital_signature, False, False, False, False, False,
                                         False, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.good.add(serial)
        return key, cert.public_bytes(serialization_der())


def serialization_der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


class FakeSignature:
    """A `SignatureCheck` over `TestCA`: chain to the CA, validity, key usage, revocation known
    and good, registration fingerprint, ECDSA over the intent's canonical payload."""

    def __init__(self, ca: TestCA):
        self.ca = ca
        self.calls = 0

    def verify(self, evidence: CertEvidence, intent: SigningIntent,
               registered: RegisteredCertificate, now: datetime) -> None:
        self.calls += 1
        try:
            cert = x509.load_der_x509_certificate(evidence.certificate)
            self.ca.key.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                            ec.ECDSA(hashes.SHA256()))
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise ValueError("expired")
            if not cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
                raise ValueError("usage")
            if cert.serial_number in self.ca.revoked or cert.serial_number not in self.ca.good:
                raise ValueError("revoked or unknown")
            if hashlib.sha256(evidence.certificate).hexdigest() != registered.fingerprint:
                raise ValueError("not the registered certificate")
            cert.public_key().verify(evidence.signature, intent_payload(intent),
                                     ec.ECDSA(hashes.SHA256()))
        except (ValueError, InvalidSignature, x509.ExtensionNotFound):
            raise Rejected() from None


def client_intent(purpose, nonce, sub, user, digest, record=None) -> SigningIntent:
    """What the client's key signs (the payload does not carry the expiry)."""
    return SigningIntent(purpose, nonce, sub, user, digest, T0, record)


def sign_intent(key: ec.EllipticCurvePrivateKey, intent: SigningIntent) -> bytes:
    return key.sign(intent_payload(intent), ec.ECDSA(hashes.SHA256()))


assert isinstance(FakeCap(), CapCheck)
assert isinstance(FakeSignature(TestCA()), SignatureCheck)


# -- PostgreSQL availability -------------------------------------------------------------------

#: Engine parameters: the PostgreSQL ones carry the `postgres` marker (deselect with
#: ``-m "not postgres"``); they skip with the reason when no server answers.
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pg_dsn() -> str:
    return os.environ.get("CAPKEY_PG_DSN") or PG_DEFAULT_DSN


_PG_REASON: list[str] = []


def pg_unavailable() -> str:
    """'' when PostgreSQL answers at CAPKEY_PG_DSN (or the default DSN), else the reason."""
    if not _PG_REASON:
        try:
            import psycopg

            with psycopg.connect(pg_dsn(), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _PG_REASON.append("")
        except Exception as exc:  # any failure means: skip, and say why
            where = ("CAPKEY_PG_DSN" if os.environ.get("CAPKEY_PG_DSN")
                     else f"the default {PG_DEFAULT_DSN} (CAPKEY_PG_DSN unset)")
            _PG_REASON.append(f"PostgreSQL unreachable at {where} ({type(exc).__name__}); "
                              "start one with: bash host/tests/start_postgres.sh")
    return _PG_REASON[0]


def make_target(engine: str, tmp_path) -> tuple[str, str | None]:
    """(target, schema) for a fresh store on `engine`."""
    if engine == "sqlite":
        return str(tmp_path / "capkey.db"), None
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    return pg_dsn(), f"t_{secrets.token_hex(6)}"


# -- a provisioned world -----------------------------------------------------------------------

@dataclass
class World:
    service: AuthService
    clock: ManualClock
    cap: FakeCap
    sig: FakeSignature
    ca: TestCA
    cards: dict[str, FakeCard]
    cert_keys: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]]
    codes: dict[str, str]
    events: list

    @property
    def store(self):
        return self.service.store

    @property
    def directory(self):
        return self.service.directory

    def cap_login(self, user: str, *, sub: str = "C1", code: str | None = None, **kw):
        ch = self.service.issue_login_challenge(sub, user)
        if code is None:
            code = self.cards[user].respond(ch.cap_challenge)
        return self.service.login(LoginRequest(sub, user, cap_code=code, challenge_id=ch.id, **kw))

    def cert_login(self, user: str, *, sub: str = "C1", key_user: str | None = None, **kw):
        ch = self.service.issue_login_challenge(sub, user)
        key, der = self.cert_keys[key_user or user]
        from capkey.rules import login_digest

        intent = client_intent("LOGIN", ch.nonce, sub, user, login_digest(sub, user))
        ev = CertEvidence(der, sign_intent(key, intent))
        return self.service.login(LoginRequest(sub, user, cert=ev, challenge_id=ch.id, **kw))

    def code_login(self, user: str, code: str | None = None, *, sub: str = "C1", **kw):
        return self.service.login(
            LoginRequest(sub, user, code=self.codes[user] if code is None else code, **kw))

    def audit(self) -> list[tuple]:
        with self.store.read() as tx:
            return tx.audit_rows()

    def state(self, user: str, sub: str = "C1"):
        return self.directory.user_state(sub, user)


USERS = {"P1": "principal", "A1": "admin", "U1": "user", "U2": "user"}


def build_world(target: str, schema: str | None = None, *, config: RulesConfig | None = None,
                hasher: CodeHasher | None = None, provision: bool = True) -> World:
    clock = ManualClock()
    store = open_store(target, schema=schema)
    cap, ca = FakeCap(), TestCA()
    sig = FakeSignature(ca)
    events: list = []
    service = AuthService(store, cap_verifier=cap, signature_verifier=sig, config=config,
                          clock=clock, code_hasher=hasher or CodeHasher.insecure_for_tests(),
                          on_event=lambda name, details: events.append((name, details)))
    world = World(service, clock, cap, sig, ca, {}, {}, {}, events)
    if provision:
        d = service.directory
        for sub in ("C1", "C2"):
            d.create_subscription(sub, actor="ops")
            for user, role in USERS.items():
                d.add_user(sub, user, role, actor="ops")
                if sub != "C1":
                    continue
                card = FakeCard(key_ref=f"{sub}-{user}", pan=f"49701012345678{len(world.cards):02d}")
                d.attach_card(sub, user, card.profile, actor="ops")
                world.cards[user] = card
                key, der = ca.issue(f"{sub}-{user}")
                d.attach_certificate(sub, user, der, actor="ops")
                world.cert_keys[user] = (key, der)
                world.codes[user] = d.set_code(sub, user, actor="ops")
    return world


@pytest.fixture(name="world")
def world_fixture(tmp_path):
    w = build_world(str(tmp_path / "capkey.db"))
    yield w
    w.store.close()


@pytest.fixture(name="engine_world", params=ENGINES)
def engine_world_fixture(request, tmp_path):
    target, schema = make_target(request.param, tmp_path)
    w = build_world(target, schema)
    yield w
    if schema is not None:
        w.store.drop_schema()
    w.store.close()


def activate_code(w: World, user: str) -> str:
    """First SCA, then the forced change: leaves `user` with a normal, known code."""
    assert w.cap_login(user).outcome is Outcome.OK
    first = w.code_login(user)
    assert first.outcome is Outcome.CODE_CHANGE_REQUIRED
    new = f"Nw{user}x7Kq9"
    assert w.service.change_code(first.session, w.codes[user], new) is Outcome.OK
    w.codes[user] = new
    return new


# -- self-checks of the fakes (they must be able to say no) ------------------------------------

def test_fake_cap_rejects_wrong_mode_and_replayed_atc():
    cap, card = FakeCap(), FakeCard("k")
    state = CapCard(1, card.profile, -1)
    mode = CapMode("respond", "LOGIN", b"n" * 32, b"d" * 32, "C1", "U1")
    code = card.respond(cap.challenge(mode))
    assert cap.verify(state, code, mode) == 1
    with pytest.raises(Rejected):
        cap.verify(CapCard(1, card.profile, 1), code, mode)  # floor already at 1
    pay = Payment(100, "EUR", "FR7630006000011234567890189", "ACME")
    sign = CapMode("sign", "SCT_INST_ENTRY", b"n" * 32, b"d" * 32, "C1", "U1", pay)
    with pytest.raises(Rejected):
        cap.verify(state, card.respond(cap.challenge(sign)), sign)
    assert cap.verify(state, card.sign(cap.challenge(sign), 100, "EUR"), sign) == 3


def test_fake_signature_rejects_revoked_and_foreign_certificates():
    ca = TestCA()
    sig = FakeSignature(ca)
    key, der = ca.issue("u")
    intent = client_intent("LOGIN", b"c" * 32, "C1", "U1", b"d" * 32)
    reg = RegisteredCertificate(1, hashlib.sha256(der).hexdigest(), "1")
    ev = CertEvidence(der, sign_intent(key, intent))
    sig.verify(ev, intent, reg, T0)
    ca.revoked.add(x509.load_der_x509_certificate(der).serial_number)
    with pytest.raises(Rejected):
        sig.verify(ev, intent, reg, T0)
    other_key, other_der = TestCA().issue("u")
    with pytest.raises(Rejected):
        sig.verify(CertEvidence(other_der, sign_intent(other_key, intent)), intent,
                   RegisteredCertificate(1, hashlib.sha256(other_der).hexdigest(), "1"), T0)
