"""Vocabulary of the rules (rules.md): outcomes, levels, roles, methods, operations, sessions,
and the canonical transaction records whose digest a step-up challenge is bound to (R7, R8)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum, unique
from typing import cast

from ..catalog.operations import SENSITIVE
from ..errors import Error


@unique
class Outcome(StrEnum):
    """The closed set of answers (rules.md, Vocabulary)."""

    OK = "OK"
    AUTH_FAILED = "AUTH_FAILED"
    SCA_REQUIRED = "SCA_REQUIRED"
    STEP_UP_REQUIRED = "STEP_UP_REQUIRED"
    CODE_CHANGE_REQUIRED = "CODE_CHANGE_REQUIRED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    INVALID_REQUEST = "INVALID_REQUEST"


@unique
class AuthLevel(StrEnum):
    NONE = "NONE"
    SINGLE = "SINGLE"
    SCA = "SCA"


@unique
class Role(StrEnum):
    PRINCIPAL = "principal"  # Utilisateur principal
    ADMIN = "admin"  # Administrateur
    USER = "user"


@unique
class Method(StrEnum):
    CAP = "CAP"  # CAP reader code: strong
    CERT = "CERT"  # certificate signature: strong
    CODE = "CODE"  # code confidentiel: single factor


#: Operations the rules know by name: the catalogue's sensitive operations (declared once in
#: ``capkey.catalog.operations``) and CHANGE_CODE. Any other string is an ordinary operation.
#: (Built from the catalogue, so type checkers see `type[StrEnum]`: index it, Operation["…"].)
CHANGE_CODE = "CHANGE_CODE"
Operation = unique(cast("type[StrEnum]", StrEnum(
    "Operation", [(k.name, k.name) for k in SENSITIVE] + [(CHANGE_CODE, CHANGE_CODE)])))

#: The guide's sensitive operations (rules.md S).
DEFAULT_SENSITIVE = frozenset(k.name for k in SENSITIVE)

#: Operations that need dynamic linking to a payment record (R7), with the record they bind; the
#: others of S bind an operation id (R8).
PAYMENT_OPERATIONS = {k.name: k.binding for k in SENSITIVE if k.binding != "OPERATION"}

#: Events emitted besides outcomes (audit `result` and `on_event` callback).
PERMANENT_BLOCK_IMMINENT = "PERMANENT_BLOCK_IMMINENT"


class InvalidTransaction(Error, ValueError):
    """A transaction record is malformed (amount, currency, IBAN, batch shape)."""


_CURRENCY = re.compile(r"^[A-Z]{3}$")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_MAX_AMOUNT = 10**15
_OP_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


def normalise_iban(iban: str) -> str:
    """Upper-case without spaces; refuses anything that fails the ISO 13616 mod-97 check."""
    if not isinstance(iban, str):
        raise InvalidTransaction("IBAN must be str")
    value = iban.replace(" ", "").upper()
    if not _IBAN.match(value):
        raise InvalidTransaction("malformed IBAN")
    rearranged = value[4:] + value[:4]
    if int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 != 1:
        raise InvalidTransaction("IBAN check digits do not match")
    return value


def _encode(*fields: str) -> bytes:
    """Unambiguous encoding: each field as 4-byte big-endian length + UTF-8."""
    out = bytearray(b"capkey-tx-v1")
    for f in fields:
        data = f.encode()
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def _check_amount(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < _MAX_AMOUNT:
        raise InvalidTransaction("amount must be a positive integer of minor units")
    return amount


def _check_currency(currency: str) -> str:
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise InvalidTransaction("currency must be an ISO 4217 alphabetic code")
    return currency


_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")  # SEPA basic Latin
_BATCH_MAX_COUNT = 9999
_BATCH_MAX_PAYEES = 24


def _check_name(name: str) -> str:
    if (not isinstance(name, str) or not 1 <= len(name) <= 70 or not set(name) <= _NAME_CHARS
            or name != name.strip(" ") or "  " in name):
        raise InvalidTransaction("payee name: 1-70 SEPA characters, single spaces inside")
    return name


@dataclass(frozen=True)
class Payment:
    """One transfer (SCT_INST_ENTRY): amount in minor units (cents), ISO 4217 currency, payee IBAN
    and payee name (the device shows all four; the digest covers all four)."""

    amount_minor: int
    currency: str
    payee_iban: str
    payee_name: str

    def __post_init__(self) -> None:
        _check_amount(self.amount_minor)
        _check_currency(self.currency)
        object.__setattr__(self, "payee_iban", normalise_iban(self.payee_iban))
        _check_name(self.payee_name)

    kind = "PAYMENT"

    def canonical(self) -> bytes:
        return _encode("PAYMENT", str(self.amount_minor), self.currency, self.payee_iban,
                       self.payee_name)

    def digest(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()


@dataclass(frozen=True)
class Batch:
    """A batch of payment orders (SIGN_ORDER_BATCH): total in minor units, one currency, the
    number of orders, and the canonical list of payees (distinct IBANs, ascending; any order and
    repeats are accepted and normalised)."""

    total_minor: int
    currency: str
    count: int
    payees: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_amount(self.total_minor)
        _check_currency(self.currency)
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not (
                1 <= self.count <= _BATCH_MAX_COUNT):
            raise InvalidTransaction(f"a batch has 1 to {_BATCH_MAX_COUNT} orders")
        if isinstance(self.payees, str) or not self.payees:
            raise InvalidTransaction("a batch has at least one payee")
        payees = tuple(sorted({normalise_iban(p) for p in self.payees}))
        if len(payees) > min(self.count, _BATCH_MAX_PAYEES):
            raise InvalidTransaction("more distinct payees than orders (or than 24)")
        object.__setattr__(self, "payees", payees)

    kind = "BATCH"

    @classmethod
    def from_payments(cls, payments: Iterable[Payment]) -> Batch:
        payments = list(payments)
        if not payments:
            raise InvalidTransaction("a batch has at least one order")
        currencies = {p.currency for p in payments}
        if len(currencies) != 1:
            raise InvalidTransaction("a batch has one currency")
        return cls(sum(p.amount_minor for p in payments), currencies.pop(), len(payments),
                   tuple(p.payee_iban for p in payments))

    def canonical(self) -> bytes:
        return _encode("BATCH", str(self.total_minor), self.currency, str(self.count),
                       *self.payees)

    def digest(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()


@dataclass(frozen=True)
class OperationRef:
    """A non-payment sensitive operation (R8): its name and the server's operation id."""

    operation: str
    operation_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.operation_id, str) or not _OP_ID.match(self.operation_id):
            raise InvalidTransaction("operation id: 1-64 characters of [A-Za-z0-9._:/-]")

    kind = "OPERATION"

    def canonical(self) -> bytes:
        return _encode("OPERATION", self.operation, self.operation_id)

    def digest(self) -> bytes:
        return hashlib.sha256(self.canonical()).digest()


Transaction = Payment | Batch


def login_digest(subscription: str, user_no: str) -> bytes:
    """What a login challenge is bound to besides its purpose."""
    return hashlib.sha256(_encode("LOGIN", subscription, user_no)).digest()


def operation_record(operation: str, transaction: Transaction | None,
                     operation_id: str | None) -> Payment | Batch | OperationRef:
    """The record a sensitive operation's challenge binds: the transaction for R7 operations, the
    operation id for the others (R8). Raises InvalidTransaction for a mismatch."""
    expected = PAYMENT_OPERATIONS.get(operation)
    if expected is not None:
        if transaction is None or transaction.kind != expected or operation_id is not None:
            raise InvalidTransaction(f"{operation} needs a {expected} record")
        return transaction
    if transaction is not None or operation_id is None:
        raise InvalidTransaction(f"{operation} needs an operation id")
    return OperationRef(operation, operation_id)


@dataclass(frozen=True)
class CertEvidence:
    """What the certificate key produced: the leaf certificate (DER), the signature over the
    canonical payload, optionally the payload bytes as the client received them (verifiers compare
    them with the server's own record; None: verify over the record), and the chain up to (not
    including) the bank CA (DER each) when the client sends one."""

    certificate: bytes
    signature: bytes
    payload: bytes | None = None
    chain: tuple[bytes, ...] = ()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.certificate).hexdigest()


@dataclass(frozen=True)
class LoginRequest:
    """A login (R1): Identifiant client, numéro Utilisateur and exactly one of `code`, `cap_code`,
    `cert`. CAP and CERT also carry the `challenge_id` from `AuthService.issue_login_challenge`.
    `client_claims` (e.g. "PIN verified", middleware version) are accepted and ignored (R17)."""

    subscription: str
    user_no: str
    code: str | None = None
    cap_code: str | None = None
    cert: CertEvidence | None = None
    challenge_id: str | None = None
    client_claims: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    """A snapshot of a session. The store holds the truth; pass the session (or its id) back to
    the service, which reloads it on every call."""

    id: str
    subscription: str
    user_no: str
    role: Role
    method: Method
    auth_level: AuthLevel
    sca_at: datetime | None
    must_change: bool


@dataclass(frozen=True)
class LoginResult:
    outcome: Outcome
    session: Session | None = None


@dataclass(frozen=True)
class LoginChallenge:
    """A login challenge: `nonce` (32 random bytes) is what a certificate key signs; `cap_challenge`
    (8 digits derived from it) is what the person may type into the CAP reader (Respond mode;
    None when the service has no CAP verifier)."""

    id: str
    nonce: bytes
    cap_challenge: str | None
    expires_at: datetime


@dataclass(frozen=True)
class StepUpChallenge:
    """Answer of `begin_step_up`. When `outcome` is OK, the challenge fields are set: the CAP
    reader gets `cap_challenge` (and, in Sign mode, `amount_minor`); the key signs the canonical
    payload built over `nonce` and the operation record."""

    outcome: Outcome
    id: str | None = None
    operation: str | None = None
    nonce: bytes | None = None
    cap_challenge: str | None = None
    cap_mode: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class ResetResult:
    """Answer of `reset_code`: on OK, `code` is the one-time code to hand over (shown once)."""

    outcome: Outcome
    code: str | None = None

    def __repr__(self) -> str:  # never print the code by accident
        return f"ResetResult(outcome={self.outcome!r}, code={'<set>' if self.code else None})"


@dataclass(frozen=True)
class UserState:
    """What an operator sees about a user (``capkey admin show``)."""

    subscription: str
    user_no: str
    role: Role
    active: bool
    failures: int
    blocked_until: datetime | None
    temporary_blocks: int
    permanently_blocked: bool
    last_sca_at: datetime | None
    has_code: bool
    must_change: bool
    cards: tuple[tuple[int, str, int, bool], ...]  # (id, label, last ATC, active)
    certificates: tuple[tuple[int, str, str, bool], ...]  # (id, serial, fingerprint, active)
