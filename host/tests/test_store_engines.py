"""The store on both engines: migrations, guards (conditional writes), durability settings."""

from __future__ import annotations

import pytest
from test_rules_support import ENGINES, make_target

from capkey.store import SCHEMA_VERSION, ChallengeRow, StoreError, open_store
from capkey.store.audit import AUDIT_CHAINS, KEYED_START


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    target, schema = make_target(request.param, tmp_path)
    s = open_store(target, schema=schema)
    s.target, s.schema_name = target, schema
    yield s
    if schema is not None:
        s.drop_schema()
    s.close()


def test_store_migrations_are_idempotent_and_versioned(store):
    assert store.schema_version() == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION
    other = open_store(store.target, schema=store.schema_name)  # a second node
    assert other.schema_version() == SCHEMA_VERSION
    with store.transaction() as tx:
        tx.execute("INSERT INTO schema_version (version, description, applied_at) "
                   "VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        other.migrate()
    other.close()
    with store.read() as tx:
        assert len(tx.audit_heads()) == 16


def test_store_guards_decide_by_row_count(store):
    with store.transaction() as tx:
        sub = tx.subscription_create("C1", 0)
        uid = tx.user_create(sub, "U1", "user", 0)
        card = tx.card_add(uid, "c", "{}", 0)
        assert tx.card_raise_atc(card, 3) is True
        assert tx.card_raise_atc(card, 3) is False  # same value again
        assert tx.card_raise_atc(card, 2) is False  # never backwards
        assert [tx.user_count_failure(uid) for _ in range(5)] == [1, 2, 3, 4, 5]
        assert tx.user_set_block(uid, threshold=5, now=10, until=100) is True
        assert tx.user_set_block(uid, threshold=5, now=10, until=200) is False  # set once
        assert tx.user_record_success(uid, now=50, sca=True) is False  # blocked: untouched
        assert tx.user_record_success(uid, now=100, sca=True) is True  # block over
        tx.challenge_insert(ChallengeRow("abcdefghijklmnopqrstuv", b"n" * 32, "C1", "U1", uid,
                                         None, "LOGIN", b"d" * 32, 1000), 0)
        assert tx.challenge_consume("abcdefghijklmnopqrstuv", 1000) is None  # expired
    with store.transaction() as tx:
        tx.challenge_insert(ChallengeRow("bcdefghijklmnopqrstuvw", b"n" * 32, "C1", "U1", uid,
                                         None, "LOGIN", b"d" * 32, 1000), 0)
        assert tx.challenges_void_user(uid, "C1", "U1") == 2  # the expired one too
        assert tx.challenge_consume("bcdefghijklmnopqrstuvw", 10) is None  # voided
        assert tx.card_deactivate(card) == uid
        assert tx.card_raise_atc(card, 9) is False  # inactive card


def test_store_rolls_back_on_error(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.subscription_create("C9", 0)
            tx.audit(at=0, actor="ops", subject="C9", method="ADMIN", result="X")
            raise RuntimeError("boom")
    with store.read() as tx:
        assert tx.subscription_get("C9") is None
        assert [r for r in tx.audit_rows() if r[5] != KEYED_START] == []
    assert store.verify_audit().ok


def test_store_audit_refuses_secret_looking_fields(store):
    with pytest.raises(ValueError):
        with store.transaction() as tx:
            tx.audit(at=0, actor="ops", subject="C1/U1", method="CODE", result="OK",
                     reason="pan 4970101234567890")


def test_store_sqlite_durability_settings(tmp_path):
    s = open_store(str(tmp_path / "d.db"))
    for durable, level in ((True, 2), (False, 1)):  # FULL for decisions, NORMAL for challenges
        conn = s._connection(durable)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with s.transaction(durable=durable):
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
    s.close()


@pytest.mark.postgres
def test_store_postgres_repr_hides_password(tmp_path):
    target, schema = make_target("postgres", tmp_path)
    s = open_store(target, schema=schema)
    try:
        assert "capkey:capkey" not in repr(s) and target not in repr(s)
    finally:
        s.drop_schema()
        s.close()


def test_R20_two_nodes_interleaving_on_one_chain_keep_it_intact(store):
    """Each store remembers the chain head it last wrote; the other node moving it must send the
    next append down the locked slow path, never fork the chain."""
    other = open_store(store.target, schema=store.schema_name)
    try:
        for i in range(6):
            node = store if i % 3 else other
            with node.transaction() as tx:
                tx.audit(at=i, actor="ops", subject="C1/U1", method="ADMIN", result=f"R{i}")
                tx.audit(at=i, actor="ops", subject="C1/U1", method="ADMIN", result=f"S{i}")
        report = store.verify_audit()
        assert report.ok and report.records == AUDIT_CHAINS + 12  # each chain's keyed start
        with store.read() as tx:
            results = [r[6] for r in tx.audit_rows() if r[5] != KEYED_START]
        assert results == [x for i in range(6) for x in (f"R{i}", f"S{i}")]
    finally:
        other.close()


@pytest.mark.postgres
def test_store_postgres_url_options_hold_on_every_connection(tmp_path):
    """Issue 12, break 6: a search_path in the URL's options must hold on the store's second
    connection (login challenges) too: it was replaced there, and the first challenge failed
    with UndefinedTable (or went to another schema's table)."""
    import psycopg

    target, schema = make_target("postgres", tmp_path)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{target}{'&' if '?' in target else '?'}options=-csearch_path%3D{schema}"
    store = open_store(url)
    try:
        store.insert_challenge(ChallengeRow("abcdefghijklmnopqrstuv", b"n" * 32, "C1", "U1", None,
                                            None, "LOGIN", b"d" * 32, 1000), 0)
        with store.transaction() as tx:
            assert tx._one("SELECT current_schema()")[0] == schema
            assert tx.challenge_consume("abcdefghijklmnopqrstuv", 10) is not None
    finally:
        store.close()
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
