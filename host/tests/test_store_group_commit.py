"""Group commit (issue 11): concurrent threads' decisions share one commit, each thread answered
only once its batch is durable; a failure rolls back only its own part; a failed commit fails the
whole batch; the race guarantees of R9/R10 hold through it. On both engines."""

from __future__ import annotations

import threading
import time

import pytest
from test_rules_support import ENGINES, build_world, make_target

from capkey.rules import LoginRequest, Outcome
from capkey.store import StoreError, open_store

THREADS = 16


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    target, schema = make_target(request.param, tmp_path)
    s = open_store(target, schema=schema, group_commit=True)  # PostgreSQL's default is off
    yield s
    if schema is not None:
        s.drop_schema()
    s.close()


class _Commits:
    """Counts the engine's commits and can hold the next one back or make it fail."""

    def __init__(self, store, monkeypatch):
        self.count = 0
        self.times: list[float] = []
        self.delay = 0.0
        self.fail = False
        original = store._commit

        def commit(conn):
            self.count += 1
            if self.delay:
                time.sleep(self.delay)
            if self.fail:
                self.fail = False
                raise OSError("disk full")
            original(conn)
            self.times.append(time.monotonic())

        monkeypatch.setattr(store, "_commit", commit)


def _queued(store, n: int) -> None:
    deadline = time.monotonic() + 10
    while store._queued < n:
        assert time.monotonic() < deadline, "threads never queued"
        time.sleep(0.001)


def _two_in_one_batch(store, first_body, second_body):
    """Runs two transactions that share one batch: the first holds its turn until the second
    is queued behind it. Returns what each raised (None when it returned)."""
    release = threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def run(name, body, wait):
        try:
            with store.transaction() as tx:
                if wait:
                    release.wait(10)
                body(tx)
            outcome[name] = None
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome[name] = exc

    first = threading.Thread(target=run, args=("first", first_body, True))
    first.start()
    while store._holder is None:
        time.sleep(0.001)
    second = threading.Thread(target=run, args=("second", second_body, False))
    second.start()
    _queued(store, 1)
    release.set()
    first.join(10)
    second.join(10)
    return outcome["first"], outcome["second"]


def test_concurrent_transactions_share_commits_and_return_after_theirs(store, monkeypatch):
    commits = _Commits(store, monkeypatch)
    commits.delay = 0.01  # a slow flush, so that callers pile up behind it
    returned: list[float] = []
    start = threading.Barrier(THREADS)

    def decide(i):
        start.wait(10)
        for k in range(5):
            with store.transaction() as tx:
                assert tx.setting_replace(f"t{i}-{k}", None, "x")
            returned.append(time.monotonic())

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(returned) == THREADS * 5
    assert commits.count < THREADS * 5 // 2  # batched: far fewer flushes than decisions
    # nobody was answered before a commit that covers it had finished
    assert min(returned) >= min(commits.times)
    with store.read() as tx:
        assert all(tx.setting_get(f"t{i}-{k}") == "x" for i in range(THREADS) for k in range(5))


def test_a_failing_member_rolls_back_only_its_part(store, monkeypatch):
    commits = _Commits(store, monkeypatch)

    def fails(tx):
        tx.setting_replace("second", None, "x")
        raise ValueError("refused")

    first, second = _two_in_one_batch(store, lambda tx: tx.setting_replace("first", None, "x"),
                                      fails)
    assert first is None and isinstance(second, ValueError)
    assert commits.count == 1  # one batch
    with store.read() as tx:
        assert tx.setting_get("first") == "x"
        assert tx.setting_get("second") is None


def test_a_failed_commit_fails_every_member_and_keeps_none(store, monkeypatch):
    commits = _Commits(store, monkeypatch)
    commits.fail = True
    first, second = _two_in_one_batch(store, lambda tx: tx.setting_replace("first", None, "x"),
                                      lambda tx: tx.setting_replace("second", None, "x"))
    assert isinstance(first, StoreError) and isinstance(second, StoreError)
    assert "none of its decisions happened" in str(first)
    with store.read() as tx:
        assert tx.setting_get("first") is None and tx.setting_get("second") is None
    with store.transaction() as tx:  # the store goes on
        assert tx.setting_replace("third", None, "x")


def test_a_nested_transaction_is_refused_not_deadlocked(store):
    with store.transaction():
        with pytest.raises(StoreError, match="already open in this thread"):
            with store.transaction():
                pass
    with store.read() as tx:
        assert tx.setting_get("anything") is None


def test_without_group_commit_every_transaction_commits(store, monkeypatch):
    store.group_commit = False
    commits = _Commits(store, monkeypatch)
    threads = [threading.Thread(target=lambda i=i: _write(store, f"s{i}")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert commits.count == 8


def _write(store, name):
    with store.transaction() as tx:
        tx.setting_replace(name, None, "x")


@pytest.mark.parametrize("engine", ENGINES)
def test_R9_same_code_from_many_threads_exactly_one_ok(engine, tmp_path):
    """The race of test_store_race.py, between threads of one process: they share batches."""
    target, schema = make_target(engine, tmp_path)
    w = build_world(target, schema)
    w.store.group_commit = True
    try:
        ch = w.service.issue_login_challenge("C1", "U1")
        code = w.cards["U1"].respond(ch.cap_challenge)
        request = LoginRequest("C1", "U1", cap_code=code, challenge_id=ch.id)
        start = threading.Barrier(THREADS)
        outcomes: list[Outcome] = []

        def login():
            start.wait(10)
            outcomes.append(w.service.login(request).outcome)

        threads = [threading.Thread(target=login) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert outcomes.count(Outcome.OK) == 1
        assert outcomes.count(Outcome.AUTH_FAILED) == THREADS - 1
        assert w.store.verify_audit().ok
    finally:
        if schema is not None:
            w.store.drop_schema()
        w.store.close()
