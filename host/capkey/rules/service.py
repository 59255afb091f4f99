"""`AuthService`: the rules of rules.md (R1–R20) on top of a `capkey.store.Store`.

Every public method takes an optional ``now=`` (timezone-aware datetime); otherwise the injected
clock answers. Every call that decides something runs in one store transaction that first locks the
user's row, and every state change in it is a conditional write whose row count decides. Every
outcome is written to the audit trail in the same transaction, with the reason; callers only ever
see the outcome (R2).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..store import ChallengeRow, SessionRow, Store, Tx, UserRow
from .codes import CodeHasher, InvalidConfidentialCode, WeakCode, check_policy, generate_code
from .config import RulesConfig
from .directory import Directory, subject_of
from .interfaces import (
    CapCard,
    CapCheck,
    CapMode,
    CapResync,
    Clock,
    RegisteredCertificate,
    Rejected,
    SignatureCheck,
    SigningIntent,
    SystemClock,
)
from .model import (
    PAYMENT_OPERATIONS,
    PERMANENT_BLOCK_IMMINENT,
    AuthLevel,
    Batch,
    CertEvidence,
    InvalidTransaction,
    LoginChallenge,
    LoginRequest,
    LoginResult,
    Method,
    Operation,
    OperationRef,
    Outcome,
    Payment,
    ResetResult,
    Role,
    Session,
    StepUpChallenge,
    Transaction,
    login_digest,
    operation_record,
)

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z0-9_-]{1,12}$")  # never 13+ digits: cannot be mistaken for a PAN
_OPERATION = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_MAX_SECRET = 256
_US = 1_000_000
_LOGIN = "LOGIN"


def to_us(now: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    delta = now - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def _secret_ok(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_SECRET


def _login_shape(req: object) -> tuple[Method | None, str]:
    """R1: identifiers and exactly one method; the method or an audit reason."""
    if not isinstance(req, LoginRequest):
        return None, "not_a_login_request"
    if not (isinstance(req.subscription, str) and _IDENT.match(req.subscription)
            and isinstance(req.user_no, str) and _IDENT.match(req.user_no)):
        return None, "bad_identifiers"
    given = [m for m, v in ((Method.CODE, req.code), (Method.CAP, req.cap_code),
                            (Method.CERT, req.cert)) if v is not None]
    if len(given) != 1:
        return None, "not_exactly_one_method"
    method = given[0]
    if method is Method.CODE:
        if not _secret_ok(req.code) or req.challenge_id is not None:
            return None, "bad_code_request"
    else:
        if not (isinstance(req.challenge_id, str) and _TOKEN.match(req.challenge_id)):
            return None, "missing_challenge"
        if method is Method.CAP and not _secret_ok(req.cap_code):
            return None, "bad_cap_request"
        if method is Method.CERT and not _evidence_ok(req.cert):
            return None, "bad_cert_request"
    return method, ""


def _evidence_ok(cert: object) -> bool:
    return (isinstance(cert, CertEvidence) and isinstance(cert.certificate, bytes)
            and isinstance(cert.signature, bytes) and 0 < len(cert.certificate) <= 16384
            and 0 < len(cert.signature) <= 1024 and isinstance(cert.chain, tuple)
            and len(cert.chain) <= 8 and all(isinstance(c, bytes) for c in cert.chain))


class AuthService:
    """The authentication service.

    `cap_verifier` and `signature_verifier` implement `CapCheck` and `SignatureCheck`; either may be
    None when the bank does not offer that method (such logins answer INVALID_REQUEST).
    `code_hasher` defaults to production Argon2id parameters. `on_event(name, details)` is called
    after commit for events such as ``PERMANENT_BLOCK_IMMINENT`` (R11).
    """

    def __init__(self, store: Store, *, cap_verifier: CapCheck | None,
                 signature_verifier: SignatureCheck | None, config: RulesConfig | None = None,
                 clock: Clock | None = None, code_hasher: CodeHasher | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 actor: str = "system"):
        self.store = store
        self.config = config if config is not None else RulesConfig()
        if not isinstance(self.config, RulesConfig):
            raise TypeError("config must be a RulesConfig")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.hasher = code_hasher if code_hasher is not None else CodeHasher()
        self._cap = cap_verifier
        self._sig = signature_verifier
        self._on_event = on_event
        self.directory = Directory(store, clock=self.clock, code_hasher=self.hasher)
        self._record_config(actor)

    # -- helpers ------------------------------------------------------------------------------

    def _now(self, now: datetime | None) -> int:
        return to_us(now if now is not None else self.clock.now())

    def _record_config(self, actor: str) -> None:
        """R20: a configuration change is audited (compared with the last one stored)."""
        new = self.config.to_json()
        with self.store.transaction() as tx:
            old = tx.setting_get("rules_config")
            if old != new and tx.setting_replace("rules_config", old, new):
                tx.audit(at=self._now(None), actor=actor, subject="config", method="CONFIG",
                         result="CONFIG_CHANGED", reason="initial" if old is None else "changed")

    @staticmethod
    def _usable(user: UserRow | None, now: int) -> str:
        if user is None:
            return "unknown_user"
        if not user.subscription_active:
            return "subscription_inactive"
        if not user.active:
            return "user_inactive"
        if user.blocked(now):
            return "blocked"
        return ""

    def _fail(self, tx: Tx, user: UserRow, now: int, method: str, reason: str,
              events: list[tuple[str, dict[str, Any]]], actor: str | None = None) -> Outcome:
        """Counts one failure (R10), sets the block once when the limit is reached (R10, R11)."""
        subject = subject_of(user.subscription, user.user_no)
        tx.audit(at=now, actor=actor or subject, subject=subject, method=method,
                 result=Outcome.AUTH_FAILED.value, reason=reason)
        failures = tx.user_count_failure(user.id)
        cfg = self.config
        if failures >= cfg.max_failures:
            permanent = user.temp_blocks >= cfg.max_temporary_blocks
            until = None if permanent else now + cfg.block_duration_seconds * _US
            if tx.user_set_block(user.id, threshold=cfg.max_failures, now=now, until=until):
                tx.audit(at=now, actor="system", subject=subject, method=method,
                         result="PERMANENT_BLOCK" if permanent else "BLOCK",
                         reason=f"{cfg.max_failures}_failures")
                log.info("user %s blocked (%s)", subject, "permanent" if permanent else "temporary")
                if not permanent and user.temp_blocks + 1 >= cfg.max_temporary_blocks:
                    tx.audit(at=now, actor="system", subject=subject, method=method,
                             result=PERMANENT_BLOCK_IMMINENT, reason="last_temporary_block")
                    events.append((PERMANENT_BLOCK_IMMINENT, {
                        "subscription": user.subscription, "user_no": user.user_no,
                        "blocked_until": from_us(until)}))
        return Outcome.AUTH_FAILED

    def _emit(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        if self._on_event is not None:
            for name, details in events:
                self._on_event(name, details)

    def _new_session(self, tx: Tx, user: UserRow, method: Method, level: AuthLevel, now: int,
                     must_change: bool) -> Session:
        sid = secrets.token_urlsafe(24)
        sca_at = now if level is AuthLevel.SCA else user.last_sca_at
        tx.session_insert(SessionRow(sid, user.id, method.value, level.value, sca_at, now,
                                     must_change, True), now)
        return Session(sid, user.subscription, user.user_no, Role(user.role), method, level,
                       from_us(sca_at), must_change)

    def _open_session(self, tx: Tx, session: Session | str, now: int, *,
                      also_lock: int | None = None) -> tuple[SessionRow, UserRow, str] | Outcome:
        """Loads the session, locks its user (and `also_lock`, in id order), applies R13; returns
        the session, its user and the user's audit subject."""
        sid = session.id if isinstance(session, Session) else session
        if not isinstance(sid, str) or not _TOKEN.match(sid):
            return Outcome.SESSION_EXPIRED
        row = tx.session_get(sid)
        if row is None or not row.active:
            return Outcome.SESSION_EXPIRED
        ids = sorted({row.user_id} | ({also_lock} if also_lock is not None else set()))
        users = {uid: tx.user_get(uid, lock=True) for uid in ids}
        user = users[row.user_id]
        if not tx.session_touch(sid, now=now, idle_limit=self.config.inactivity_seconds * _US):
            tx.session_end(sid)
            if user is not None:
                s = subject_of(user.subscription, user.user_no)
                tx.audit(at=now, actor=s, subject=s, method="SESSION",
                         result=Outcome.SESSION_EXPIRED.value, reason="inactivity")
            return Outcome.SESSION_EXPIRED
        if user is None or not user.active or not user.subscription_active:
            tx.session_end(sid)
            return Outcome.SESSION_EXPIRED
        return row, user, subject_of(user.subscription, user.user_no)

    # -- login (R1–R5, R9, R10, R14, R16, R17) ------------------------------------------------

    def issue_login_challenge(self, subscription: str, user_no: str, *,
                              now: datetime | None = None) -> LoginChallenge | None:
        """A fresh login challenge for a CAP (Respond) or certificate login. Issued the same way
        whether or not the user exists (R2); None only for malformed identifiers."""
        if not (isinstance(subscription, str) and _IDENT.match(subscription)
                and isinstance(user_no, str) and _IDENT.match(user_no)):
            return None
        t = self._now(now)
        nonce = secrets.token_bytes(32)
        digest = login_digest(subscription, user_no)
        row = ChallengeRow(secrets.token_urlsafe(16), nonce, subscription, user_no, None, None,
                           _LOGIN, digest, t + self.config.challenge_ttl_seconds * _US)
        cap_challenge = None
        if self._cap is not None:
            cap_challenge = self._cap.challenge(
                CapMode("respond", _LOGIN, nonce, digest, subscription, user_no))
        self.store.insert_challenge(row, t)
        return LoginChallenge(row.id, nonce, cap_challenge,
                              from_us(row.expires_at))  # type: ignore[arg-type]

    def login(self, request: LoginRequest, *, now: datetime | None = None) -> LoginResult:
        t = self._now(now)
        method, problem = _login_shape(request)
        if method is None or (method is Method.CAP and self._cap is None) or (
                method is Method.CERT and self._sig is None):
            with self.store.transaction() as tx:
                tx.audit(at=t, actor="anonymous", subject="login", method="LOGIN",
                         result=Outcome.INVALID_REQUEST.value,
                         reason=problem or "method_unavailable")
            return LoginResult(Outcome.INVALID_REQUEST)
        if method is Method.CODE:
            return self._login_code(request, t)
        return self._login_strong(request, method, t)

    def _login_code(self, req: LoginRequest, t: int) -> LoginResult:
        # Argon2id runs outside the write transaction (it takes ~100 ms); the transaction then
        # checks that the hash verified is still the stored one.
        with self.store.read() as tx:
            before = tx.user_find(req.subscription, req.user_no)
        verified_hash, ok = None, False
        if self._usable(before, t) or before is None or before.code_hash is None:
            try:
                self.hasher.dummy_verify(req.code)  # same time as a real check (R2)
            except InvalidConfidentialCode:
                pass
        else:
            verified_hash = before.code_hash
            try:
                self.hasher.verify(before.code_hash, req.code)  # type: ignore[arg-type]
                ok = True
            except InvalidConfidentialCode:
                pass
        events: list[tuple[str, dict[str, Any]]] = []
        with self.store.transaction() as tx:
            result = self._decide_code_login(tx, req, t, verified_hash, ok, events)
        self._emit(events)
        return result

    def _decide_code_login(self, tx: Tx, req: LoginRequest, t: int, verified_hash: str | None,
                           ok: bool, events: list) -> LoginResult:
        subject = subject_of(req.subscription, req.user_no)
        user = tx.user_find(req.subscription, req.user_no, lock=True)
        reason = self._usable(user, t)
        if reason:
            tx.audit(at=t, actor=subject, subject=subject, method="CODE",
                     result=Outcome.AUTH_FAILED.value, reason=reason)
            return LoginResult(Outcome.AUTH_FAILED)
        assert user is not None
        if user.code_hash is None:
            return LoginResult(self._fail(tx, user, t, "CODE", "no_code", events))
        if verified_hash != user.code_hash:
            # State moved between the check and this transaction: nothing was verified against
            # the current code, so nothing is counted either way.
            tx.audit(at=t, actor=subject, subject=subject, method="CODE",
                     result=Outcome.AUTH_FAILED.value, reason="stale")
            return LoginResult(Outcome.AUTH_FAILED)
        if not ok:
            return LoginResult(self._fail(tx, user, t, "CODE", "bad_code", events))
        if not tx.user_record_success(user.id, now=t, sca=False):
            tx.audit(at=t, actor=subject, subject=subject, method="CODE",
                     result=Outcome.AUTH_FAILED.value, reason="blocked")
            return LoginResult(Outcome.AUTH_FAILED)
        if user.last_sca_at is None:  # R4
            tx.audit(at=t, actor=subject, subject=subject, method="CODE",
                     result=Outcome.SCA_REQUIRED.value, reason="first_access")
            return LoginResult(Outcome.SCA_REQUIRED)
        if t - user.last_sca_at > self.config.sca_renewal_days * 86400 * _US:  # R5
            tx.audit(at=t, actor=subject, subject=subject, method="CODE",
                     result=Outcome.SCA_REQUIRED.value, reason="sca_renewal")
            return LoginResult(Outcome.SCA_REQUIRED)
        session = self._new_session(tx, user, Method.CODE, AuthLevel.SINGLE, t,
                                    user.code_must_change)
        outcome = Outcome.CODE_CHANGE_REQUIRED if user.code_must_change else Outcome.OK  # R14
        tx.audit(at=t, actor=subject, subject=subject, method="CODE", result=outcome.value,
                 reason="must_change" if user.code_must_change else "")
        return LoginResult(outcome, session)

    def _login_strong(self, req: LoginRequest, method: Method, t: int) -> LoginResult:
        events: list[tuple[str, dict[str, Any]]] = []
        with self.store.transaction() as tx:
            result = self._decide_strong_login(tx, req, method, t, events)
        self._emit(events)
        return result

    def _decide_strong_login(self, tx: Tx, req: LoginRequest, method: Method, t: int,
                             events: list) -> LoginResult:
        subject = subject_of(req.subscription, req.user_no)
        user = tx.user_find(req.subscription, req.user_no, lock=True)
        challenge = tx.challenge_consume(req.challenge_id, t)  # type: ignore[arg-type]
        reason = self._usable(user, t)
        if reason:
            tx.audit(at=t, actor=subject, subject=subject, method=method.value,
                     result=Outcome.AUTH_FAILED.value, reason=reason)
            return LoginResult(Outcome.AUTH_FAILED)
        assert user is not None
        if challenge is None:
            return LoginResult(self._fail(tx, user, t, method.value, "challenge_spent", events))
        if (challenge.purpose != _LOGIN or challenge.session_id is not None
                or challenge.subscription != req.subscription or challenge.user_no != req.user_no
                or challenge.digest != login_digest(req.subscription, req.user_no)):
            return LoginResult(self._fail(tx, user, t, method.value, "challenge_binding", events))
        mode = CapMode("respond", _LOGIN, challenge.nonce, challenge.digest, user.subscription,
                       user.user_no)
        intent = SigningIntent("LOGIN", challenge.nonce, user.subscription, user.user_no,
                               challenge.digest, from_us(challenge.expires_at))  # type: ignore[arg-type]
        failure = self._check_evidence(tx, user, t, req.cap_code, req.cert, mode, intent)
        if failure:
            return LoginResult(self._fail(tx, user, t, method.value, failure, events))
        if not tx.user_record_success(user.id, now=t, sca=True):  # R3, R5
            tx.audit(at=t, actor=subject, subject=subject, method=method.value,
                     result=Outcome.AUTH_FAILED.value, reason="blocked")
            return LoginResult(Outcome.AUTH_FAILED)
        session = self._new_session(tx, user, method, AuthLevel.SCA, t, False)
        tx.audit(at=t, actor=subject, subject=subject, method=method.value,
                 result=Outcome.OK.value)
        return LoginResult(Outcome.OK, session)

    def _check_evidence(self, tx: Tx, user: UserRow, t: int, cap_code: str | None,
                        cert: CertEvidence | None, mode: CapMode, intent: SigningIntent) -> str:
        """Runs the CAP or certificate verifier; '' on success, else the audit reason."""
        if cap_code is not None:
            if self._cap is None:
                return "method_unavailable"
            reason = ""
            for card in tx.cards_of(user.id):
                try:
                    atc = self._cap.verify(
                        CapCard(card.id, json.loads(card.profile), card.last_atc), cap_code, mode)
                except Rejected as exc:
                    reason = exc.reason
                    continue
                if not isinstance(atc, int) or isinstance(atc, bool) or atc <= card.last_atc:
                    return "replay"
                if not tx.card_raise_atc(card.id, atc):  # R9: one writer moves the floor
                    return "replay"
                return ""
            return "bad_cap_code" + (f":{reason}" if reason else "")
        if cert is None or self._sig is None:
            return "method_unavailable"
        registration = tx.cert_find(user.id, cert.fingerprint)
        if registration is None:  # R16: registered to this user, active (R19)
            return "cert_not_registered"
        try:
            self._sig.verify(cert, intent, RegisteredCertificate(
                registration.id, registration.fingerprint, registration.serial),
                from_us(t))  # type: ignore[arg-type]
        except Rejected as exc:
            return "bad_signature" + (f":{exc.reason}" if exc.reason else "")
        return ""

    # -- authorisation and step-up (R6–R8, R13, R14) --------------------------------------------

    def _operation_ok(self, operation: object) -> bool:
        return isinstance(operation, str) and bool(_OPERATION.match(operation))

    def logout(self, session: Session | str, *, now: datetime | None = None) -> Outcome:
        """Ends the session at once (the person logged out): OK, audited; SESSION_EXPIRED if it
        had already ended. Its step-up grants die with it (they are bound to the session)."""
        t = self._now(now)
        with self.store.transaction() as tx:
            opened = self._open_session(tx, session, t)
            if isinstance(opened, Outcome):
                return opened
            row, _user, subject = opened
            tx.session_end(row.id)
            tx.audit(at=t, actor=subject, subject=subject, method="SESSION",
                     result=Outcome.OK.value, reason="logout")
            return Outcome.OK

    def authorize(self, session: Session | str, operation: str | Operation, *,
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

            def answer(outcome: Outcome, reason: str = "") -> Outcome:
                tx.audit(at=t, actor=subject, subject=subject, method="AUTHORIZE",
                         result=outcome.value, reason=f"{op if self._operation_ok(op) else '?'}"
                         + (f":{reason}" if reason else ""))
                return outcome

            if not self._operation_ok(op):
                return answer(Outcome.INVALID_REQUEST, "bad_operation")
            if row.must_change and op != Operation.CHANGE_CODE.value:  # R14
                return answer(Outcome.CODE_CHANGE_REQUIRED)
            if op not in self.config.sensitive_operations:
                return answer(Outcome.OK)
            try:
                record = operation_record(op, transaction, operation_id)
            except InvalidTransaction:
                return answer(Outcome.INVALID_REQUEST, "bad_record")
            digest = record.digest()
            if tx.grant_consume(row.id, op, digest, t):
                return answer(Outcome.OK, "step_up_used")
            if tx.grant_pending_other(row.id, op, digest, t):  # R7: record changed
                return answer(Outcome.AUTH_FAILED, "record_changed")
            return answer(Outcome.STEP_UP_REQUIRED)

    def begin_step_up(self, session: Session | str, operation: str | Operation, *,
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
            tx.audit(at=t, actor=subject, subject=subject, method="STEP_UP_BEGIN",
                     result=outcome.value, reason=reason)
            if outcome is not Outcome.OK:
                return StepUpChallenge(outcome)
            nonce = secrets.token_bytes(32)
            digest = record.digest()
            challenge = ChallengeRow(secrets.token_urlsafe(16), nonce, user.subscription,
                                     user.user_no, user.id, row.id, op, digest,
                                     t + self.config.challenge_ttl_seconds * _US)
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
        shape_ok = (isinstance(challenge_id, str) and bool(_TOKEN.match(challenge_id))
                    and (cap_code is None) != (cert is None)
                    and (cap_code is None or _secret_ok(cap_code))
                    and (cert is None or _evidence_ok(cert))
                    and not (cap_code is not None and self._cap is None)
                    and not (cert is not None and self._sig is None))
        events: list[tuple[str, dict[str, Any]]] = []
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
                        events: list) -> Outcome:
        def answer(outcome: Outcome, reason: str = "") -> Outcome:
            tx.audit(at=t, actor=subject, subject=subject, method=f"STEP_UP_{method}",
                     result=outcome.value, reason=reason)
            return outcome

        if not shape_ok:
            return answer(Outcome.INVALID_REQUEST, "bad_request")
        if row.must_change:
            return answer(Outcome.CODE_CHANGE_REQUIRED)
        challenge = tx.challenge_consume(challenge_id, t)
        if user.blocked(t):  # R10: nothing is verified
            return answer(Outcome.AUTH_FAILED, "blocked")
        m = f"STEP_UP_{method}"
        if challenge is None:
            return self._fail(tx, user, t, m, "challenge_spent", events)
        if (challenge.session_id != row.id or challenge.user_id != user.id
                or challenge.purpose not in self.config.sensitive_operations):
            return self._fail(tx, user, t, m, "challenge_binding", events)
        op = challenge.purpose
        try:
            record = operation_record(op, transaction, operation_id)
        except InvalidTransaction:
            return self._fail(tx, user, t, m, "record_mismatch", events)
        if record.digest() != challenge.digest:  # R7: any change after issuance
            return self._fail(tx, user, t, m, "record_changed", events)
        mode = CapMode("sign" if op in PAYMENT_OPERATIONS else "respond", op, challenge.nonce,
                       challenge.digest, user.subscription, user.user_no, record)
        intent = SigningIntent(
            "PAYMENT" if isinstance(record, Payment) else
            "BATCH" if isinstance(record, Batch) else "OPERATION",
            challenge.nonce, user.subscription, user.user_no, challenge.digest,
            from_us(challenge.expires_at), record)  # type: ignore[arg-type]
        failure = self._check_evidence(tx, user, t, cap_code, cert, mode, intent)
        if failure:
            return self._fail(tx, user, t, m, failure, events)
        if not tx.user_record_success(user.id, now=t, sca=True):  # a step-up restarts R5's clock
            return answer(Outcome.AUTH_FAILED, "blocked")
        tx.session_record_sca(row.id, t)
        tx.grant_insert(row.id, op, challenge.digest,
                        expires_at=t + self.config.step_up_grant_ttl_seconds * _US, now=t)
        return answer(Outcome.OK, op)

    # -- confidential code (R14, R15) ----------------------------------------------------------

    def change_code(self, session: Session | str, old_code: str, new_code: str, *,
                    now: datetime | None = None) -> Outcome:
        """Changes the session user's confidential code: the old one must verify (counts as a
        failure otherwise), the new one must meet the policy (INVALID_REQUEST). Clears must_change."""
        t = self._now(now)
        sid = session.id if isinstance(session, Session) else session
        if not (_secret_ok(old_code) and _secret_ok(new_code)):
            return Outcome.INVALID_REQUEST
        with self.store.read() as tx:
            srow = tx.session_get(sid) if isinstance(sid, str) else None
            before = tx.user_get(srow.user_id) if srow is not None else None
        verified_hash, ok = None, False
        if before is None or before.code_hash is None or self._usable(before, t):
            try:
                self.hasher.dummy_verify(old_code)
            except InvalidConfidentialCode:
                pass
        else:
            verified_hash = before.code_hash
            try:
                self.hasher.verify(before.code_hash, old_code)
                ok = True
            except InvalidConfidentialCode:
                pass
        weak = ""
        try:
            check_policy(new_code, old=old_code)
        except WeakCode as exc:
            weak = exc.reason
        new_hash = self.hasher.hash(new_code) if ok and not weak else None
        events: list[tuple[str, dict[str, Any]]] = []
        with self.store.transaction() as tx:
            opened = self._open_session(tx, sid, t)
            if isinstance(opened, Outcome):
                return opened
            row, user, subject = opened

            def answer(outcome: Outcome, reason: str = "") -> Outcome:
                tx.audit(at=t, actor=subject, subject=subject, method="CHANGE_CODE",
                         result=outcome.value, reason=reason)
                return outcome

            if user.blocked(t):
                result = answer(Outcome.AUTH_FAILED, "blocked")
            elif user.code_hash is None:
                result = self._fail(tx, user, t, "CHANGE_CODE", "no_code", events)
            elif verified_hash != user.code_hash:
                result = answer(Outcome.AUTH_FAILED, "stale")
            elif not ok:
                result = self._fail(tx, user, t, "CHANGE_CODE", "bad_code", events)
            elif weak:
                result = answer(Outcome.INVALID_REQUEST, f"policy_{weak}")
            elif not tx.user_set_code(user.id, new_hash, must_change=False,  # type: ignore[arg-type]
                                      expected_hash=user.code_hash):
                result = answer(Outcome.AUTH_FAILED, "stale")
            else:
                tx.user_record_success(user.id, now=t, sca=False)
                tx.session_code_changed(row.id)
                result = answer(Outcome.OK, "changed")
        self._emit(events)
        return result

    def reset_code(self, session: Session | str, subscription: str, user_no: str, *,
                   now: datetime | None = None) -> ResetResult:
        """R15: the principal or an admin of the same subscription, in an SCA session, gives a user
        a new random code flagged must_change (returned once, only its hash stored); the old code
        stops working at once and the target's failure counters and blocks are cleared (R12)."""
        t = self._now(now)
        if not (isinstance(subscription, str) and _IDENT.match(subscription)
                and isinstance(user_no, str) and _IDENT.match(user_no)):
            return ResetResult(Outcome.INVALID_REQUEST)
        code = generate_code()
        code_hash = self.hasher.hash(code)
        with self.store.transaction() as tx:
            target = tx.user_find(subscription, user_no)
            opened = self._open_session(tx, session, t,
                                        also_lock=target.id if target is not None else None)
            if isinstance(opened, Outcome):
                return ResetResult(opened)
            row, actor, actor_s = opened
            target_s = subject_of(subscription, user_no)

            def answer(outcome: Outcome, reason: str = "") -> ResetResult:
                tx.audit(at=t, actor=actor_s, subject=target_s, method="RESET_CODE",
                         result=outcome.value, reason=reason)
                return ResetResult(outcome)

            if row.must_change:
                return answer(Outcome.CODE_CHANGE_REQUIRED)
            if subscription != actor.subscription:
                return answer(Outcome.FORBIDDEN, "other_subscription")
            if actor.role not in (Role.PRINCIPAL.value, Role.ADMIN.value):
                return answer(Outcome.FORBIDDEN, "role")
            if row.auth_level != AuthLevel.SCA.value:
                return answer(Outcome.SCA_REQUIRED, "session_not_sca")
            target = tx.user_get(target.id) if target is not None else None
            if target is None or not target.active:
                return answer(Outcome.INVALID_REQUEST, "unknown_target")
            was_blocked = target.blocked(t) or target.failures > 0 or target.temp_blocks > 0
            tx.user_set_code(target.id, code_hash, must_change=True, reset_counters=True)
            answer(Outcome.OK, "one_time_code_issued")
            if was_blocked:
                tx.audit(at=t, actor=actor_s, subject=target_s, method="RESET_CODE",
                         result="UNBLOCK", reason="counters_cleared")
        return ResetResult(Outcome.OK, code)

    # -- back office (R12, R19) -----------------------------------------------------------------

    def unblock(self, subscription: str, user_no: str, *, actor: str,
                now: datetime | None = None) -> bool:
        """Bank back-office unblock (R12), audited. Same as ``directory.unblock``."""
        return self.directory.unblock(subscription, user_no, actor=actor, now=now)

    def deactivate(self, kind: str, *, actor: str, subscription: str, user_no: str | None = None,
                   credential_id: int | None = None, now: datetime | None = None) -> bool:
        """Revocation (R19): `kind` is "card", "certificate", "user" or "subscription". Later
        verifications fail and open challenges are voided in the same transaction."""
        return self.directory.deactivate(kind, actor=actor, subscription=subscription,
                                         user_no=user_no, credential_id=credential_id, now=now)

    def resync_card(self, subscription: str, user_no: str, card_id: int, code1: str, code2: str,
                    *, actor: str, now: datetime | None = None) -> bool:
        """Back office: after a large ATC gap (the card was used many times without the bank
        seeing it), two consecutive Identify codes move the card's floor up to the second code's
        ATC. The floor never moves down; a refusal counts as a failure for the user (R10) and
        nothing is verified while the user is blocked. A resync is not a login. Audited."""
        if not isinstance(self._cap, CapResync):
            raise TypeError("the CAP verifier has no resync()")
        if not (_secret_ok(code1) and _secret_ok(code2)):
            return False
        t = self._now(now)
        events: list[tuple[str, dict[str, Any]]] = []
        with self.store.transaction() as tx:
            user = tx.user_find(subscription, user_no, lock=True) if (
                isinstance(subscription, str) and _IDENT.match(subscription)
                and isinstance(user_no, str) and _IDENT.match(user_no)) else None
            card = next((c for c in tx.cards_of(user.id) if c.id == card_id), None) if (
                user is not None) else None
            subject = subject_of(subscription, user_no) if user is not None else "unknown"
            reason = self._usable(user, t) or ("unknown_card" if card is None else "")
            if reason:
                tx.audit(at=t, actor=actor, subject=subject, method="CAP_RESYNC",
                         result=Outcome.AUTH_FAILED.value, reason=reason)
                ok = False
            else:
                assert user is not None and card is not None
                try:
                    floor = self._cap.resync(
                        CapCard(card.id, json.loads(card.profile), card.last_atc), code1, code2)
                    ok = (isinstance(floor, int) and not isinstance(floor, bool)
                          and tx.card_raise_atc(card.id, floor))
                except Rejected:
                    ok = False
                if ok:
                    tx.audit(at=t, actor=actor, subject=subject, method="CAP_RESYNC",
                             result=Outcome.OK.value, reason=f"card_{card.id}")
                else:
                    self._fail(tx, user, t, "CAP_RESYNC", "bad_resync_codes", events,
                               actor=actor)
        self._emit(events)
        return ok

    def purge_expired(self, *, older_than_seconds: int = 3600, now: datetime | None = None) -> int:
        """Deletes challenges that expired more than `older_than_seconds` ago."""
        t = self._now(now)
        with self.store.transaction(durable=False) as tx:
            return tx.challenges_purge(t - older_than_seconds * _US)


def _amount(record: Payment | Batch | OperationRef) -> int | None:
    if isinstance(record, Payment):
        return record.amount_minor
    if isinstance(record, Batch):
        return record.total_minor
    return None
