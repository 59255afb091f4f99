"""Adapters from the rules' verifier protocols to capkey's own verifiers.

    from capkey.emv.issuer import SoftwareIssuerBackend
    from capkey.rules.adapters import CapVerifier, SignatureVerifier

    service = AuthService(
        store,
        cap_verifier=CapVerifier(issuer_backend, origin="https://banque.example"),
        signature_verifier=SignatureVerifier(ca.trust_config(), ca.revocation(),
                                             origin="https://banque.example"),
    )

Both build the canonical record of ``capkey.cert.payload`` (the bytes a certificate key signs and from
which the CAP challenge is derived, docs/payloads.md, docs/cap.md §5.4) from the rules' record and
the server's 32-byte challenge, so the CAP code and the signature are bound to exactly what the
service issued. `origin` is the web origin of the login page (it is part of the LOGIN payload).

A card profile (``capkey admin attach-card``) for `CapVerifier` is JSON with ``profile`` (a name of
``capkey.emv.profiles.PROFILES``, e.g. ``"visa-dpa-cvn10"``) or ``profile_id``, ``pan``, ``psn``,
``imk_label`` (the issuer master key's label in the key backend: a reference, never a key) and
optionally ``pin_try_limit`` and ``last_atc`` (the personalised initial ATC). The reader family of
the card's last accepted code is the store's (`CapCard.reader_family`): `CapVerifier.verify` then
accepts only that family's codes, and a resync searches every family the profile accepts, so that
it can move the card to a new reader (docs/cap.md §5.5).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..cert import payload as _payload
from ..cert import verifier as _sig
from ..emv import verifier as _cap
from ..emv.issuer import IssuerBackend
from ..emv.profiles import PROFILES, profile_by_id
from .interfaces import (
    CapAccepted,
    CapCard,
    CapMode,
    RegisteredCertificate,
    Rejected,
    SigningIntent,
)
from .model import Batch, CertEvidence, OperationRef, Payment

log = logging.getLogger(__name__)

_REASON = re.compile(r"[^a-z0-9_]")
_NOBODY_PAN = "0" * 16  # no issuer numbers a card so: the dummy card's
_NOBODY_REGISTERED = RegisteredCertificate(0, "00" * 32, "")  # matches no certificate


def canonical_payload(challenge: bytes, record: Payment | Batch | OperationRef | None,
                      subscription: str, user_no: str, origin: str) -> _payload.Payload:
    """The ``capkey.cert.payload`` record for a login (`record` None) or an operation."""
    if record is None:
        return _payload.LoginPayload(challenge, origin, subscription, user_no)
    if isinstance(record, Payment):
        return _payload.PaymentPayload(challenge, record.amount_minor, record.currency,
                                       record.payee_iban, record.payee_name)
    if isinstance(record, Batch):
        return _payload.BatchPayload(challenge, record.total_minor, record.currency,
                                     record.count, record.payees)
    if isinstance(record, OperationRef):
        return _payload.OperationPayload(challenge, _payload.Purpose[record.operation],
                                         record.operation_id)
    raise TypeError("unknown record type")


def card_from_profile(profile: Mapping[str, Any], last_atc: int,
                      reader_family: str | None = None) -> _cap.CapCard:
    """The verifier's card from a stored profile, the store's ATC floor (-1: none yet) and the
    reader family it remembers (None: every family the profile accepts)."""
    if "profile" in profile:
        cap_profile = PROFILES[profile["profile"]]
    else:
        cap_profile = profile_by_id(int(profile["profile_id"]))
    return _cap.CapCard(cap_profile, str(profile["pan"]), int(profile["psn"]),
                        str(profile["imk_label"]), max(last_atc, 0),
                        int(profile.get("pin_try_limit", 3)), reader_family)


class CapVerifier:
    """`CapCheck` over `capkey.emv.verifier` (challenge from the canonical payload; a login takes
    a Respond code over its challenge or an Identify code, the guide's CODE key, unless the policy
    is Respond only; Respond for R8 operations, Sign with the amount for payments and batches)."""

    def __init__(self, key_backend: IssuerBackend, *, origin: str):
        if not isinstance(key_backend, IssuerBackend):
            raise TypeError("key_backend must be an IssuerBackend")
        _payload.LoginPayload(bytes(32), origin, "x", "x")  # refuses a malformed origin now
        self._backend = key_backend
        self._origin = origin
        # The challenge a mode maps to is a pure function of it: remembered between issuance and
        # verification (a miss, e.g. on another node, just recomputes it).
        self._entry = functools.lru_cache(maxsize=8192)(self._compute_entry)
        self._dummy: CapCard | None = None  # see dummy_verify

    def _compute_entry(self, mode: CapMode) -> _cap.CapChallenge:
        return _cap.cap_challenge(canonical_payload(
            mode.nonce, mode.record, mode.subscription, mode.user_no, self._origin))

    def challenge(self, mode: CapMode) -> str:
        return self._entry(mode).challenge

    def verify(self, card: CapCard, code: str, mode: CapMode) -> CapAccepted:
        try:
            real = card_from_profile(card.profile, card.last_atc, card.reader_family)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("card %d: unusable CAP profile (%s)", card.card_id, type(exc).__name__)
            raise Rejected("bad_profile") from None
        entry = self._entry(mode)  # mode, challenge, amount: from the record (docs/cap.md §5.4)
        try:
            match = _cap.match_cap(real, code, mode=entry.mode, challenge=entry.challenge,
                                   amount=entry.amount, key_backend=self._backend)
        except _cap.InvalidCode:
            if mode.kind != "login":
                raise Rejected() from None
            try:  # the guide's CODE: an Identify code (docs/cap.md §5.5 counts the odds)
                match = _cap.match_cap(real, code, mode=_cap.Mode.IDENTIFY, key_backend=self._backend)
            except _cap.InvalidCode:
                raise Rejected() from None
        if self._dummy is None:  # a card whose profile and key are known to work, in the state
            # a card is in once used: its family remembered (the same candidates as a wrong code)
            self._dummy = CapCard(0, {**card.profile, "pan": _NOBODY_PAN}, -1, match.reader_family)
        return CapAccepted(match.atc, match.reader_family)

    def dummy_verify(self, code: str, mode: CapMode) -> None:
        """`CapDummy` (R2): `verify` for a card nobody has, modelled on the first card this
        verifier accepted a code from (same CAP profile, PSN, PIN try limit, issuer key and the
        reader family that code matched, so the same ATC candidates, reader families and key
        backend calls as a wrong code for a used card; ATC floor of a new card, PAN of zeros).
        Until a code has been accepted there is no model and nothing is done."""
        if self._dummy is not None:
            try:
                self.verify(self._dummy, code, mode)
            except Rejected:
                pass

    def resync(self, card: CapCard, code1: str, code2: str) -> CapAccepted:
        try:
            # every family: a resync is how a card moves to a reader of another family
            real = card_from_profile(card.profile, card.last_atc)
            match = _cap.match_resync(real, code1, code2, key_backend=self._backend)
            return CapAccepted(match.atc, match.reader_family)
        except (KeyError, TypeError, ValueError):
            raise Rejected("bad_profile") from None
        except _cap.InvalidCode:
            raise Rejected() from None


class SignatureVerifier:
    """`SignatureCheck` over `capkey.cert.verifier` (chain to the bank CA, validity, usage,
    policy, revocation known and good, registration, ECDSA over the canonical payload)."""

    def __init__(self, trust: _sig.TrustConfig, revocation: _sig.RevocationSource, *,
                 origin: str):
        if not isinstance(trust, _sig.TrustConfig):
            raise TypeError("trust must be a TrustConfig")
        _payload.LoginPayload(bytes(32), origin, "x", "x")
        self._trust = trust
        self.revocation = revocation  # replace when new CRLs are published
        self._origin = origin

    def verify(self, evidence: CertEvidence, intent: SigningIntent,
               registered: RegisteredCertificate, now: datetime) -> None:
        expected = _sig.ExpectedPayload(
            canonical_payload(intent.challenge, intent.record, intent.subscription,
                              intent.user_no, self._origin),
            intent.expires_at)
        try:
            _sig.verify_signature(
                payload=evidence.payload, signature=evidence.signature,
                certificate=evidence.certificate, expected=expected, trust=self._trust,
                revocation=self.revocation,
                registered_fingerprints={bytes.fromhex(registered.fingerprint)}, now=now)
        except _sig.InvalidSignature as exc:
            raise Rejected(_REASON.sub("_", exc.reason.name.lower())[:40]) from None

    def dummy_verify(self, evidence: CertEvidence, intent: SigningIntent, now: datetime) -> None:
        """`SignatureDummy` (R2): `verify` against a registration no certificate has.
        `verify_signature` runs every check whatever fails, so this costs a registered
        certificate's refusal."""
        try:
            self.verify(evidence, intent, _NOBODY_REGISTERED, now)
        except Rejected:
            pass
