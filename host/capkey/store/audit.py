"""Append-only, hash-chained audit trail (rules.md R20).

Each record is (chain, seq, at, actor, subject, method, result, reason) plus ``prev`` (the hash of the
record before it in the same chain) and ``hash`` = SHA-256 over ``prev`` and a canonical encoding of
the fields. ``audit_heads`` keeps, per chain, the last sequence number and hash; it is updated in the
same transaction as the insert with a conditional write, so a removed tail record is detected too.

Records never carry secrets: the fields are identifiers, method and outcome names and short reason
tokens. `check_field` refuses anything that looks like a code, PIN or PAN (long digit runs), so a
careless caller fails loudly instead of leaking into the trail.

There are `AUDIT_CHAINS` chains; a record's chain is chosen from its subject, so all records about
one user are in one ordered chain and concurrent transactions about different users rarely wait on
the same chain head.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Number of independent audit hash chains. Records go to a chain chosen from their subject, so that
#: transactions about different users do not wait on one chain head (PostgreSQL scaling) while all
#: records about one subject stay in one ordered chain. Fixed by migration 1.
AUDIT_CHAINS = 16

_DIGIT_RUN = re.compile(r"\d{13,}")  # a PAN has 13 to 19 digits
_MAX_FIELD = 200


def genesis(chain: int) -> bytes:
    """The ``prev`` of the first record of `chain`."""
    return hashlib.sha256(b"capkey-audit-genesis\x00" + chain.to_bytes(4, "big")).digest()


def chain_of(subject: str) -> int:
    return int.from_bytes(hashlib.sha256(subject.encode()).digest()[:4], "big") % AUDIT_CHAINS


def check_field(name: str, value: str) -> str:
    """Refuse values that could carry a secret or break the trail's readability."""
    if not isinstance(value, str):
        raise TypeError(f"audit field {name} must be str")
    if len(value) > _MAX_FIELD or _DIGIT_RUN.search(value) or "\n" in value:
        raise ValueError(f"audit field {name} refused (too long, multi-line or a long digit run)")
    return value


@dataclass(frozen=True)
class AuditRecord:
    at: int  # microseconds since the epoch, UTC
    actor: str
    subject: str
    method: str
    result: str
    reason: str = ""
    chain: int = field(default=-1)
    seq: int = field(default=0)

    def encode(self) -> bytes:
        return json.dumps(
            [self.chain, self.seq, self.at, self.actor, self.subject, self.method, self.result,
             self.reason],
            ensure_ascii=True,
            separators=(",", ":"),
        ).encode()


def record_hash(prev: bytes, record: AuditRecord) -> bytes:
    return hashlib.sha256(prev + record.encode()).digest()


@dataclass(frozen=True)
class ChainProblem:
    chain: int
    seq: int
    what: str

    def __str__(self) -> str:
        return f"chain {self.chain} seq {self.seq}: {self.what}"


@dataclass(frozen=True)
class ChainReport:
    records: int
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_rows(
    rows: Iterable[tuple[int, int, int, str, str, str, str, str, bytes, bytes]],
    heads: dict[int, tuple[int, bytes]],
) -> ChainReport:
    """Check audit rows (ordered by chain, seq) against the chain heads.

    Detects: a changed field (hash mismatch), a removed or reordered record (seq gap or ``prev``
    mismatch), a removed tail (head seq/hash differ from the last record), unknown chains.
    """
    problems: list[ChainProblem] = []
    expect: dict[int, tuple[int, bytes]] = {c: (0, genesis(c)) for c in range(AUDIT_CHAINS)}
    count = 0
    for chain, seq, at, actor, subject, method, result, reason, prev, digest in rows:
        count += 1
        if chain not in expect:
            problems.append(ChainProblem(chain, seq, "unknown chain"))
            continue
        last_seq, last_hash = expect[chain]
        if seq != last_seq + 1:
            problems.append(ChainProblem(chain, seq, f"sequence gap after {last_seq}"))
        if bytes(prev) != last_hash:
            problems.append(ChainProblem(chain, seq, "link to previous record broken"))
        record = AuditRecord(at, actor, subject, method, result, reason, chain, seq)
        if record_hash(bytes(prev), record) != bytes(digest):
            problems.append(ChainProblem(chain, seq, "record content changed"))
        expect[chain] = (seq, bytes(digest))
    for chain in range(AUDIT_CHAINS):
        head = heads.get(chain)
        if head is None:
            problems.append(ChainProblem(chain, 0, "chain head missing"))
            continue
        if (head[0], bytes(head[1])) != expect[chain]:
            problems.append(
                ChainProblem(chain, head[0], f"head does not match last record {expect[chain][0]}")
            )
    return ChainReport(count, tuple(problems))
