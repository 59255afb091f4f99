"""Append-only, keyed, hash-chained audit trail (rules.md R20).

Each record is (chain, seq, at, actor, subject, method, result, reason) plus ``prev`` (the link of
the record before it in the same chain) and ``hash``, its own link::

    hash = HMAC-SHA256(audit key, "capkey-audit-record" 00 ‖ prev ‖ canonical JSON of the fields)

The audit key is kept outside the database (`capkey.store.keys`): someone who can write the
database can change, remove or add records and move ``audit_heads`` (the last seq and link of each
chain, updated by a conditional write in the inserting transaction), but cannot recompute the
links, so `verify_rows` sees it. What the database alone cannot show is a truncation: the last
records of a chain removed and its head moved back onto a genuine link. A `Checkpoint` (the heads,
signed with the same key, kept on write-once storage) shows it: the trail must still extend it.

Keyed segments. Each chain's keyed segment begins with a record whose method is `KEYED_START`
(written by migration 2), whose reason names the key (`AuditKey.key_id`) and the trail (a random id
per database: a chain or a checkpoint copied from another database under the same key is refused).
Records before it were written before migration 2, unkeyed (``hash = SHA-256(prev ‖ fields)``); the
start record's link covers the last of them, so they cannot be changed after the migration either.
A chain without a keyed segment fails verification: only a rewrite produces one.

Records never carry secrets: the fields are identifiers, method and outcome names and short reason
tokens. `check_field` refuses anything that looks like a code, PIN or PAN (long digit runs), so a
careless caller fails loudly instead of leaking into the trail.

There are `AUDIT_CHAINS` chains; a record's chain is chosen from its subject, so all records about
one user are in one ordered chain and concurrent transactions about different users rarely wait on
the same chain head.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .keys import AuditKey, is_test_key

#: Number of independent audit hash chains. Records go to a chain chosen from their subject, so that
#: transactions about different users do not wait on one chain head (PostgreSQL scaling) while all
#: records about one subject stay in one ordered chain. Fixed by migration 1.
AUDIT_CHAINS = 16
#: The method of the record that begins a chain's keyed segment.
KEYED_START = "AUDIT_KEYED"
CHECKPOINT_FORMAT = "capkey-audit-checkpoint/1"

_START_ACTOR = "capkey"
_START_REASON = re.compile(r"^key ([0-9a-f]{12}) trail ([0-9a-f-]{36})$")
# Domain separation: a record's link can never pass for a checkpoint's MAC, nor the reverse.
_RECORD_DOMAIN = b"capkey-audit-record\x00"
_CHECKPOINT_DOMAIN = b"capkey-audit-checkpoint\x00"
_DIGIT_RUN = re.compile(r"\d{13,}")  # a PAN has 13 to 19 digits
_MAX_FIELD = 200

#: An ``audit`` row: chain, seq, at, actor, subject, method, result, reason, prev, hash.
Row = Sequence[Any]


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


def record_mac(key: AuditKey, prev: bytes, record: AuditRecord) -> bytes:
    """The link of a keyed record."""
    return key.mac(_RECORD_DOMAIN + prev + record.encode())


def unkeyed_hash(prev: bytes, record: AuditRecord) -> bytes:
    """The link of a record written before migration 2."""
    return hashlib.sha256(prev + record.encode()).digest()


def keyed_start(at: int, key: AuditKey, trail: str) -> AuditRecord:
    """The record that begins a chain's keyed segment."""
    return AuditRecord(at, _START_ACTOR, "audit", KEYED_START, "START",
                       f"key {key.key_id} trail {trail}")


def _record(row: Row) -> AuditRecord:
    chain, seq, at, actor, subject, method, result, reason = row[:8]
    return AuditRecord(at, actor, subject, method, result, reason, chain, seq)


def keyed_under(key: AuditKey, row: Row) -> bool:
    """Whether `row`'s link is its MAC under `key`."""
    return hmac.compare_digest(record_mac(key, bytes(row[8]), _record(row)), bytes(row[9]))


@dataclass(frozen=True)
class ChainProblem:
    chain: int | None  # None: about a checkpoint as a whole
    seq: int
    what: str

    def __str__(self) -> str:
        return self.what if self.chain is None else f"chain {self.chain} seq {self.seq}: {self.what}"


@dataclass(frozen=True)
class ChainReport:
    records: int
    problems: tuple[ChainProblem, ...]
    trail: str | None = None  # the database's trail id, from its keyed segment starts
    unkeyed: int = 0  # records from before migration 2 (sealed by the keyed segment starts)
    # (seq, link) of each chain's last record, as verified
    heads: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Checkpoint:
    """The trail's chain heads at a time, MACed with the audit key: ``capkey audit export-head``
    writes one for write-once storage; `verify_rows` checks that the trail still extends it (a
    truncation removes a checkpointed link, a rewrite changes it)."""

    trail: str
    key_id: str
    time: str  # UTC, ISO 8601; informative
    records: int
    heads: tuple[tuple[int, bytes], ...]
    mac: bytes = b""

    @classmethod
    def sign(cls, key: AuditKey, report: ChainReport, time: str) -> Checkpoint:
        """A checkpoint of the heads `report` verified; refused for a trail that does not verify
        (it would vouch for the alteration)."""
        if not report.ok or report.trail is None:
            raise ValueError("no checkpoint of an audit trail that does not verify")
        unsigned = cls(report.trail, key.key_id, time, report.records, report.heads)
        return replace(unsigned, mac=key.mac(_CHECKPOINT_DOMAIN + unsigned._body()))

    def signed_by(self, key: AuditKey) -> bool:
        return hmac.compare_digest(key.mac(_CHECKPOINT_DOMAIN + self._body()), self.mac)

    def _fields(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "trail": self.trail, "key_id": self.key_id,
                "time": self.time, "records": self.records,
                "heads": [[seq, link.hex()] for seq, link in self.heads]}

    def _body(self) -> bytes:
        return json.dumps(self._fields(), sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        """One field per line (what a person comparing two checkpoints reads)."""
        fields = {**self._fields(), "mac": self.mac.hex()}
        return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}"
                                   for k, v in fields.items()) + "\n}\n"

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Parses a checkpoint file; ValueError if it is not one (its MAC is checked by
        `signed_by`, against the fields as parsed: the types are checked strictly so that no two
        texts parse to the same fields)."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"not a {CHECKPOINT_FORMAT} document")
            strings = [doc[name] for name in ("trail", "key_id", "time", "mac")]
            heads = tuple((seq, bytes.fromhex(link)) for seq, link in doc["heads"])
            if (not all(isinstance(s, str) for s in strings) or type(doc["records"]) is not int
                    or len(heads) != AUDIT_CHAINS or any(type(s) is not int for s, _ in heads)):
                raise ValueError("a field has the wrong type or length")
            trail, key_id, time, mac = strings
            return cls(trail, key_id, time, doc["records"], heads, bytes.fromhex(mac))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an audit checkpoint ({exc})") from None

    def __str__(self) -> str:
        return f"checkpoint of {self.time} ({self.records} records)"


def verify_rows(rows: Iterable[Row], heads: Mapping[int, tuple[int, bytes]], key: AuditKey,
                checkpoints: Sequence[Checkpoint] = ()) -> ChainReport:
    """Checks audit rows (ordered by chain, seq) against the chain heads, under `key`, and that
    they extend every checkpoint in `checkpoints`.

    Detects: a changed field (link mismatch), a removed or reordered record (seq gap or ``prev``
    mismatch), a removed tail (head differs from the last record), unknown chains, a chain without
    a keyed segment or keyed under another key or trail (a rewrite), and against a checkpoint, a
    truncation or a rewrite of what it covers.
    """
    pinned = {(chain, seq) for cp in checkpoints for chain, (seq, _) in enumerate(cp.heads)}
    found: dict[tuple[int, int], bytes] = {}
    problems: list[ChainProblem] = []
    expect = {c: (0, genesis(c)) for c in range(AUDIT_CHAINS)}
    # chain -> the trail its keyed segment names; None: keyed under another key, named in
    # `foreign` with the segment's first seq (its links are then not checked one by one).
    segment: dict[int, str | None] = {}
    foreign: dict[int, tuple[int, str]] = {}
    count = unkeyed = 0
    for row in rows:
        count += 1
        chain, seq, prev, digest = row[0], row[1], bytes(row[8]), bytes(row[9])
        if chain not in expect:
            problems.append(ChainProblem(chain, seq, "unknown chain"))
            continue
        last_seq, last_hash = expect[chain]
        if seq != last_seq + 1:
            problems.append(ChainProblem(chain, seq, f"sequence gap after {last_seq}"))
        if prev != last_hash:
            problems.append(ChainProblem(chain, seq, "link to previous record broken"))
        record = _record(row)
        if chain not in segment and record.actor == _START_ACTOR and record.method == KEYED_START:
            segment[chain] = _segment_trail(key, record, foreign)
        if chain not in segment:
            unkeyed += 1
            intact = unkeyed_hash(prev, record) == digest
        else:
            intact = segment[chain] is None or keyed_under(key, row)
        if not intact:
            problems.append(ChainProblem(chain, seq, "record content changed"))
        if (chain, seq) in pinned:
            found[chain, seq] = digest
        expect[chain] = (seq, digest)
    trails = Counter(t for t in segment.values() if t)
    trail = trails.most_common(1)[0][0] if trails else None
    for chain in range(AUDIT_CHAINS):
        if chain not in segment:
            problems.append(ChainProblem(chain, expect[chain][0], "no keyed segment: only unkeyed "
                                         "records (rewritten without the audit key)"))
        elif segment[chain] and segment[chain] != trail:
            problems.append(ChainProblem(chain, 0, f"keyed segment of another audit trail "
                                         f"({segment[chain]}, not {trail})"))
        head = heads.get(chain)
        if head is None:
            problems.append(ChainProblem(chain, 0, "chain head missing"))
        elif (head[0], bytes(head[1])) != expect[chain]:
            problems.append(
                ChainProblem(chain, head[0], f"head does not match last record {expect[chain][0]}")
            )
    problems[:0] = _foreign_key_problems(key, foreign, len(segment))
    for cp in checkpoints:
        problems.extend(_checkpoint_problems(cp, key, trail, found))
    return ChainReport(count, tuple(problems), trail, unkeyed,
                       tuple(expect[c] for c in range(AUDIT_CHAINS)))


def _segment_trail(key: AuditKey, start: AuditRecord, foreign: dict[int, tuple[int, str]]
                   ) -> str | None:
    """The trail a keyed segment start names; None (noted in `foreign`) if it names another
    key."""
    match = _START_REASON.match(start.reason)
    if match is None:
        return ""  # altered: its own link fails
    key_id, trail = match.groups()
    if key_id != key.key_id:
        foreign[start.chain] = (start.seq, key_id)
        return None
    return trail


def _foreign_key_problems(key: AuditKey, foreign: Mapping[int, tuple[int, str]], keyed: int
                          ) -> list[ChainProblem]:
    """One line when every keyed chain names the same other key (a configuration mistake, or a
    rewrite of everything), else one per chain."""
    configured = "the published test key" if is_test_key(key) else key.key_id
    others = {key_id for _, key_id in foreign.values()}
    if foreign and len(foreign) == keyed and len(others) == 1:
        return [ChainProblem(None, 0, f"the trail is keyed under audit key {others.pop()} and "
                                      f"the configured key is {configured}: configure the "
                                      "trail's key (or the whole trail was rewritten)")]
    return [ChainProblem(chain, seq, f"keyed under audit key {key_id}, the configured key is "
                                     f"{configured} (rewritten)")
            for chain, (seq, key_id) in sorted(foreign.items())]


def _checkpoint_problems(cp: Checkpoint, key: AuditKey, trail: str | None,
                         found: Mapping[tuple[int, int], bytes]) -> list[ChainProblem]:
    if not cp.signed_by(key):
        return [ChainProblem(None, 0, f"{cp}: not signed with this audit key (forged, altered, "
                                      "or made under another key)")]
    if cp.trail != trail:
        return [ChainProblem(None, 0, f"{cp}: of another audit trail ({cp.trail}; this "
                                      f"database's is {trail})")]
    problems = []
    for chain, (seq, link) in enumerate(cp.heads):
        now = found.get((chain, seq))
        if now is None:
            problems.append(ChainProblem(chain, seq, f"missing: the trail no longer extends the "
                                                     f"{cp} (truncated)"))
        elif now != link:
            problems.append(ChainProblem(chain, seq, f"differs from the {cp} (rewritten)"))
    return problems
