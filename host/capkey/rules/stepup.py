"""Authorisation and step-up (R6–R8, R13, R14): the `AuthService` methods that let a session
perform an operation, after a strong authentication bound to that operation's record when it is
sensitive."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from enum import StrEnum
from functools import partial

from ..store import ChallengeRow, SessionRow, Tx, UserRow
from .core import (
    NO_USER,
    TOKEN,
    US,
    Events,
    ServiceCore,
    audited,
    evidence_ok,
    evidence_targets,
    from_us,
    secret_ok,
)
from .interfaces import CapMode
from .model import (
    CHANGE_CODE,
    PAYMENT_OPERATIONS,
    Batch,
    CertEvidence,
    InvalidTransaction,
    Operation,
    OperationRef,
    Outcome,
    Payment,
    Session,
    StepUpChallenge,
    Transaction,
    operation_record,
)

_OPERATION = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


def _amount(record: Payment | Batch | OperationRef) -> int | None:
    if isinstance(record, Payment):
        return record.amount_minor
    if isinstance(record, Batch):
        return record.total_minor
    return None


class StepUpRules(ServiceCore):
    def _operation_ok(self, operation: object) -> bool:
        return isinstance(operation, str) and bool(_OPERATION.match(operation))

    def authorize(self, session: Session | str, operation: str | StrEnum, *,
                  transaction: Transaction | None = None, operation_id: str | None = None,
                  now: datetime | None = None) -> Outcome:
        """May this session perform `operation` now? For a sensitive operation, OK consumes the
        step-up completed for exactly this record (R6–R8)."""
        t = self._now(now)
        op = operation.value if isinstance(operation, Operation) else operation
        with self.store.transaction() as tx:
            opened = self._open_session(tx, session, t)
            if isinstance(opened, Outcome):
                return opened
            row, user, subject = opened
            answer = partial(audited, tx, t, subject, subject, "AUTHORIZE")
            # The audit reason is "<operation>[:<why>]"; a malformed operation is not written.
            if not self._operation_ok(op):
                return answer(Outcome.INVALID_REQUEST, "?:bad_operation")
            if row.must_change and op != CHANGE_CODE:  # R14
                return answer(Outcome.CODE_CHANGE_REQUIRED, op)
            if op not in self.config.sensitive_operations:
                return answer(Outcome.OK, op)
            try:
                record = operation_record(op, transaction, operation_id)
            except InvalidTransaction:
                return answer(Outcome.INVALID_REQUEST, f"{op}:bad_record")
            digest = record.digest()
            if tx.grant_consume(row.id, op, digest, t):
                return answer(Outcome.OK, f"{op}:step_up_used")
            if tx.grant_pending_other(row.id, op, digest, t):  # R7: record changed
                return answer(Outcome.AUTH_FAILED, f"{op}:record_changed")
            return answer(Outcome.STEP_UP_REQUIRED, op)

    def begin_step_up(self, session: Session | str, operation: str | StrEnum, *,
                      transaction: Transaction | None = None, operation_id: str | None = None,
                      now: datetime | None = None) -> StepUpChallenge:
        """Issues the operation-bound challenge (R7, R8, R9): 256 random bits, bound to the user,
        the session, the operation and the digest of its record, valid `challenge_ttl_seconds`."""
        t = self._now(now)
        op = operation.value if isinstance(operation, Operation) else operation
        with self.store.transaction() as tx:
            opened = self._open_session(tx, session, t)
            if isinstance(opened, Outcome):
                return StepUpChallenge(opened)
            row, user, subject = opened
            if row.must_change:
                outcome, reason = Outcome.CODE_CHANGE_REQUIRED, "must_change"
            elif not self._operation_ok(op) or op not in self.config.sensitive_operations:
                outcome, reason = Outcome.INVALID_REQUEST, "not_sensitive"
            else:
                try:
                    record = operation_record(op, transaction, operation_id)
                    outcome, reason = Outcome.OK, op
                except InvalidTransaction:
                    outcome, reason = Outcome.INVALID_REQUEST, "bad_record"
            if audited(tx, t, subject, subject, "STEP_UP_BEGIN", outcome, reason) is not Outcome.OK:
                return StepUpChallenge(outcome)
            nonce = secrets.token_bytes(32)
            digest = record.digest()
            challenge = ChallengeRow(secrets.token_urlsafe(16), nonce, user.subscription,
                                     user.user_no, user.id, row.id, op, digest,
                                     t + self.config.challenge_ttl_seconds * US)
            tx.challenge_insert(challenge, t)
        sign = op in PAYMENT_OPERATIONS
        cap_challenge = None
        if self._cap is not None:
            cap_challenge = self._cap.challenge(CapMode(
                "sign" if sign else "respond", op, nonce, digest, user.subscription, user.user_no,
                record))
        return StepUpChallenge(
            Outcome.OK, challenge.id, op, nonce, cap_challenge,
            "sign" if sign else "respond",
            _amount(record) if sign else None,
            record.currency if isinstance(record, Payment | Batch) else None,
            from_us(challenge.expires_at),
        )

    def complete_step_up(self, session: Session | str, challenge_id: str, *,
                         transaction: Transaction | None = None, operation_id: str | None = None,
                         cap_code: str | None = None, cert: CertEvidence | None = None,
                         now: datetime | None = None) -> Outcome:
        """Verifies the SCA over the challenge. `transaction` / `operation_id` are the server's own
        record of the operation: its digest must equal the one the challenge was issued for (R7).
        On OK the session may perform that operation on that record once (`authorize`)."""
        t = self._now(now)
        shape_ok = (isinstance(challenge_id, str) and bool(TOKEN.match(challenge_id))
                    and (cap_code is None) != (cert is None)
                    and (cap_code is None or secret_ok(cap_code))
                    and (cert is None or evidence_ok(cert))
                    and not (cap_code is not None and self._cap is None)
                    and not (cert is not None and self._sig is None))
        events: Events = []
        method = "CAP" if cap_code is not None else "CERT"
        with self.store.transaction() as tx:
            opened = self._open_session(tx, session, t)
            if isinstance(opened, Outcome):
                return opened
            row, user, subject = opened
            outcome = self._decide_step_up(tx, row, user, subject, challenge_id, shape_ok,
                                           method, transaction, operation_id, cap_code, cert,
                                           t, events)
        self._emit(events)
        return outcome

    def _decide_step_up(self, tx: Tx, row: SessionRow, user: UserRow, subject: str,
                        challenge_id: str, shape_ok: bool, method: str,
                        transaction: Transaction | None, operation_id: str | None,
                        cap_code: str | None, cert: CertEvidence | None, t: int,
                        events: Events) -> Outcome:
        m = f"STEP_UP_{method}"
        answer = partial(audited, tx, t, subject, subject, m)
        if not shape_ok:
            return answer(Outcome.INVALID_REQUEST, "bad_request")
        if row.must_change:
            return answer(Outcome.CODE_CHANGE_REQUIRED)
        challenge = tx.challenge_consume(challenge_id, t)
        record, problem = self._bound_record(row, user, challenge, transaction, operation_id)
        blocked = user.blocked(t)  # R10: nothing is verified
        # The evidence is checked for an unblocked user over a good challenge only; otherwise the
        # same work is done for nobody (R2).
        mode, intent = evidence_targets(challenge if record is not None else None,
                                        user.subscription, user.user_no, t, record)
        failure = self._check_evidence(tx, NO_USER if blocked or problem else user.id, t,
                                       cap_code, cert, mode, intent)
        if blocked:
            return self._refuse(tx, t, answer, "blocked")
        if problem or failure:
            return self._fail(tx, user, t, m, problem or failure, events)
        assert challenge is not None
        if not tx.user_record_success(user.id, now=t, sca=True):  # a step-up restarts R5's clock
            return answer(Outcome.AUTH_FAILED, "blocked")
        tx.session_record_sca(row.id, t)
        tx.grant_insert(row.id, challenge.purpose, challenge.digest,
                        expires_at=t + self.config.step_up_grant_ttl_seconds * US, now=t)
        return answer(Outcome.OK, challenge.purpose)

    def _bound_record(self, row: SessionRow, user: UserRow, challenge: ChallengeRow | None,
                      transaction: Transaction | None, operation_id: str | None
                      ) -> tuple[Payment | Batch | OperationRef | None, str]:
        """The server's record of the operation the challenge was issued for (R7, R8), or None
        and why not (the audit reason)."""
        if challenge is None:
            return None, "challenge_spent"
        if (challenge.session_id != row.id or challenge.user_id != user.id
                or challenge.purpose not in self.config.sensitive_operations):
            return None, "challenge_binding"
        try:
            record = operation_record(challenge.purpose, transaction, operation_id)
        except InvalidTransaction:
            return None, "record_mismatch"
        if record.digest() != challenge.digest:  # R7: any change after issuance
            return None, "record_changed"
        return record, ""
