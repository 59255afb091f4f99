"""What the parts of `AuthService` share: time in microseconds, request-shape checks, the audited
decision, and `ServiceCore` (the service's state and the steps every rule reuses: blocking,
session opening, evidence checks).

The rules themselves are in `login.py`, `stepup.py` and `codes_admin.py`; `service.py` puts them
together.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ..store import ChallengeRow, SessionRow, Store, Tx, UserRow
from .codes import CodeHasher, InvalidConfidentialCode
from .config import RulesConfig
from .directory import Directory, subject_of
from .interfaces import (
    CapCard,
    CapCheck,
    CapDummy,
    CapMode,
    Clock,
    RegisteredCertificate,
    Rejected,
    SignatureCheck,
    SignatureDummy,
    SigningIntent,
    SystemClock,
    cap_accepted,
)
from .model import (
    PAYMENT_OPERATIONS,
    PERMANENT_BLOCK_IMMINENT,
    Batch,
    CertEvidence,
    OperationRef,
    Outcome,
    Payment,
    Session,
)

# The logger keeps the name it had before the service was split, so logging setups still match.
log = logging.getLogger("capkey.rules.service")

IDENT = re.compile(r"^[A-Za-z0-9_-]{1,12}$")  # never 13+ digits: cannot be mistaken for a PAN
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
US = 1_000_000
_MAX_SECRET = 256
LOGIN = "LOGIN"  # the purpose of a login challenge
# No row has this id (both engines number rows from 1): the refusals that have no user or
# credential to check run their statements against it, so that they cost what the others do (R2).
NO_USER = 0

# Events to hand to `on_event` once the transaction that raised them has committed.
Events = list[tuple[str, dict[str, Any]]]


def to_us(now: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    delta = now - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def identifiers_ok(subscription: object, user_no: object) -> bool:
    return bool(isinstance(subscription, str) and IDENT.match(subscription)
                and isinstance(user_no, str) and IDENT.match(user_no))


def secret_ok(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_SECRET


def evidence_ok(cert: object) -> bool:
    return (isinstance(cert, CertEvidence) and isinstance(cert.certificate, bytes)
            and isinstance(cert.signature, bytes) and 0 < len(cert.certificate) <= 16384
            and 0 < len(cert.signature) <= 1024 and isinstance(cert.chain, tuple)
            and len(cert.chain) <= 8 and all(isinstance(c, bytes) for c in cert.chain))


def evidence_targets(challenge: ChallengeRow | None, subscription: str, user_no: str, now: int,
                     record: Payment | Batch | OperationRef | None = None,
                     login_kind: Literal["login", "respond"] = "respond"
                     ) -> tuple[CapMode, SigningIntent]:
    """What a CAP code and a signature must cover: `challenge`, for a login (`record` None; the
    CAP mode `login_kind`) or for the operation on `record` (Sign mode for a payment or batch,
    else Respond). Without a challenge (spent, unknown, or not this request's), a challenge nobody
    was issued: the dummy verification's."""
    if challenge is None:
        purpose, nonce, digest, expires_at = LOGIN, bytes(32), bytes(32), now
    else:
        purpose, nonce, digest, expires_at = (challenge.purpose, challenge.nonce,
                                              challenge.digest, challenge.expires_at)
    kind = "sign" if purpose in PAYMENT_OPERATIONS else login_kind if purpose == LOGIN else "respond"
    mode = CapMode(kind, purpose, nonce, digest, subscription, user_no, record)
    intent = SigningIntent(
        "LOGIN" if record is None else "PAYMENT" if isinstance(record, Payment) else
        "BATCH" if isinstance(record, Batch) else "OPERATION",
        nonce, subscription, user_no, digest, from_us(expires_at), record)  # type: ignore[arg-type]
    return mode, intent


def audited(tx: Tx, at: int, actor: str, subject: str, method: str, outcome: Outcome,
            reason: str = "") -> Outcome:
    """Records a decision to the audit trail in the transaction that made it, with the reason
    the caller never sees (R2), and returns the outcome. Each rule binds the first five
    arguments once (`functools.partial`) and answers through it."""
    tx.audit(at=at, actor=actor, subject=subject, method=method, result=outcome.value,
             reason=reason)
    return outcome


class ServiceCore:
    """The state of `AuthService` (see there for the arguments) and the steps its rules share."""

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
        # Looked up once: a protocol isinstance check costs microseconds per call.
        self._cap_dummy = (cap_verifier.dummy_verify if isinstance(cap_verifier, CapDummy)
                           else None)
        self._sig_dummy = (signature_verifier.dummy_verify
                           if isinstance(signature_verifier, SignatureDummy) else None)
        self._on_event = on_event
        self.directory = Directory(store, clock=self.clock, code_hasher=self.hasher)
        self._record_config(actor)

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

    def _verify_code(self, before: UserRow | None, code: str, t: int) -> tuple[str | None, bool]:
        """Checks a confidential code against `before` (the user read outside any write
        transaction: Argon2id takes ~100 ms). Returns the hash it was checked against (None if
        none was) and whether it verified; the caller's transaction must find that hash still
        stored before trusting the answer."""
        if self._usable(before, t) or before is None or before.code_hash is None:
            try:
                self.hasher.dummy_verify(code)  # same time as a real check (R2)
            except InvalidConfidentialCode:
                pass
            return None, False
        try:
            self.hasher.verify(before.code_hash, code)
        except InvalidConfidentialCode:
            return before.code_hash, False
        return before.code_hash, True

    def _refuse(self, tx: Tx, now: int, answer: Callable[..., Outcome], reason: str) -> Outcome:
        """AUTH_FAILED that counts for nobody: an unknown, deactivated or blocked user (R10), a
        stale code check. A counted failure updates the user's row; this makes the same kind of
        write aimed at no row, so that both cost the same (R2)."""
        cfg = self.config
        tx.user_set_block(NO_USER, threshold=cfg.max_failures, now=now,
                          until=now + cfg.block_duration_seconds * US)
        return answer(Outcome.AUTH_FAILED, reason)

    def _fail(self, tx: Tx, user: UserRow, now: int, method: str, reason: str,
              events: Events, actor: str | None = None) -> Outcome:
        """Counts one failure (R10), sets the block once when the limit is reached (R10, R11)."""
        subject = subject_of(user.subscription, user.user_no)
        outcome = audited(tx, now, actor or subject, subject, method, Outcome.AUTH_FAILED, reason)
        failures = tx.user_count_failure(user.id)
        cfg = self.config
        if failures >= cfg.max_failures:
            permanent = user.temp_blocks >= cfg.max_temporary_blocks
            until = None if permanent else now + cfg.block_duration_seconds * US
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
        return outcome

    def _emit(self, events: Events) -> None:
        if self._on_event is not None:
            for name, details in events:
                self._on_event(name, details)

    def _open_session(self, tx: Tx, session: Session | str, now: int, *,
                      also_lock: int | None = None) -> tuple[SessionRow, UserRow, str] | Outcome:
        """Loads the session, locks its user (and `also_lock`, in id order), applies R13; returns
        the session, its user and the user's audit subject."""
        sid = session.id if isinstance(session, Session) else session
        if not isinstance(sid, str) or not TOKEN.match(sid):
            return Outcome.SESSION_EXPIRED
        row = tx.session_get(sid)
        if row is None or not row.active:
            return Outcome.SESSION_EXPIRED
        ids = sorted({row.user_id} | ({also_lock} if also_lock is not None else set()))
        users = {uid: tx.user_get(uid, lock=True) for uid in ids}
        user = users[row.user_id]
        if not tx.session_touch(sid, now=now, idle_limit=self.config.inactivity_seconds * US):
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

    def _check_evidence(self, tx: Tx, user_id: int, t: int, cap_code: str | None,
                        cert: CertEvidence | None, mode: CapMode, intent: SigningIntent) -> str:
        """Runs the CAP or certificate verifier on `user_id`'s active credentials; '' on success,
        else the audit reason. With nothing to check (`NO_USER`, no active card, no matching
        registered certificate) the verifier's dummy verification runs instead, so that every
        refusal costs one verification (R2)."""
        if cap_code is not None:
            if self._cap is None:
                return "method_unavailable"
            cards = tx.cards_of(user_id)
            if not cards and self._cap_dummy is not None:
                self._cap_dummy(cap_code, mode)
            reason = ""
            for card in cards:
                try:
                    result = self._cap.verify(CapCard(card.id, json.loads(card.profile),
                                                      card.last_atc, card.reader_family),
                                              cap_code, mode)
                except Rejected as exc:
                    reason = exc.reason
                    continue
                accepted = cap_accepted(result, card.last_atc)
                if accepted is None:
                    return "replay"
                # R9: one writer moves the floor (and stores the code's reader family with it)
                if not tx.card_raise_atc(card.id, accepted.atc, accepted.reader_family):
                    return "replay"
                return ""
            return "bad_cap_code" + (f":{reason}" if reason else "")
        if cert is None or self._sig is None:
            return "method_unavailable"
        registration = tx.cert_find(user_id, cert.fingerprint)
        if registration is None:  # R16: registered to this user, active (R19)
            if self._sig_dummy is not None:
                self._sig_dummy(cert, intent, from_us(t))
            return "cert_not_registered"
        try:
            self._sig.verify(cert, intent, RegisteredCertificate(
                registration.id, registration.fingerprint, registration.serial),
                from_us(t))  # type: ignore[arg-type]
        except Rejected as exc:
            return "bad_signature" + (f":{exc.reason}" if exc.reason else "")
        return ""
