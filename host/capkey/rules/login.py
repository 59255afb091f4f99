"""Login and logout (R1–R5, R9, R10, R14, R16, R17): the `AuthService` methods that open and end a
session."""

from __future__ import annotations

import secrets
from datetime import datetime
from functools import partial

from ..store import ChallengeRow, SessionRow, Tx, UserRow
from .core import (
    LOGIN,
    NO_USER,
    TOKEN,
    US,
    Events,
    ServiceCore,
    audited,
    evidence_ok,
    evidence_targets,
    from_us,
    identifiers_ok,
    secret_ok,
)
from .directory import subject_of
from .interfaces import CapMode
from .model import (
    AuthLevel,
    LoginChallenge,
    LoginRequest,
    LoginResult,
    Method,
    Outcome,
    Role,
    Session,
    login_digest,
)


def _login_shape(req: object) -> tuple[Method | None, str]:
    """R1: identifiers and exactly one method; the method or an audit reason."""
    if not isinstance(req, LoginRequest):
        return None, "not_a_login_request"
    if not identifiers_ok(req.subscription, req.user_no):
        return None, "bad_identifiers"
    given = [m for m, v in ((Method.CODE, req.code), (Method.CAP, req.cap_code),
                            (Method.CERT, req.cert)) if v is not None]
    if len(given) != 1:
        return None, "not_exactly_one_method"
    method = given[0]
    if method is Method.CODE:
        if not secret_ok(req.code) or req.challenge_id is not None:
            return None, "bad_code_request"
    else:
        if not (isinstance(req.challenge_id, str) and TOKEN.match(req.challenge_id)):
            return None, "missing_challenge"
        if method is Method.CAP and not secret_ok(req.cap_code):
            return None, "bad_cap_request"
        if method is Method.CERT and not evidence_ok(req.cert):
            return None, "bad_cert_request"
    return method, ""


def _challenge_problem(challenge: ChallengeRow | None, req: LoginRequest) -> str:
    """Why `challenge` cannot carry this login (the audit reason), or ''."""
    if challenge is None:
        return "challenge_spent"
    if (challenge.purpose != LOGIN or challenge.session_id is not None
            or challenge.subscription != req.subscription or challenge.user_no != req.user_no
            or challenge.digest != login_digest(req.subscription, req.user_no)):
        return "challenge_binding"
    return ""


class LoginRules(ServiceCore):
    def issue_login_challenge(self, subscription: str, user_no: str, *,
                              now: datetime | None = None) -> LoginChallenge | None:
        """A fresh login challenge for a CAP or certificate login: its digits serve a Respond
        code (an Identify code, the guide's CODE key, needs none). Issued the same way whether or
        not the user exists (R2); None only for malformed identifiers."""
        if not identifiers_ok(subscription, user_no):
            return None
        t = self._now(now)
        nonce = secrets.token_bytes(32)
        digest = login_digest(subscription, user_no)
        row = ChallengeRow(secrets.token_urlsafe(16), nonce, subscription, user_no, None, None,
                           LOGIN, digest, t + self.config.challenge_ttl_seconds * US)
        cap_challenge = None
        if self._cap is not None:
            cap_challenge = self._cap.challenge(
                CapMode("respond", LOGIN, nonce, digest, subscription, user_no))
        self.store.insert_challenge(row, t)
        return LoginChallenge(row.id, nonce, cap_challenge,
                              from_us(row.expires_at))  # type: ignore[arg-type]

    def login(self, request: LoginRequest, *, now: datetime | None = None) -> LoginResult:
        t = self._now(now)
        method, problem = _login_shape(request)
        if method is None or (method is Method.CAP and self._cap is None) or (
                method is Method.CERT and self._sig is None):
            with self.store.transaction() as tx:
                audited(tx, t, "anonymous", "login", "LOGIN", Outcome.INVALID_REQUEST,
                        problem or "method_unavailable")
            return LoginResult(Outcome.INVALID_REQUEST)
        if method is Method.CODE:
            return self._login_code(request, t)
        return self._login_strong(request, method, t)

    def _login_code(self, req: LoginRequest, t: int) -> LoginResult:
        # Argon2id runs outside the write transaction (it takes ~100 ms); the transaction then
        # checks that the hash verified is still the stored one.
        with self.store.read() as tx:
            before = tx.user_find(req.subscription, req.user_no)
        verified_hash, ok = self._verify_code(before, req.code, t)  # type: ignore[arg-type]
        events: Events = []
        with self.store.transaction() as tx:
            result = self._decide_code_login(tx, req, t, verified_hash, ok, events)
        self._emit(events)
        return result

    def _decide_code_login(self, tx: Tx, req: LoginRequest, t: int, verified_hash: str | None,
                           ok: bool, events: Events) -> LoginResult:
        subject = subject_of(req.subscription, req.user_no)
        answer = partial(audited, tx, t, subject, subject, "CODE")
        user = tx.user_find(req.subscription, req.user_no, lock=True)
        reason = self._usable(user, t)
        if reason:
            return LoginResult(self._refuse(tx, t, answer, reason))
        assert user is not None
        if user.code_hash is None:
            return LoginResult(self._fail(tx, user, t, "CODE", "no_code", events))
        if verified_hash != user.code_hash:
            # State moved between the check and this transaction: nothing was verified against
            # the current code, so nothing is counted either way.
            return LoginResult(self._refuse(tx, t, answer, "stale"))
        if not ok:
            return LoginResult(self._fail(tx, user, t, "CODE", "bad_code", events))
        if not tx.user_record_success(user.id, now=t, sca=False):
            return LoginResult(answer(Outcome.AUTH_FAILED, "blocked"))
        if user.last_sca_at is None:  # R4
            return LoginResult(answer(Outcome.SCA_REQUIRED, "first_access"))
        if t - user.last_sca_at > self.config.sca_renewal_days * 86400 * US:  # R5
            return LoginResult(answer(Outcome.SCA_REQUIRED, "sca_renewal"))
        session = self._new_session(tx, user, Method.CODE, AuthLevel.SINGLE, t,
                                    user.code_must_change)
        if user.code_must_change:  # R14
            return LoginResult(answer(Outcome.CODE_CHANGE_REQUIRED, "must_change"), session)
        return LoginResult(answer(Outcome.OK), session)

    def _login_strong(self, req: LoginRequest, method: Method, t: int) -> LoginResult:
        events: Events = []
        with self.store.transaction() as tx:
            result = self._decide_strong_login(tx, req, method, t, events)
        self._emit(events)
        return result

    def _decide_strong_login(self, tx: Tx, req: LoginRequest, method: Method, t: int,
                             events: Events) -> LoginResult:
        subject = subject_of(req.subscription, req.user_no)
        answer = partial(audited, tx, t, subject, subject, method.value)
        user = tx.user_find(req.subscription, req.user_no, lock=True)
        challenge = tx.challenge_consume(req.challenge_id, t)  # type: ignore[arg-type]
        unusable = self._usable(user, t)
        problem = unusable or _challenge_problem(challenge, req)
        # The evidence is checked for a usable user over a good challenge only; otherwise the
        # same work is done for nobody (R2).
        mode, intent = evidence_targets(
            challenge, req.subscription, req.user_no, t,
            login_kind="respond" if self.config.cap_login_respond_only else "login")
        failure = self._check_evidence(tx, NO_USER if problem or user is None else user.id, t,
                                       req.cap_code, req.cert, mode, intent)
        if unusable:
            return LoginResult(self._refuse(tx, t, answer, unusable))
        assert user is not None
        if problem or failure:
            return LoginResult(self._fail(tx, user, t, method.value, problem or failure, events))
        if not tx.user_record_success(user.id, now=t, sca=True):  # R3, R5
            return LoginResult(answer(Outcome.AUTH_FAILED, "blocked"))
        session = self._new_session(tx, user, method, AuthLevel.SCA, t, False)
        return LoginResult(answer(Outcome.OK), session)

    def _new_session(self, tx: Tx, user: UserRow, method: Method, level: AuthLevel, now: int,
                     must_change: bool) -> Session:
        sid = secrets.token_urlsafe(24)
        sca_at = now if level is AuthLevel.SCA else user.last_sca_at
        tx.session_insert(SessionRow(sid, user.id, method.value, level.value, sca_at, now,
                                     must_change, True), now)
        return Session(sid, user.subscription, user.user_no, Role(user.role), method, level,
                       from_us(sca_at), must_change)

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
            return audited(tx, t, subject, subject, "SESSION", Outcome.OK, "logout")
