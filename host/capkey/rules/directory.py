"""Back office: subscriptions, users, credentials, unblock and revocation (R12, R18, R19, R20).

These are the bank's own actions (the ``capkey admin`` command line); `actor` names the operator
and goes to the audit trail with every change. Customer-side administration (an admin of a
subscription resetting a user's code, R15) is `AuthService.reset_code`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import Error
from ..store import Conflict, Store, Tx, UserRow
from .codes import CodeHasher, check_policy, generate_code
from .interfaces import Clock, SystemClock
from .model import Role, UserState

_IDENT = re.compile(r"^[A-Za-z0-9_-]{1,12}$")
_ACTOR = re.compile(r"^[A-Za-z0-9_.:@/-]{1,64}$")
_LABEL = re.compile(r"^[A-Za-z0-9 _.:-]{0,40}$")
# Card profile fields that would hold key material in the clear (R18): a profile carries key
# *references* (an HSM/KMS key id) or wrapped blobs, never a bare key.
_CLEAR_KEY_FIELD = re.compile(r"(^|_)(key|imk|mk|udk|session_key|secret)$", re.IGNORECASE)
_HEX = re.compile(r"^[0-9A-Fa-f]{32,}$")
_PAN_FIELD = re.compile(r"^(\d{13,19})$")


class DirectoryError(Error, ValueError):
    """A back-office request is invalid (unknown user, bad name, clear key in a profile…)."""


def subject_of(subscription: str, user_no: str) -> str:
    return f"{subscription}/{user_no}"


def _check_ident(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise DirectoryError(f"{kind}: 1-12 characters of [A-Za-z0-9_-]")
    return value


def _check_actor(actor: object) -> str:
    if not isinstance(actor, str) or not _ACTOR.match(actor):
        raise DirectoryError("actor: 1-64 characters of [A-Za-z0-9_.:@/-]")
    return actor


def check_card_profile(profile: Mapping[str, Any]) -> str:
    """Validates a CAP card profile for storage and returns its canonical JSON. Refuses clear key
    material (R18): any field named like a key whose value is a long hex string or bytes."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise DirectoryError("profile keys must be strings")
                if _CLEAR_KEY_FIELD.search(k) and (
                        isinstance(v, bytes | bytearray) or (isinstance(v, str) and _HEX.match(v))):
                    raise DirectoryError(
                        f"profile field {path}{k} holds a clear key: store a key reference "
                        "or a wrapped key instead (R18)")
                walk(v, f"{path}{k}.")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}{i}.")

    if not isinstance(profile, Mapping):
        raise DirectoryError("profile must be a JSON object")
    walk(profile, "")
    try:
        return json.dumps(profile, sort_keys=True, separators=(",", ":"))
    except TypeError as exc:
        raise DirectoryError(f"profile is not JSON-serialisable: {exc}") from None


def _us(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    d = now - datetime(1970, 1, 1, tzinfo=UTC)
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def _dt(us: int | None) -> datetime | None:
    return None if us is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits only (no full PAN in any output, R18)."""
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:] if len(pan) > 10 else "*" * len(pan)


class Directory:
    """Provisioning and back-office actions, all audited."""

    def __init__(self, store: Store, *, clock: Clock | None = None,
                 code_hasher: CodeHasher | None = None):
        self.store = store
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.hasher = code_hasher if code_hasher is not None else CodeHasher()

    def _now(self, now: datetime | None) -> int:
        return _us(now if now is not None else self.clock.now())

    def _user(self, tx: Tx, subscription: str, user_no: str) -> UserRow:
        user = tx.user_find(_check_ident("subscription", subscription),
                            _check_ident("user", user_no), lock=True)
        if user is None:
            raise DirectoryError(f"no user {user_no} in subscription {subscription}")
        return user

    def create_subscription(self, ident: str, *, actor: str, now: datetime | None = None) -> int:
        t = self._now(now)
        _check_ident("subscription", ident)
        with self.store.transaction() as tx:
            try:
                sid = tx.subscription_create(ident, t)
            except Conflict as exc:
                raise DirectoryError(str(exc)) from None
            tx.audit(at=t, actor=_check_actor(actor), subject=ident, method="ADMIN",
                     result="SUBSCRIPTION_CREATED")
        return sid

    def add_user(self, subscription: str, user_no: str, role: Role | str, *, actor: str,
                 now: datetime | None = None) -> int:
        t = self._now(now)
        role = Role(role)
        _check_ident("user", user_no)
        with self.store.transaction() as tx:
            sub = tx.subscription_get(_check_ident("subscription", subscription))
            if sub is None or not sub[1]:
                raise DirectoryError(f"no active subscription {subscription}")
            try:
                uid = tx.user_create(sub[0], user_no, role.value, t)
            except Conflict as exc:
                raise DirectoryError(str(exc)) from None
            tx.audit(at=t, actor=_check_actor(actor), subject=subject_of(subscription, user_no),
                     method="ADMIN", result="USER_CREATED", reason=role.value)
        return uid

    def set_code(self, subscription: str, user_no: str, *, actor: str, code: str | None = None,
                 now: datetime | None = None) -> str:
        """Gives the user a new confidential code flagged must_change (R14) and returns it: the
        generated one when `code` is None (shown once; only its hash is stored, R18). Clears the
        failure counters and blocks, like an admin reset (R12, R15)."""
        t = self._now(now)
        if code is None:
            code = generate_code()
        else:
            check_policy(code)
        code_hash = self.hasher.hash(code)
        with self.store.transaction() as tx:
            user = self._user(tx, subscription, user_no)
            if not tx.user_set_code(user.id, code_hash, must_change=True, reset_counters=True):
                raise DirectoryError("user is deactivated")
            tx.audit(at=t, actor=_check_actor(actor), subject=subject_of(subscription, user_no),
                     method="ADMIN", result="CODE_SET", reason="must_change")
        return code

    def attach_card(self, subscription: str, user_no: str, profile: Mapping[str, Any], *,
                    actor: str, label: str = "", now: datetime | None = None) -> int:
        """Registers a CAP card (its verifier profile, R18-checked) for the user; the ATC floor
        starts at the profile's ``last_atc`` if given, else -1."""
        t = self._now(now)
        if not isinstance(label, str) or not _LABEL.match(label):
            raise DirectoryError("label: up to 40 plain characters")
        canonical = check_card_profile(profile)
        start_atc = profile.get("last_atc", -1)
        if isinstance(start_atc, bool) or not isinstance(start_atc, int) or start_atc < -1:
            raise DirectoryError("last_atc must be an integer >= -1")
        if not label:
            pan = profile.get("pan")
            label = mask_pan(pan) if isinstance(pan, str) and _PAN_FIELD.match(pan) else "card"
        with self.store.transaction() as tx:
            user = self._user(tx, subscription, user_no)
            card_id = tx.card_add(user.id, label, canonical, t)
            if start_atc >= 0:
                tx.card_raise_atc(card_id, start_atc)
            tx.audit(at=t, actor=_check_actor(actor), subject=subject_of(subscription, user_no),
                     method="ADMIN", result="CARD_ATTACHED", reason=f"card_{card_id}")
        return card_id

    def attach_certificate(self, subscription: str, user_no: str, certificate: bytes, *,
                           actor: str, serial: str | None = None,
                           now: datetime | None = None) -> int:
        """Registers a certificate (DER) to the user by its SHA-256 fingerprint (R16)."""
        t = self._now(now)
        if not isinstance(certificate, bytes) or not certificate:
            raise DirectoryError("certificate must be DER bytes")
        if serial is None:
            from cryptography import x509

            try:
                serial = format(x509.load_der_x509_certificate(certificate).serial_number, "x")
            except ValueError:
                raise DirectoryError("not a DER X.509 certificate") from None
        fingerprint = hashlib.sha256(certificate).hexdigest()
        with self.store.transaction() as tx:
            user = self._user(tx, subscription, user_no)
            try:
                cert_id = tx.cert_add(user.id, fingerprint, serial, t)
            except Conflict as exc:
                raise DirectoryError(str(exc)) from None
            tx.audit(at=t, actor=_check_actor(actor), subject=subject_of(subscription, user_no),
                     method="ADMIN", result="CERT_ATTACHED", reason=f"cert_{cert_id}")
        return cert_id

    def unblock(self, subscription: str, user_no: str, *, actor: str,
                now: datetime | None = None) -> bool:
        """Back-office unblock (R12): clears failures, temporary and permanent blocks. Audited.
        Returns False when there was nothing to clear."""
        t = self._now(now)
        with self.store.transaction() as tx:
            user = self._user(tx, subscription, user_no)
            changed = tx.user_unblock(user.id)
            tx.audit(at=t, actor=_check_actor(actor), subject=subject_of(subscription, user_no),
                     method="ADMIN", result="UNBLOCK" if changed else "UNBLOCK_NOOP",
                     reason="permanent" if user.permanent_block else "")
        return changed

    def deactivate(self, kind: str, *, actor: str, subscription: str, user_no: str | None = None,
                   credential_id: int | None = None, now: datetime | None = None) -> bool:
        """Revokes a card, certificate, user or subscription (R19). In the same transaction: later
        verifications fail (the row is inactive and every check reads it under lock) and the
        affected open challenges are voided; a deactivated user's sessions end."""
        t = self._now(now)
        _check_actor(actor)
        with self.store.transaction() as tx:
            if kind == "subscription":
                sub = tx.subscription_get(_check_ident("subscription", subscription))
                if sub is None:
                    raise DirectoryError(f"no subscription {subscription}")
                changed = tx.subscription_deactivate(sub[0])
                voided = tx.challenges_void_subscription(subscription)
                tx.sessions_end_subscription(sub[0])
                subject = subscription
            else:
                if user_no is None:
                    raise DirectoryError("user number required")
                user = self._user(tx, subscription, user_no)
                subject = subject_of(subscription, user_no)
                if kind == "user":
                    changed = tx.user_deactivate(user.id)
                    tx.sessions_end_user(user.id)
                elif kind in ("card", "certificate"):
                    if not isinstance(credential_id, int):
                        raise DirectoryError(f"{kind} id required")
                    owned = (tx.cards_of(user.id, active_only=False) if kind == "card"
                             else tx.certs_of(user.id))
                    if credential_id not in {c.id for c in owned}:
                        raise DirectoryError(f"{kind} {credential_id} is not this user's")
                    changed = (tx.card_deactivate(credential_id) if kind == "card"
                               else tx.cert_deactivate(credential_id)) is not None
                else:
                    raise DirectoryError(f"unknown kind {kind!r}")
                voided = tx.challenges_void_user(user.id, subscription, user_no)
            tx.audit(at=t, actor=actor, subject=subject, method="ADMIN",
                     result=f"{kind.upper()}_DEACTIVATED" if changed else "DEACTIVATE_NOOP",
                     reason=f"voided_{voided}_challenges"
                     + (f"_id_{credential_id}" if credential_id is not None else ""))
        return changed

    def user_state(self, subscription: str, user_no: str) -> UserState:
        with self.store.read() as tx:
            user = tx.user_find(_check_ident("subscription", subscription),
                                _check_ident("user", user_no))
            if user is None:
                raise DirectoryError(f"no user {user_no} in subscription {subscription}")
            cards = tuple((c.id, c.label, c.last_atc, c.active)
                          for c in tx.cards_of(user.id, active_only=False))
            certs = tuple((c.id, c.serial, c.fingerprint, c.active) for c in tx.certs_of(user.id))
        return UserState(
            user.subscription, user.user_no, Role(user.role), user.active and
            user.subscription_active, user.failures, _dt(user.blocked_until), user.temp_blocks,
            user.permanent_block, _dt(user.last_sca_at), user.code_hash is not None,
            user.code_must_change, cards, certs)

    def users(self, subscription: str) -> list[UserState]:
        with self.store.read() as tx:
            numbers = [u.user_no for u in tx.users_of(_check_ident("subscription", subscription))]
        return [self.user_state(subscription, n) for n in numbers]
