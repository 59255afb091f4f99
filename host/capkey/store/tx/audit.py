"""Audit appends: records are queued during the transaction and chained (`capkey.store.audit`)
just before the commit, so a rolled-back transaction leaves no trace in the trail. Links are MACs
under the store's audit key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..audit import (
    AUDIT_CHAINS,
    AuditRecord,
    chain_of,
    check_field,
    keyed_start,
    keyed_under,
    record_mac,
)
from ..errors import StoreError
from ..keys import KEK_FILE_ENV, KEY_FILE_ENV, AuditKey
from .core import TxCore

if TYPE_CHECKING:
    from ..base import Store

AUDIT_INSERT = (
    "INSERT INTO audit (chain, seq, at, actor, subject, method, result, reason, prev, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _chain_rows(chain: int, head: tuple[int, bytes], records: list[AuditRecord], key: AuditKey
                ) -> list[tuple]:
    """Audit rows for `records` following `head` = (seq, hash) of `chain`, linked under `key`."""
    seq, prev = head
    rows = []
    for record in records:
        seq += 1
        chained = AuditRecord(record.at, record.actor, record.subject, record.method,
                              record.result, record.reason, chain, seq)
        digest = record_mac(key, prev, chained)
        rows.append((chain, seq, chained.at, chained.actor, chained.subject, chained.method,
                     chained.result, chained.reason, prev, digest))
        prev = digest
    return rows


class AuditTx(TxCore):
    def __init__(self, store: Store, conn: Any):
        super().__init__(store, conn)
        self._audit_queue: list[AuditRecord] = []

    def audit(self, *, at: int, actor: str, subject: str, method: str, result: str,
              reason: str = "") -> None:
        """Queues an audit record; it is chained and written just before the commit."""
        for name, value in (("actor", actor), ("subject", subject), ("method", method),
                            ("result", result), ("reason", reason)):
            check_field(name, value)
        self._audit_queue.append(AuditRecord(at, actor, subject, method, result, reason))

    def start_keyed_segment(self, at: int, trail: str) -> None:
        """Begins every chain's keyed segment (migration 2): a record that names the key and
        `trail`, linked to whatever unkeyed records came before it."""
        key = self._store.audit_key
        for chain in range(AUDIT_CHAINS):
            self._append_locked(chain, [keyed_start(at, key, trail)])

    def _flush_audit(self) -> None:
        """Chains and writes the queued records, one chain at a time in chain order (a fixed lock
        order: no deadlock between two writers). Fast path: this store's last known head of the
        chain, advanced by a conditional write on (seq, hash) that fails if another writer moved
        it; slow path: read the head under lock."""
        if not self._audit_queue:
            return
        if not self._store._audit_key_checked:
            self._check_audit_key()
        by_chain: dict[int, list[AuditRecord]] = {}
        for record in self._audit_queue:
            by_chain.setdefault(chain_of(record.subject), []).append(record)
        self._audit_queue = []
        heads = self._store._audit_heads
        key = self._store.audit_key
        for chain in sorted(by_chain):
            known = heads.pop(chain, None)
            if known is not None:
                rows = _chain_rows(chain, known, by_chain[chain], key)
                if self._store._append_if_head(self, chain, known, rows):
                    heads[chain] = (rows[-1][1], rows[-1][9])
                    continue
            self._append_locked(chain, by_chain[chain])

    def _append_locked(self, chain: int, records: list[AuditRecord]) -> None:
        seq, prev = self._one(
            f"SELECT seq, hash FROM audit_heads WHERE chain = ?{self._store._for_update_plain}",
            (chain,),
        )
        rows = _chain_rows(chain, (seq, bytes(prev)), records, self._store.audit_key)
        if self._changed(
            "UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ? AND seq = ?",
            (rows[-1][1], rows[-1][9], chain, seq),
        ) != 1:
            raise StoreError("audit chain head moved under a locked transaction")
        for row in rows:
            self.execute(AUDIT_INSERT, row)
        self._store._audit_heads[chain] = (rows[-1][1], rows[-1][9])

    def _check_audit_key(self) -> None:
        """Once per store, before its first append: every chain's last record must be keyed
        under this store's key. A node configured with another key (or none: the test key) would
        otherwise extend the trail with records no verifier accepts."""
        key = self._store.audit_key
        lasts = self.execute(
            "SELECT a.chain, a.seq, a.at, a.actor, a.subject, a.method, a.result, a.reason, "
            "a.prev, a.hash FROM audit a JOIN audit_heads h ON a.chain = h.chain AND a.seq = h.seq"
        ).fetchall()
        if not all(keyed_under(key, row) for row in lasts):
            raise StoreError(
                f"the audit trail is not keyed under this store's audit key ({key.key_id}): it "
                f"was written under another key, or altered. Configure its key ({KEY_FILE_ENV}, "
                f"{KEK_FILE_ENV}) and run `capkey audit verify`")
        self._store._audit_key_checked = True

    def audit_rows(self) -> list[tuple]:
        return self.execute(
            "SELECT chain, seq, at, actor, subject, method, result, reason, prev, hash "
            "FROM audit ORDER BY chain, seq"
        ).fetchall()

    def audit_heads(self) -> dict[int, tuple[int, bytes]]:
        return {r[0]: (r[1], bytes(r[2])) for r in
                self.execute("SELECT chain, seq, hash FROM audit_heads").fetchall()}
