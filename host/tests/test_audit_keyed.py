"""Issue 12, break 2: the audit chain is keyed (HMAC-SHA256 under a key kept outside the database)
and its heads are checkpointed. The attacker of these tests can write the database and runs
capkey's own code, but does not hold the audit key: they change a failed login into a success,
remove a record, remove the last records and move the head back, or rewrite the whole trail, each
time recomputing every link and head the way the code they have would. `verify` must fail."""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import contextmanager
from dataclasses import replace

import pytest
from click.testing import CliRunner
from test_cli_hygiene import run
from test_rules_support import ENGINES, build_world, make_target

from capkey._cli.audit import audit
from capkey.store import (
    KEK_FILE_ENV,
    KEY_FILE_ENV,
    TEST_KEY_ENV,
    AuditKeyError,
    Checkpoint,
    SoftwareAuditKey,
    StoreError,
    load_key_file,
    open_store,
    read_kek,
)
from capkey.store import base as store_base
from capkey.store.audit import (
    AUDIT_CHAINS,
    KEYED_START,
    AuditRecord,
    genesis,
    record_mac,
    unkeyed_hash,
)
from capkey.store.migrations import MIGRATIONS
from capkey.store.tx import audit as tx_audit
from capkey.store.tx.audit import AUDIT_INSERT

WRONG = "Wrong-code-1"


def _key_env(tmp_path, monkeypatch) -> SoftwareAuditKey:
    """A fresh audit key in a key file wrapped under a KEK file, both named in the environment
    (how the CLI and `open_store` find it)."""
    kek = os.urandom(32)
    (tmp_path / "kek.hex").write_text(kek.hex() + "\n")
    key = SoftwareAuditKey.generate()
    (tmp_path / "audit-key.json").write_text(key.key_file(kek))
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "audit-key.json"))
    monkeypatch.setenv(KEK_FILE_ENV, str(tmp_path / "kek.hex"))
    return key


def _world(engine, tmp_path):
    target, schema = make_target(engine, tmp_path)
    w = build_world(target, schema)
    w.target, w.schema = target, schema
    w.code_login("U1", WRONG)  # the failed login the attacker wants gone: last of its chain
    return w


def _close(w) -> None:
    if w.store.dialect == "postgres":
        w.store.drop_schema()
    w.store.close()


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture
def keyed(engine, tmp_path, monkeypatch):
    key = _key_env(tmp_path, monkeypatch)
    w = _world(engine, tmp_path)
    assert w.store.audit_key.key_id == key.key_id  # from the environment
    yield w
    _close(w)


def _records(store) -> dict[int, list[AuditRecord]]:
    with store.read() as tx:
        rows = tx.audit_rows()
    chains: dict[int, list[AuditRecord]] = {c: [] for c in range(AUDIT_CHAINS)}
    for chain, seq, at, actor, subject, method, result, reason, _prev, _hash in rows:
        chains[chain].append(AuditRecord(at, actor, subject, method, result, reason, chain, seq))
    return chains


def _victim(chains) -> AuditRecord:
    return next(r for records in chains.values() for r in records
                if r.subject == "C1/U1" and r.result == "AUTH_FAILED")


@contextmanager
def _unguarded(store):
    """A transaction without the append-only triggers (the attacker drops them first)."""
    drop = (("DROP TRIGGER IF EXISTS audit_no_update", "DROP TRIGGER IF EXISTS audit_no_delete")
            if store.dialect == "sqlite" else ("DROP TRIGGER IF EXISTS audit_append_only ON audit",))
    with store.transaction() as tx:
        for statement in drop:
            tx.execute(statement)
        yield tx


def _rewrite(store, chains, link) -> None:
    """Writes `chains` (fields only) back as the trail: each chain that differs from the stored
    one re-linked from its genesis with `link(prev, record)`, its head moved to its last record."""
    before = _records(store)
    with _unguarded(store) as tx:
        for chain, records in chains.items():
            if records == before[chain]:
                continue
            tx.execute("DELETE FROM audit WHERE chain = ?", (chain,))
            prev = genesis(chain)
            for seq, record in enumerate(records, 1):
                record = replace(record, chain=chain, seq=seq)
                digest = link(prev, record)
                tx.execute(AUDIT_INSERT, (chain, seq, record.at, record.actor, record.subject,
                                          record.method, record.result, record.reason, prev,
                                          digest))
                prev = digest
            tx.execute("UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ?",
                       (len(records), prev, chain))


def _truncate(store, chain: int, keep: int) -> None:
    """Removes chain `chain`'s records after seq `keep` and moves its head back onto the (genuine)
    link of record `keep`."""
    with _unguarded(store) as tx:
        (link,), = tx.execute("SELECT hash FROM audit WHERE chain = ? AND seq = ?",
                              (chain, keep)).fetchall()
        tx.execute("DELETE FROM audit WHERE chain = ? AND seq > ?", (chain, keep))
        tx.execute("UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ?", (keep, link, chain))


def _problems(report) -> str:
    return "\n".join(map(str, report.problems))


# -- an untouched trail -------------------------------------------------------------------------


def test_untouched_keyed_trail_verifies_and_extends_its_checkpoints(keyed):
    report, checkpoint = keyed.store.export_audit_head()
    assert report.ok and checkpoint is not None and checkpoint.signed_by(keyed.store.audit_key)
    assert report.unkeyed == 0 and report.trail == checkpoint.trail
    keyed.code_login("U1", WRONG)  # the trail grows past the checkpoint: still extends it
    keyed.code_login("U2", WRONG)
    again = Checkpoint.from_json(checkpoint.to_json())
    report = keyed.store.verify_audit([again])
    assert report.ok, _problems(report)
    assert report.records > checkpoint.records


def test_links_are_macs_under_the_key_and_the_key_is_not_in_the_database(keyed):
    key = keyed.store.audit_key
    with keyed.store.read() as tx:
        rows = tx.audit_rows()
        dump = repr([tx.execute(f"SELECT * FROM {t}").fetchall() for t in ("settings", "audit")])
    victim = next(r for r in rows if r[6] == "AUTH_FAILED")
    record = AuditRecord(*victim[2:8], victim[0], victim[1])
    assert bytes(victim[9]) == record_mac(key, bytes(victim[8]), record)
    assert bytes(victim[9]) != unkeyed_hash(bytes(victim[8]), record)
    assert key._key.hex() not in dump and repr(key._key) not in dump
    starts = [r for r in rows if r[5] == KEYED_START]
    assert len(starts) == AUDIT_CHAINS and {r[1] for r in starts} == {1}  # a new database
    assert all(r[7].startswith(f"key {key.key_id} trail ") for r in starts)


# -- what the attacker does, with capkey's code and without the key -----------------------------


def test_edited_record_with_recomputed_links_detected(keyed):
    """The issue's attack: a failed login made a success, its chain's links and head recomputed
    (the unkeyed SHA-256 the old code checked)."""
    chains = _records(keyed.store)
    victim = _victim(chains)
    chains[victim.chain] = [replace(r, result="OK", reason="") if r == victim else r
                            for r in chains[victim.chain]]
    _rewrite(keyed.store, chains, unkeyed_hash)
    report = keyed.store.verify_audit()
    assert not report.ok
    assert any(p.chain == victim.chain and "changed" in p.what for p in report.problems)


def test_deleted_record_with_recomputed_links_detected(keyed):
    chains = _records(keyed.store)
    victim = _victim(chains)
    chains[victim.chain] = [r for r in chains[victim.chain] if r != victim]
    _rewrite(keyed.store, chains, unkeyed_hash)
    report = keyed.store.verify_audit()
    assert not report.ok and {p.chain for p in report.problems} == {victim.chain}


def _attacker_test_key(chains):
    return lambda prev, record: record_mac(SoftwareAuditKey.for_tests(), prev, record)


def _attacker_own_key(chains):
    """A key of the attacker's, and every keyed segment start rewritten to name it."""
    own = SoftwareAuditKey.generate()
    for chain, records in chains.items():
        chains[chain] = [replace(r, reason=r.reason.replace(r.reason.split()[1], own.key_id))
                         if r.method == KEYED_START else r for r in records]
    return lambda prev, record: record_mac(own, prev, record)


def _attacker_unkeyed(chains):
    """The old chain: SHA-256 links, no keyed segment (what a never-migrated database holds)."""
    for chain, records in chains.items():
        chains[chain] = [r for r in records if r.method != KEYED_START]
    return unkeyed_hash


@pytest.mark.parametrize("attacker,says", [
    (_attacker_unkeyed, "no keyed segment"),
    (_attacker_test_key, "record content changed"),
    (_attacker_own_key, "the whole trail was rewritten"),
], ids=["unkeyed", "published-test-key", "own-key"])
def test_full_rewrite_with_recomputed_links_detected(keyed, attacker, says):
    chains = _records(keyed.store)
    victim = _victim(chains)
    chains[victim.chain] = [replace(r, result="OK", reason="") if r == victim else r
                            for r in chains[victim.chain]]
    link = attacker(chains)
    for chain in chains:  # every chain rewritten, not only the victim's
        chains[chain] = [replace(r, at=r.at + 1) for r in chains[chain]]
    _rewrite(keyed.store, chains, link)
    report = keyed.store.verify_audit()
    assert not report.ok and says in _problems(report)
    assert ({p.chain for p in report.problems} == set(range(AUDIT_CHAINS))
            or [p.chain for p in report.problems] == [None])  # one line for the whole trail


def test_truncation_with_head_moved_back_detected_against_a_checkpoint(keyed):
    _, checkpoint = keyed.store.export_audit_head()
    victim = _victim(_records(keyed.store))
    assert checkpoint.heads[victim.chain][0] == victim.seq  # the last record of its chain
    _truncate(keyed.store, victim.chain, victim.seq - 1)
    # The database alone cannot show it: every remaining link is genuine.
    assert keyed.store.verify_audit().ok
    report = keyed.store.verify_audit([checkpoint])
    assert not report.ok
    assert [(p.chain, p.seq) for p in report.problems] == [(victim.chain, victim.seq)]
    assert "truncated" in report.problems[0].what


def test_truncation_then_new_records_detected_against_a_checkpoint(keyed):
    """After a truncation the service appends again (under the right key): the checkpointed
    link is gone all the same."""
    _, checkpoint = keyed.store.export_audit_head()
    victim = _victim(_records(keyed.store))
    _truncate(keyed.store, victim.chain, victim.seq - 1)
    keyed.clock.advance(seconds=1)
    keyed.code_login("U1", WRONG)
    report = keyed.store.verify_audit([checkpoint])
    assert [(p.chain, p.seq) for p in report.problems] == [(victim.chain, victim.seq)]
    assert "rewritten" in report.problems[0].what


def test_checkpoint_of_another_database_or_key_or_altered_fails(keyed, engine, tmp_path):
    (tmp_path / "other").mkdir()
    other = _world(engine, tmp_path / "other")  # same key (same environment), another trail
    try:
        _, foreign = other.store.export_audit_head()
    finally:
        _close(other)
    report = keyed.store.verify_audit([foreign])
    assert [p.chain for p in report.problems] == [None]
    assert "another audit trail" in report.problems[0].what
    _, own = keyed.store.export_audit_head()
    under_another_key = Checkpoint.sign(SoftwareAuditKey.generate(), keyed.store.verify_audit(),
                                        own.time)
    altered = replace(own, records=own.records + 5)
    for checkpoint in (under_another_key, altered):
        report = keyed.store.verify_audit([checkpoint])
        assert not report.ok and "not signed with this audit key" in _problems(report)


# -- keys ---------------------------------------------------------------------------------------


def test_a_store_under_another_key_fails_verification_and_refuses_to_write(keyed, monkeypatch):
    monkeypatch.delenv(KEY_FILE_ENV)
    monkeypatch.delenv(KEK_FILE_ENV)
    for key in (SoftwareAuditKey.generate(), None):  # None: $CAPKEY_AUDIT_TEST_KEY's test key
        store = open_store(keyed.target, schema=keyed.schema, audit_key=key)
        try:
            report = store.verify_audit()
            assert not report.ok and "keyed under audit key" in _problems(report)
            with pytest.raises(StoreError, match="not keyed under this store's audit key"):
                with store.transaction() as tx:
                    tx.audit(at=1, actor="ops", subject="C1/U1", method="ADMIN", result="X")
        finally:
            store.close()
    assert keyed.store.verify_audit().ok  # nothing was written


def test_key_file_needs_its_kek(tmp_path):
    kek, key = os.urandom(16), SoftwareAuditKey.generate()
    path = tmp_path / "audit-key.json"
    path.write_text(key.key_file(kek))
    assert load_key_file(path, kek).key_id == key.key_id
    assert key._key.hex() not in path.read_text()
    with pytest.raises(AuditKeyError, match="unwrap failed"):
        load_key_file(path, os.urandom(16))
    (tmp_path / "kek.bin").write_bytes(b"short")
    with pytest.raises(AuditKeyError, match="16, 24 or 32 bytes"):
        read_kek(tmp_path / "kek.bin")


# -- a database from before the keyed chain -----------------------------------------------------


def test_unkeyed_database_is_migrated_to_a_keyed_segment_that_seals_it(engine, tmp_path,
                                                                       monkeypatch):
    target, schema = make_target(engine, tmp_path)
    key = SoftwareAuditKey.generate()
    with pytest.MonkeyPatch.context() as old_code:  # schema 1, SHA-256 links
        old_code.setattr(store_base, "MIGRATIONS", MIGRATIONS[:1])
        old_code.setattr(store_base, "LATEST", 1)
        old_code.setattr(tx_audit, "record_mac", lambda _key, prev, r: unkeyed_hash(prev, r))
        old = open_store(target, schema=schema, audit_key=key)
        for i in range(3):
            with old.transaction() as tx:
                tx.audit(at=i, actor="ops", subject="C1/U1", method="CODE", result="AUTH_FAILED")
        old.close()
    store = open_store(target, schema=schema, audit_key=key)
    try:
        assert store.schema_version() == MIGRATIONS[-1].version
        report = store.verify_audit()
        assert report.ok and report.unkeyed == 3 and report.records == 3 + AUDIT_CHAINS
        with store.transaction() as tx:
            tx.audit(at=9, actor="ops", subject="C1/U1", method="CODE", result="AUTH_FAILED")
        chains = _records(store)
        chain = next(c for c, records in chains.items() if len(records) == 5)
        assert [r.method for r in chains[chain]] == ["CODE"] * 3 + [KEYED_START, "CODE"]
        # An old record edited after the migration and the unkeyed links re-computed; the keyed
        # ones cannot be, and the keyed start record's link covers the last unkeyed one.
        with _unguarded(store) as tx:
            prev = genesis(chain)
            for record in chains[chain][:3]:
                record = replace(record, result="OK") if record.seq == 1 else record
                digest = unkeyed_hash(prev, record)
                tx.execute("UPDATE audit SET result = ?, prev = ?, hash = ? WHERE chain = ? AND "
                           "seq = ?", (record.result, prev, digest, chain, record.seq))
                prev = digest
        report = store.verify_audit()
        assert [(p.chain, p.seq) for p in report.problems] == [(chain, 4)]
        assert "link to previous record broken" in report.problems[0].what
    finally:
        if schema is not None:
            store.drop_schema()
        store.close()


# -- the command line ---------------------------------------------------------------------------


def test_cli_new_key_export_head_and_verify_against_checkpoints(capsys, tmp_path, monkeypatch):
    kek = tmp_path / "kek.hex"
    kek.write_text(os.urandom(32).hex())
    key_file = tmp_path / "audit-key.json"
    status, out, _ = run(capsys, "audit", "new-key", "--kek-file", str(kek), "--out", str(key_file))
    assert status == 0 and "created" in out and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    monkeypatch.setenv(KEK_FILE_ENV, str(kek))
    db = str(tmp_path / "bank.db")
    assert run(capsys, "admin", "--db", db, "create-subscription", "C7")[0] == 0
    status, out, _ = run(capsys, "audit", "--db", db, "verify")
    key_id = load_key_file(key_file, read_kek(kek)).key_id
    assert status == 0 and f"intact: 17 records, keyed under audit key {key_id}" in out
    first = tmp_path / "head-1.json"
    assert run(capsys, "audit", "--db", db, "export-head", str(first))[0] == 0
    assert stat.S_IMODE(first.stat().st_mode) == 0o444
    status, _, err = run(capsys, "audit", "--db", db, "export-head", str(first))
    assert status == 2 and "never overwritten" in err
    assert run(capsys, "admin", "--db", db, "add-user", "C7", "U1")[0] == 0
    second = tmp_path / "head-2.json"
    assert run(capsys, "audit", "--db", db, "export-head", str(second))[0] == 0
    status, out, _ = run(capsys, "audit", "--db", db, "verify", "--checkpoint", str(first),
                         "--checkpoint", str(second))
    assert status == 0 and "extends 2 checkpoint(s)" in out
    conn = sqlite3.connect(db)  # the USER_CREATED record removed, its chain's head moved back
    conn.execute("DROP TRIGGER audit_no_delete")
    chain, seq = conn.execute("SELECT chain, seq FROM audit WHERE result = 'USER_CREATED'").fetchone()
    conn.execute("DELETE FROM audit WHERE chain = ? AND seq = ?", (chain, seq))
    conn.execute("UPDATE audit_heads SET seq = seq - 1, hash = (SELECT hash FROM audit WHERE "
                 "chain = ? AND seq = ?) WHERE chain = ?", (chain, seq - 1, chain))
    conn.commit()
    conn.close()
    assert run(capsys, "audit", "--db", db, "verify", "--checkpoint", str(first))[0] == 0
    status, out, err = run(capsys, "audit", "--db", db, "verify", "--checkpoint", str(first),
                           "--checkpoint", str(second))
    assert status == 1 and "intact" not in out
    assert f"ALTERED: chain {chain} seq {seq}: missing" in err and "truncated" in err
    assert err.splitlines()[-1].startswith("Error: the audit trail does not verify")
    status, _, err = run(capsys, "audit", "--db", db, "export-head", str(tmp_path / "head-3.json"))
    assert status == 0  # the truncated trail verifies on its own: what the checkpoints are for
    status, _, err = run(capsys, "audit", "--db", db, "verify", "--checkpoint", str(key_file))
    assert status == 2 and "not an audit checkpoint" in err


def test_cli_export_head_refuses_an_altered_trail_and_speaks_of_the_test_key(tmp_path,
                                                                              monkeypatch):
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(KEK_FILE_ENV, raising=False)
    db = str(tmp_path / "dev.db")
    open_store(db).close()
    result = CliRunner().invoke(audit, ["--db", db, "export-head", "-"])
    assert result.exit_code == 0 and Checkpoint.from_json(result.stdout).records == AUDIT_CHAINS
    result = CliRunner().invoke(audit, ["--db", db, "verify"])
    assert result.exit_code == 0 and "the published TEST key (not protected)" in result.output
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET reason = 'edited' WHERE chain = 0")
    conn.commit()
    conn.close()
    out = tmp_path / "head.json"
    result = CliRunner().invoke(audit, ["--db", db, "export-head", str(out)])
    assert result.exit_code == 1 and "no checkpoint written" in str(result.exception)
    assert not out.exists()


def test_a_store_never_picks_the_test_key_on_its_own(tmp_path, monkeypatch, capsys):
    """A bank deployment must name its audit key: without one (argument or environment) the
    store refuses to open, and the CLI says so in one line with the usage status."""
    for name in (KEY_FILE_ENV, KEK_FILE_ENV, TEST_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "bank.db"
    with pytest.raises(AuditKeyError, match="no audit key"):
        open_store(str(db))
    assert not db.exists()
    open_store(str(db), audit_key=SoftwareAuditKey.for_tests()).close()  # explicit: allowed
    status, _, err = run(capsys, "audit", "--db", str(db), "verify")
    assert status == 2 and "no audit key" in err and err.count("\n") == 1
