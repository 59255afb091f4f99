"""`AuthService`: the rules of rules.md (R1–R20) on top of a `capkey.store.Store`.

Every public method takes an optional ``now=`` (timezone-aware datetime); otherwise the injected
clock answers. Every call that decides something runs in one store transaction that first locks the
user's row, and every state change in it is a conditional write whose row count decides. Every
outcome is written to the audit trail in the same transaction, with the reason; callers only ever
see the outcome (R2).

The methods are grouped by concern in `login.py` (login, logout), `stepup.py` (authorisation and
step-up) and `codes_admin.py` (confidential codes, back office), over the shared steps of `core.py`.
"""

from __future__ import annotations

from .codes_admin import CodeAdminRules
from .core import from_us, to_us
from .login import LoginRules
from .stepup import StepUpRules

__all__ = ["AuthService", "from_us", "to_us"]


class AuthService(LoginRules, StepUpRules, CodeAdminRules):
    """The authentication service.

    `cap_verifier` and `signature_verifier` implement `CapCheck` and `SignatureCheck`; either may be
    None when the bank does not offer that method (such logins answer INVALID_REQUEST).
    `code_hasher` defaults to production Argon2id parameters. `on_event(name, details)` is called
    after commit for events such as ``PERMANENT_BLOCK_IMMINENT`` (R11).
    """
