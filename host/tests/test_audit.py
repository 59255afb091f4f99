"""R20: append-only, hash-chained audit; `capkey audit verify`; the admin CLI's audited actions."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner
from test_rules_support import activate_code, engine_world_fixture, world_fixture  # noqa: F401

from capkey._cli.admin import admin
from capkey._cli.audit import audit
from capkey.rules import AuthService, Outcome, RulesConfig
from capkey.store import open_store
from capkey.store.audit import AuditRecord, unkeyed_hash


def _cli(group, *args, env=None):
    result = CliRunner().invoke(group, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_R20_every_outcome_block_reset_and_step_up_is_recorded(world):
    world.code_login("P1")  # SCA_REQUIRED (first access)
    activate_code(world, "U1")
    s = world.code_login("U1").session
    ch = world.service.begin_step_up(s, "ORDER_CHEQUEBOOK", operation_id="cb-1")
    code = world.cards["U1"].respond(ch.cap_challenge)
    world.service.complete_step_up(s, ch.id, operation_id="cb-1", cap_code=code)
    world.service.authorize(s, "ORDER_CHEQUEBOOK", operation_id="cb-1")
    for _ in range(5):
        world.code_login("U2", "Wrong-code-1")
    admin_s = world.cap_login("A1").session
    world.service.reset_code(admin_s, "C1", "U2")
    rows = world.audit()
    seen = {(r[5], r[6]) for r in rows}
    for expected in [("CODE", "OK"), ("CAP", "OK"), ("CHANGE_CODE", "OK"),
                     ("STEP_UP_BEGIN", "OK"), ("STEP_UP_CAP", "OK"), ("AUTHORIZE", "OK"),
                     ("CODE", "AUTH_FAILED"), ("CODE", "BLOCK"), ("RESET_CODE", "OK"),
                     ("RESET_CODE", "UNBLOCK"), ("CODE", "SCA_REQUIRED"),
                     ("CONFIG", "CONFIG_CHANGED"), ("ADMIN", "USER_CREATED")]:
        assert expected in seen, expected
    for r in rows:
        assert all(isinstance(v, str) for v in r[3:8])  # actor, subject, method, result, reason
    assert world.store.verify_audit().ok


def test_R20_configuration_change_is_recorded_once(tmp_path):
    store = open_store(str(tmp_path / "db"))
    kwargs = dict(cap_verifier=None, signature_verifier=None)
    AuthService(store, config=RulesConfig(), **kwargs)
    AuthService(store, config=RulesConfig(), **kwargs)  # same settings: nothing new
    AuthService(store, config=RulesConfig(max_failures=3), **kwargs)
    with store.read() as tx:
        changes = [r[7] for r in tx.audit_rows() if r[6] == "CONFIG_CHANGED"]
    assert changes == ["initial", "changed"]


def test_R20_append_only_at_the_engine(engine_world):
    w = engine_world
    w.code_login("U1", "Wrong-code-1")
    for statement in ("UPDATE audit SET result = 'OK'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            with w.store.transaction() as tx:
                tx.execute(statement)
    assert w.store.verify_audit().ok


def _tamper(w, *statements):
    """What an attacker with database access does: drop the guard, then edit history."""
    drop = ("DROP TRIGGER IF EXISTS audit_no_update", "DROP TRIGGER IF EXISTS audit_no_delete") \
        if w.store.dialect == "sqlite" else ("DROP TRIGGER IF EXISTS audit_append_only ON audit",)
    with w.store.transaction() as tx:
        for s in drop + statements:
            tx.execute(s)


def _victim(rows):
    return next(r for r in rows if r[6] == "AUTH_FAILED")


def test_R20_changed_record_detected(engine_world):
    w = engine_world
    w.code_login("U1", "Wrong-code-1")
    w.code_login("U1", "Wrong-code-1")
    chain, seq = _victim(w.audit())[:2]
    _tamper(w, f"UPDATE audit SET result = 'OK' WHERE chain = {chain} AND seq = {seq}")
    report = w.store.verify_audit()
    assert not report.ok
    assert any(p.chain == chain and p.seq == seq and "changed" in p.what for p in report.problems)


def test_R20_removed_record_detected(engine_world):
    w = engine_world
    for _ in range(3):
        w.code_login("U1", "Wrong-code-1")
    chain, seq = _victim(w.audit())[:2]
    _tamper(w, f"DELETE FROM audit WHERE chain = {chain} AND seq = {seq}")
    report = w.store.verify_audit()
    assert any(p.chain == chain and "gap" in p.what for p in report.problems)


def test_R20_removed_last_record_detected_by_chain_head(engine_world):
    w = engine_world
    w.code_login("U1", "Wrong-code-1")
    last = max((r for r in w.audit() if r[4] == "C1/U1"), key=lambda r: r[1])
    assert last[6] == "AUTH_FAILED"
    _tamper(w, f"DELETE FROM audit WHERE chain = {last[0]} AND seq = {last[1]}")
    problems = w.store.verify_audit().problems
    assert [p.chain for p in problems] == [last[0]] and "head" in problems[0].what


def test_R20_forged_record_without_chain_detected(world):
    rows = world.audit()
    chain, seq, *_ = rows[-1]
    forged = AuditRecord(1, "ops", "C1/U1", "ADMIN", "UNBLOCK", "", chain, seq + 1)
    digest = unkeyed_hash(b"\0" * 32, forged)
    _tamper(world, f"INSERT INTO audit VALUES ({chain}, {seq + 1}, 1, 'ops', 'C1/U1', 'ADMIN', "
                   f"'UNBLOCK', '', X'{'00' * 32}', X'{digest.hex()}')")
    assert not world.store.verify_audit().ok


def test_R20_audit_verify_command(tmp_path):
    db = str(tmp_path / "cli.db")
    assert _cli(admin, "--db", db, "--actor", "ops-test", "create-subscription", "C7")[0] == 0
    code, out = _cli(admin, "--db", db, "add-user", "C7", "U1", "--role", "admin")
    assert code == 0, out
    code, out = _cli(audit, "--db", db, "verify")
    assert code == 0 and "intact" in out
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET actor = 'someone-else' WHERE result = 'USER_CREATED'")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(audit, ["--db", db, "verify"])
    assert result.exit_code != 0
    assert "ALTERED" in result.output


def test_R20_admin_cli_actions_are_audited(tmp_path):
    db = str(tmp_path / "cli.db")
    env = {"CAPKEY_DB": db}
    profile = tmp_path / "card.json"
    profile.write_text(json.dumps({"pan": "4970101234567890", "psn": "01", "key_ref": "hsm:7"}))
    steps = [
        ("create-subscription", "C7"), ("add-user", "C7", "U1", "--role", "principal"),
        ("attach-card", "C7", "U1", str(profile)), ("set-code", "C7", "U1"),
        ("unblock", "C7", "U1"), ("show", "C7", "U1"), ("show", "C7"),
        ("revoke", "card", "C7", "U1", "--id", "1"), ("revoke", "user", "C7", "U1"),
    ]
    outputs = []
    for step in steps:
        code, out = _cli(admin, "--actor", "ops-jdoe", *step, env=env)
        assert code == 0, (step, out)
        outputs.append(out)
    one_time = outputs[3].splitlines()[0].rsplit(" ", 1)[-1]
    assert len(one_time) >= 8
    assert "497010******7890" in outputs[5] and "4970101234567890" not in "".join(outputs)
    assert "consecutive failures 0" in outputs[5]
    code, out = _cli(audit, "list", "--subject", "C7/U1", env=env)
    assert code == 0
    for result in ("USER_CREATED", "CARD_ATTACHED", "CODE_SET", "UNBLOCK_NOOP",
                   "CARD_DEACTIVATED", "USER_DEACTIVATED"):
        assert result in out
    assert "ops-jdoe" in out and one_time not in out
    result = CliRunner().invoke(admin, ["add-user", "C7", "U1"], env=env)
    assert result.exit_code != 0  # exists: a CliFail, not a traceback
    assert isinstance(result.exception, SystemExit) or "exists" in str(result.exception)


def test_R20_outcome_record_for_failed_login(world):
    before = set(world.audit())
    assert world.code_login("U1", "Wrong-code-1").outcome is Outcome.AUTH_FAILED
    new = set(world.audit()) - before
    assert [r[3:8] for r in new] == [("C1/U1", "C1/U1", "CODE", "AUTH_FAILED", "bad_code")]
