"""Errors as RFC 9457 problem details (``application/problem+json``).

Every refusal of the rules keeps the library's uniform failure: one problem per `Outcome`, with no
detail about why (rules.md R2). The service's own refusals (no key, wrong scope, too large, too
slow, malformed) have their own types.
"""

from __future__ import annotations

from typing import Any

from ..errors import Error
from ..rules import Outcome

PROBLEM_JSON = "application/problem+json"
_BASE = "urn:capkey:problem:"


class Problem(Error):
    """An answer that is not a success: raised by the routes, rendered by the app."""

    def __init__(self, status: int, slug: str, title: str, detail: str | None = None, *,
                 outcome: Outcome | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(title)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.outcome = outcome
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": _BASE + self.slug, "title": self.title,
                               "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if self.outcome is not None:
            out["outcome"] = self.outcome.value
        return out


# The rules' outcomes other than OK, each one problem (the same whatever the reason behind it).
_OUTCOMES: dict[Outcome, tuple[int, str]] = {
    Outcome.AUTH_FAILED: (401, "Authentication failed"),
    Outcome.SESSION_EXPIRED: (401, "Session expired"),
    Outcome.SCA_REQUIRED: (403, "Strong authentication required"),
    Outcome.STEP_UP_REQUIRED: (403, "Step-up required"),
    Outcome.CODE_CHANGE_REQUIRED: (403, "Code change required"),
    Outcome.FORBIDDEN: (403, "Forbidden"),
    Outcome.INVALID_REQUEST: (400, "Invalid request"),
}


def outcome_problem(outcome: Outcome) -> Problem:
    status, title = _OUTCOMES[outcome]
    return Problem(status, outcome.value.lower().replace("_", "-"), title, outcome=outcome)


def unauthorized() -> Problem:
    return Problem(401, "unauthorized", "API key missing, unknown or revoked",
                   headers={"WWW-Authenticate": 'Bearer realm="capkey"'})


def missing_scope(scope: str) -> Problem:
    return Problem(403, "missing-scope", "API key lacks a scope", f"this call needs {scope}")


def too_large(limit: int) -> Problem:
    return Problem(413, "too-large", "Request body too large", f"at most {limit} bytes")


def too_slow(limit: float) -> Problem:
    return Problem(503, "timeout", "Request took too long", f"limit {limit:g} s",
                   headers={"Retry-After": "1"})


def unavailable() -> Problem:
    return Problem(503, "unavailable", "Service unavailable", headers={"Retry-After": "1"})


def idempotency_mismatch() -> Problem:
    return Problem(422, "idempotency-key-reused",
                   "Idempotency-Key already used for another request")


def not_replayed() -> Problem:
    return Problem(409, "already-processed",
                   "Request already processed; its one-time answer is not shown again")


def malformed(detail: str) -> Problem:
    return Problem(422, "malformed", "Malformed request", detail)
