"""The plumbing every transaction mixin builds on: run one statement through the engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports the transaction at run time, not the other way round
    from ..base import Store


class TxCore:
    """A transaction's connection and its engine. The concern mixins (users, credentials, …) only
    call `execute`, `_one` and `_changed`, always with ``?`` placeholders."""

    def __init__(self, store: Store, conn: Any):
        self._store = store
        self._conn = conn
        self._lock_clause = store._for_update

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._store._execute(self._conn, sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def _changed(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._store._rowcount(self.execute(sql, params))
