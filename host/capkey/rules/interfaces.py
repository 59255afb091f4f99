"""The seams of the rules: verifiers and the clock, as small protocols.

The service never imports a concrete verifier. The bank backend (or `capkey.rules.adapters`) plugs
in objects with these methods. A verifier answers "accepted" by returning, and "rejected" by
raising `Rejected` — whatever the reason: a rejection is one opaque failure (R2). Any other exception
is a bug or an outage: the service rolls the transaction back and lets it propagate (nothing is
counted, nothing is accepted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import Error
from .model import Batch, CertEvidence, OperationRef, Payment


class Rejected(Error):
    """A verifier refused the evidence. `reason` is an optional short token (lower-case letters,
    digits, underscores) for the audit trail only; callers of the service never see it (R2)."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason if isinstance(reason, str) and reason.replace("_", "").isalnum() \
            and len(reason) <= 40 and reason.islower() else ""


@dataclass(frozen=True)
class CapCard:
    """What the rules know about a CAP card: its profile (the JSON the issuer attached with
    ``capkey admin attach-card``, decoded) and its state (the last accepted ATC; -1 if none; the
    reader family of its last accepted code, None until one is known)."""

    card_id: int
    profile: Mapping[str, Any]
    last_atc: int
    reader_family: str | None = None


@dataclass(frozen=True)
class CapAccepted:
    """An accepted CAP code: the ATC it was made at and the reader family whose constants made
    it (docs/cap.md §5.5; None from a verifier that does not tell families apart). The service
    stores both with one conditional write; from then on the card's `reader_family` is that
    family."""

    atc: int
    reader_family: str | None = None


def cap_accepted(result: object, floor: int) -> CapAccepted | None:
    """A CAP verifier's answer as a `CapAccepted`, or None when it is not one the service can
    store: not an ATC (an int, not a bool) strictly above `floor`, or a family that is not a
    short name."""
    atc: object = result
    family: object = None
    if isinstance(result, CapAccepted):
        atc, family = result.atc, result.reader_family
    if not isinstance(atc, int) or isinstance(atc, bool) or atc <= floor:
        return None
    if family is not None and not (isinstance(family, str) and 0 < len(family) <= 40):
        return None
    return CapAccepted(atc, family)


@dataclass(frozen=True)
class CapMode:
    """What a CAP code must have been computed over.

    - ``kind="login"``: a login (`purpose` ``LOGIN``, `record` None): a Respond code over the
      login challenge, or an Identify code (the guide's CODE key, no challenge: single use through
      the ATC floor). ``kind="respond"`` for a login when the bank's policy is Respond only
      (`RulesConfig.cap_login_respond_only`).
    - ``kind="respond"``: R8 operations; `record` is the `OperationRef`. An Identify code never
      completes a step-up.
    - ``kind="sign"``: R7 operations; `record` is the `Payment` or `Batch`, whose amount the person
      types and the card MACs.

    `nonce` is the server's 32 random bytes and `digest` the SHA-256 of the record's canonical
    encoding (or `login_digest`). The digits the person types come from `CapCheck.challenge`; the
    verifier derives them again from the same fields when it verifies.
    """

    kind: Literal["login", "respond", "sign"]
    purpose: str
    nonce: bytes
    digest: bytes
    subscription: str
    user_no: str
    record: Payment | Batch | OperationRef | None = None

    @property
    def amount_minor(self) -> int | None:
        if isinstance(self.record, Payment):
            return self.record.amount_minor
        if isinstance(self.record, Batch):
            return self.record.total_minor
        return None

    @property
    def currency(self) -> str | None:
        return self.record.currency if isinstance(self.record, Payment | Batch) else None


@runtime_checkable
class CapCheck(Protocol):
    def challenge(self, mode: CapMode) -> str:
        """The digits the person types into the reader for `mode`. Deterministic, and dependent
        on `nonce` and, for operations, on the record, so that a code is bound to them (R7–R9)."""
        ...

    def verify(self, card: CapCard, code: str, mode: CapMode) -> int | CapAccepted:
        """Checks `code` against the challenge `challenge(mode)` gave (and, in Sign mode, the
        record's amount). Returns the ATC the code was generated with (strictly above
        ``card.last_atc``, within the verifier's look-ahead window), with the reader family
        that made it (`CapAccepted`; only that family's codes when ``card.reader_family`` is
        set); raises `Rejected` otherwise. Pure: the service stores the new ATC floor and the
        family with a conditional write."""
        ...


@runtime_checkable
class CapDummy(Protocol):
    def dummy_verify(self, code: str, mode: CapMode) -> None:
        """Does the work of one `verify` that rejects `code` (the same key backend calls, the same
        number of ATC candidates), for a card nobody has, and returns. The service calls it when
        there is no card to check (unknown, deactivated or blocked user, no active card, spent
        challenge), so that every refused CAP code costs one verification (R2). Optional: without
        it, those refusals skip the verification."""
        ...


@runtime_checkable
class CapResync(Protocol):
    def resync(self, card: CapCard, code1: str, code2: str) -> int | CapAccepted:
        """Two consecutive Identify codes made after a large ATC gap: returns the new floor (the
        ATC of `code2`), found in a search range above ``card.last_atc``, with the reader family
        that made both (any family the profile accepts: a resync is also how a card's holder
        moves to a reader of another family); raises `Rejected`."""
        ...


@dataclass(frozen=True)
class SigningIntent:
    """What a certificate signature must cover. `purpose` names the canonical payload:
    ``LOGIN`` (challenge, subscription, user), ``PAYMENT`` / ``BATCH`` (challenge and the record),
    ``OPERATION`` (challenge, operation name and id). `challenge` is the 32-byte server nonce;
    `digest` is SHA-256 of the record's canonical encoding (`Payment.canonical()` …);
    `expires_at` is when the challenge expires (the service has already refused expired or spent
    challenges when it consumed this one)."""

    purpose: Literal["LOGIN", "PAYMENT", "BATCH", "OPERATION"]
    challenge: bytes
    subscription: str
    user_no: str
    digest: bytes
    expires_at: datetime
    record: Payment | Batch | OperationRef | None = None


@dataclass(frozen=True)
class RegisteredCertificate:
    """The registration the evidence's leaf certificate matched (by SHA-256 fingerprint of its
    DER): the verifier must still check chain, validity, usage, revocation and algorithm (R16)."""

    cert_id: int
    fingerprint: str
    serial: str


@runtime_checkable
class SignatureCheck(Protocol):
    def verify(self, evidence: CertEvidence, intent: SigningIntent,
               registered: RegisteredCertificate, now: datetime) -> None:
        """Returns None if the chain leads to a configured bank CA, the certificate is valid at
        `now`, its usage and algorithm are allowed, its revocation status is known and good, and
        the signature verifies over the canonical payload of `intent`; raises `Rejected`
        otherwise."""
        ...


@runtime_checkable
class SignatureDummy(Protocol):
    def dummy_verify(self, evidence: CertEvidence, intent: SigningIntent, now: datetime) -> None:
        """Does the work of one `verify` that rejects `evidence` (every check, as for a registered
        certificate) and returns. The service calls it when no registered certificate matches
        (unknown, deactivated or blocked user, unregistered or revoked certificate, spent
        challenge), so that every refused signature costs one verification (R2). Optional:
        without it, those refusals skip the verification."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)
