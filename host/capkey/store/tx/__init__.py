"""The transaction API, one mixin per concern; `Tx` is all of them over one connection.

Every state change a decision depends on is one conditional ``UPDATE … WHERE <guard>`` whose row
count (or ``RETURNING`` row) decides; reads that a decision is based on happen under the user's row
lock (``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` on PostgreSQL), so the guards are a
second, independent line of defence.

    users.py        subscriptions, users, failure counts and blocks, codes
    credentials.py  CAP cards (ATC floor) and client certificates
    challenges.py   single-use login and step-up challenges
    sessions.py     sessions and step-up grants
    settings.py     compare-and-set settings
    service.py      the HTTP service's API keys and idempotent answers
    audit.py        queued audit records, chained at commit
    core.py         the plumbing they share: `execute`, `_one`, `_changed`
"""

from __future__ import annotations

from .audit import AuditTx
from .challenges import ChallengesTx
from .credentials import CredentialsTx
from .service import ServiceTx
from .sessions import SessionsTx
from .settings import SettingsTx
from .users import UsersTx

__all__ = ["Tx"]


class Tx(UsersTx, CredentialsTx, ChallengesTx, SessionsTx, SettingsTx, ServiceTx, AuditTx):
    """One open transaction. Obtained from `Store.transaction()`; do not keep it after the block."""
