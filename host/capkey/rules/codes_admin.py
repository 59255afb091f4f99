"""Confidential-code management and the back office (R12, R14, R15, R19): the `AuthService` methods
that change or reset a user's code and the bank's unblock, revocation and CAP resync. Hashing and
the code policy are `codes.py`."""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial

from .codes import WeakCode, check_policy, generate_code
from .core import US, Events, ServiceCore, audited, identifiers_ok, secret_ok
from .directory import subject_of
from .interfaces import CapCard, CapResync, Rejected, cap_accepted
from .model import AuthLevel, Outcome, ResetResult, Role, Session


class CodeAdminRules(ServiceCore):
    # -- confidential code (R14, R15) ----------------------------------------------------------

    def change_code(self, session: Session | str, old_code: str, new_code: str, *,
                    now: datetime | None = None) -> Outcome:
        """Changes the session user's confidential code: the old one must verify (counts as a
        failure otherwise), the new one must meet the policy (INVALID_REQUEST). Clears must_change."""
        t = self._now(now)
        sid = session.id if isinstance(session, Session) else session
        if not (secret_ok(old_code) and secret_ok(new_code)):
            return Outcome.INVALID_REQUEST
        with self.store.read() as tx:
            srow = tx.session_get(sid) if isinstance(sid, str) else None
            before = tx.user_get(srow.user_id) if srow is not None else None
        verified_hash, ok = self._verify_code(before, old_code, t)
        weak = ""
        try:
            check_policy(new_code, old=old_code)
        except WeakCode as exc:
            weak = exc.reason
        new_hash = self.hasher.hash(new_code) if ok and not weak else None
        events: Events = []
        with self.store.transaction() as tx:
            opened = self._open_session(tx, sid, t)
            if isinstance(opened, Outcome):
                return opened
            row, user, subject = opened
            answer = partial(audited, tx, t, subject, subject, "CHANGE_CODE")
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
        if not identifiers_ok(subscription, user_no):
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
            answer = partial(audited, tx, t, actor_s, target_s, "RESET_CODE")
            if row.must_change:
                return ResetResult(answer(Outcome.CODE_CHANGE_REQUIRED))
            if subscription != actor.subscription:
                return ResetResult(answer(Outcome.FORBIDDEN, "other_subscription"))
            if actor.role not in (Role.PRINCIPAL.value, Role.ADMIN.value):
                return ResetResult(answer(Outcome.FORBIDDEN, "role"))
            if row.auth_level != AuthLevel.SCA.value:
                return ResetResult(answer(Outcome.SCA_REQUIRED, "session_not_sca"))
            target = tx.user_get(target.id) if target is not None else None
            if target is None or not target.active:
                return ResetResult(answer(Outcome.INVALID_REQUEST, "unknown_target"))
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
        if not (secret_ok(code1) and secret_ok(code2)):
            return False
        t = self._now(now)
        events: Events = []
        with self.store.transaction() as tx:
            user = tx.user_find(subscription, user_no, lock=True) if (
                identifiers_ok(subscription, user_no)) else None
            card = next((c for c in tx.cards_of(user.id) if c.id == card_id), None) if (
                user is not None) else None
            subject = subject_of(subscription, user_no) if user is not None else "unknown"
            reason = self._usable(user, t) or ("unknown_card" if card is None else "")
            if reason:
                audited(tx, t, actor, subject, "CAP_RESYNC", Outcome.AUTH_FAILED, reason)
                ok = False
            else:
                assert user is not None and card is not None
                try:
                    accepted = cap_accepted(self._cap.resync(
                        CapCard(card.id, json.loads(card.profile), card.last_atc,
                                card.reader_family), code1, code2), card.last_atc)
                    ok = accepted is not None and tx.card_raise_atc(
                        card.id, accepted.atc, accepted.reader_family)
                except Rejected:
                    ok = False
                if ok:
                    audited(tx, t, actor, subject, "CAP_RESYNC", Outcome.OK, f"card_{card.id}")
                else:
                    self._fail(tx, user, t, "CAP_RESYNC", "bad_resync_codes", events,
                               actor=actor)
        self._emit(events)
        return ok

    def purge_expired(self, *, older_than_seconds: int = 3600, now: datetime | None = None) -> int:
        """Deletes challenges that expired more than `older_than_seconds` ago."""
        t = self._now(now)
        with self.store.transaction(durable=False) as tx:
            return tx.challenges_purge(t - older_than_seconds * US)
