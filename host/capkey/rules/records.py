"""The bank's records as a web front end shows them and has them signed, so that it talks to the
rules only: the canonical payloads (``capkey.cert.payload``) built as the rules' verifiers build
them (`canonical_payload`), the checks a form's fields must pass to fit in one, and the French
formats of their amounts and IBANs.
"""

from __future__ import annotations

from ..cert.payload import (
    MAX_PAYLOAD,
    PayloadError,
    check_iban,
    check_origin,
    check_payee_name,
    format_amount,
    format_iban,
    parse,
)
from ..emv.verifier import transaction_challenge
from .adapters import canonical_payload
from .model import Batch, OperationRef, Payment

__all__ = [
    "MAX_PAYLOAD", "PayloadError", "cap_sign_challenge", "check_iban", "check_origin",
    "check_payee_name", "display_lines", "format_amount", "format_iban", "signing_payload",
]


def signing_payload(challenge: bytes, record: Payment | Batch | OperationRef | None,
                    subscription: str, user_no: str, origin: str) -> bytes:
    """The bytes a certificate key signs for `record` (None: a login) under the server's
    `challenge`: the ones the signature verifier rebuilds. Raises PayloadError."""
    return bytes(canonical_payload(challenge, record, subscription, user_no, origin).to_bytes())


def cap_sign_challenge(challenge: bytes, record: Payment | Batch, subscription: str,
                       user_no: str, origin: str) -> str:
    """The 8-digit CAP Sign challenge the CAP verifier derives for a payment or a batch
    (docs/cap.md §5.4)."""
    return transaction_challenge(canonical_payload(challenge, record, subscription, user_no,
                                                   origin))


def display_lines(payload: bytes) -> list[str]:
    """What the device shows for canonical payload bytes (so a page can show it first)."""
    return parse(payload).display_lines()
