"""Audit appends: records are queued during the transaction and chained (`capkey.store.audit`)
just before the commit, so a rolled-back transaction leaves no trace in the trail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..audit import AuditRecord, chain_of, check_field, record_hash
from ..errors import StoreError
from .core import TxCore

if TYPE_CHECKING:
    from ..base import Store

AUDIT_INSERT = (
    "INSERT INTO audit (chain, seq, at, actor, subject, method, result, reason, prev, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _chain_rows(chain: int, head: tuple[int, bytes], records: list[AuditRecord]) -> list[tuple]:
    """Audit rows for `records` following `head` = (seq, hash) of `chain`."""
    seq, prev = head
    rows = []
    for record in records:
        seq += 1
        chained = AuditRecord(record.at, record.actor, record.subject, record.method,
                              record.result, record.reason, chain, seq)
        digest = record_hash(prev, chained)
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

    def _flush_audit(self) -> None:
        """Chains and writes the queued records, one chain at a time in chain order (a fixed lock
        order: no deadlock between two writers). Fast path: this store's last known head of the
        chain, advanced by a conditional write on (seq, hash) that fails if another writer moved
        it; slow path: read the head under lock."""
        if not self._audit_queue:
            return
        by_chain: dict[int, list[AuditRecord]] = {}
        for record in self._audit_queue:
            by_chain.setdefault(chain_of(record.subject), []).append(record)
        self._audit_queue = []
        heads = self._store._audit_heads
        for chain in sorted(by_chain):
            known = heads.pop(chain, None)
            if known is not None:
                rows = _chain_rows(chain, known, by_chain[chain])
                if self._store._append_if_head(self, chain, known, rows):
                    heads[chain] = (rows[-1][1], rows[-1][9])
                    continue
            seq, prev = self._one(
                f"SELECT seq, hash FROM audit_heads WHERE chain = ?{self._store._for_update_plain}",
                (chain,),
            )
            rows = _chain_rows(chain, (seq, bytes(prev)), by_chain[chain])
            if self._changed(
                "UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ? AND seq = ?",
                (rows[-1][1], rows[-1][9], chain, seq),
            ) != 1:
                raise StoreError("audit chain head moved under a locked transaction")
            for row in rows:
                self.execute(AUDIT_INSERT, row)
            heads[chain] = (rows[-1][1], rows[-1][9])

    def audit_rows(self) -> list[tuple]:
        return self.execute(
            "SELECT chain, seq, at, actor, subject, method, result, reason, prev, hash "
            "FROM audit ORDER BY chain, seq"
        ).fetchall()

    def audit_heads(self) -> dict[int, tuple[int, bytes]]:
        return {r[0]: (r[1], bytes(r[2])) for r in
                self.execute("SELECT chain, seq, hash FROM audit_heads").fetchall()}
