"""The service's request and response bodies (pydantic; they make docs/openapi.json).

Shapes only: lengths and types are checked here, meanings by the rules (an unknown subscription,
a wrong code or an IBAN that fails its check digits are the rules' answers, not schema errors).
Binary values travel as standard base64.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..rules import Session

Ident = Annotated[str, StringConstraints(min_length=1, max_length=12,
                                         pattern=r"^[A-Za-z0-9_-]+$")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Token = Annotated[str, StringConstraints(min_length=16, max_length=64,
                                         pattern=r"^[A-Za-z0-9_-]+$")]
Base64 = Annotated[str, StringConstraints(min_length=4, max_length=16384,
                                          pattern=r"^[A-Za-z0-9+/]+={0,2}$")]
OperationId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                               pattern=r"^[A-Za-z0-9._:/-]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def unb64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""  # the rules refuse empty evidence like any other bad evidence


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChallengeIn(_In):
    subscription: Ident = Field(description="Identifiant client")
    user_no: Ident = Field(description="Numéro Utilisateur")


class Certificate(_In):
    """What the certificate key produced (docs/payloads.md)."""

    certificate: Base64 = Field(description="leaf certificate, DER")
    signature: Base64 = Field(description="ECDSA signature, DER")
    payload: Base64 | None = Field(None, description="the payload as the client received it")
    chain: list[Base64] = Field(default_factory=list, max_length=4,
                                description="intermediate certificates, DER")


class LoginIn(_In):
    """Exactly one of `code`, `cap_code`, `certificate`; CAP and certificate logins carry the
    `challenge_id` of a login challenge."""

    subscription: Ident
    user_no: Ident
    challenge_id: Token | None = None
    code: Secret | None = Field(None, description="confidential code")
    cap_code: Secret | None = Field(None, description="CAP reader code (CODE or Réponse)")
    certificate: Certificate | None = None


class Payment(_In):
    amount_minor: int = Field(ge=1, le=999_999_999_999, description="in minor units (cents)")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    payee_iban: Annotated[str, StringConstraints(min_length=5, max_length=42)]
    payee_name: Annotated[str, StringConstraints(min_length=1, max_length=70)]


class Batch(_In):
    total_minor: int = Field(ge=1, le=999_999_999_999)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    count: int = Field(ge=1, le=9999)
    payees: list[Annotated[str, StringConstraints(min_length=5, max_length=42)]] = Field(
        min_length=1, max_length=100)


class OperationIn(_In):
    """An operation of the session: its name (rules.md S) and what it binds: a `payment` or a
    `batch` (R7) or an `operation_id` (R8)."""

    session: Token
    operation: Name
    operation_id: OperationId | None = None
    payment: Payment | None = None
    batch: Batch | None = None


class StepUpCompleteIn(OperationIn):
    """The operation again (the service checks it is the one the challenge was for) and exactly
    one piece of evidence."""

    cap_code: Secret | None = None
    certificate: Certificate | None = None


class SessionIn(_In):
    session: Token


class CodeChangeIn(_In):
    session: Token
    old_code: Secret
    new_code: Secret


class ResetIn(_In):
    session: Token = Field(description="the administrator's session")
    subscription: Ident
    user_no: Ident


class UnblockIn(_In):
    subscription: Ident
    user_no: Ident


class ChallengeOut(BaseModel):
    challenge_id: str
    nonce: str = Field(description="32 bytes, base64: what a certificate key signs")
    cap_challenge: str | None = Field(description="digits for a Réponse code")
    expires_at: datetime


class LoginOut(BaseModel):
    """A session: OK, or CODE_CHANGE_REQUIRED (a confidential code to change first: the session
    serves only /v1/code/change)."""

    outcome: Literal["OK", "CODE_CHANGE_REQUIRED"] = "OK"
    session: Session  # the rules' own record of it


class OutcomeOut(BaseModel):
    outcome: Literal["OK"] = "OK"


class StepUpOut(BaseModel):
    challenge_id: str
    operation: str
    nonce: str
    cap_challenge: str | None
    cap_mode: str | None
    amount_minor: int | None
    currency: str | None
    expires_at: datetime


class ResetOut(BaseModel):
    code: str = Field(description="the one-time code to hand over; never shown again")


class UnblockOut(BaseModel):
    unblocked: bool


class AuditOut(BaseModel):
    ok: bool
    records: int
    problems: list[str]


class ProblemOut(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    outcome: str | None = Field(None, description="the rules' outcome, for their refusals")


class HealthOut(BaseModel):
    status: Literal["ok"]
