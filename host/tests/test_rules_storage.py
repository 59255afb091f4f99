"""R18: codes stored only as salted Argon2id hashes; card profiles hold no clear keys; no code, PIN,
full PAN or key in any audit record or log line (the test greps the database and the logs)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_rules_support import (
    ENGINES,
    HSM_SECRET,
    activate_code,
    build_world,
    card_key,
    make_target,
)

from capkey.rules import DirectoryError, Outcome, Payment
from capkey.rules.codes import (
    CodeHasher,
    InvalidConfidentialCode,
    WeakCode,
    check_policy,
    generate_code,
)


def test_R18_codes_stored_only_as_salted_argon2id(tmp_path):
    w = build_world(str(tmp_path / "db"))
    with w.store.read() as tx:
        hashes = [tx.user_find("C1", u).code_hash for u in ("P1", "A1", "U1", "U2")]
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert len({h.split("$")[4] for h in hashes}) == 4  # a salt each
    hasher = CodeHasher.insecure_for_tests()
    assert hasher.hash("Same-code-12") != hasher.hash("Same-code-12")


def test_R18_code_hasher_refuses_weak_parameters_and_is_opaque():
    with pytest.raises(ValueError):
        CodeHasher(time_cost=1, memory_cost=8, parallelism=1)
    hasher = CodeHasher.insecure_for_tests()
    stored = hasher.hash("Good-code-42")
    hasher.verify(stored, "Good-code-42")
    for stored_, code in ((stored, "Good-code-43"), ("$2b$12$bcrypt", "x"), (stored, None),
                          (None, "Good-code-42"), ("$argon2id$garbage", "x")):
        with pytest.raises(InvalidConfidentialCode):
            hasher.verify(stored_, code)
    with pytest.raises(InvalidConfidentialCode):
        hasher.dummy_verify("Good-code-42")


def test_R14_code_policy():
    for weak, reason in (("a1b2c3", "too_short"), ("x" * 65, "too_long"),
                         ("aaaaaaaaa", "trivial"), ("123456789", "trivial"),
                         ("987654321", "trivial"), ("azertyui", "trivial"),
                         ("ab12ab12ab12", "trivial"), (" Good-code-42", "bad_characters"),
                         ("Good-code-42", "same_as_old")):
        with pytest.raises(WeakCode) as exc:
            check_policy(weak, old="Good-code-42")
        assert exc.value.reason == reason, weak
    check_policy("Kx7-mq2Lr", old="Good-code-42")
    codes = {generate_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        check_policy(code)


def test_R18_card_profile_with_clear_key_refused(tmp_path):
    w = build_world(str(tmp_path / "db"))
    for profile in ({"pan": "4970101234567890", "imk": "0123456789ABCDEFFEDCBA9876543210"},
                    {"pan": "4970101234567890", "keys": {"card_key": "00" * 16}},
                    {"pan": "4970101234567890", "mk": b"\x01" * 16}):
        with pytest.raises(DirectoryError):
            w.directory.attach_card("C1", "U1", profile, actor="ops")
    # references and wrapped keys are fine
    w.directory.attach_card("C1", "U1", {"pan": "4970101234567890", "key_ref": "hsm:imk-ac-1",
                                         "wrapped_key": "kek1:AbCd=="}, actor="ops")


@pytest.mark.parametrize("engine", ENGINES)
def test_R18_no_secret_in_audit_database_or_logs(engine, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    target, schema = make_target(engine, tmp_path)
    w = build_world(target, schema)
    try:
        secrets_used = set(w.codes.values())
        secrets_used.add(activate_code(w, "U1"))
        cap_codes = []
        for user in ("U1", "U2", "P1"):
            ch = w.service.issue_login_challenge("C1", user)
            code = w.cards[user].respond(ch.cap_challenge)
            cap_codes.append(code)
            from capkey.rules import LoginRequest

            assert w.service.login(LoginRequest("C1", user, cap_code=code, challenge_id=ch.id)
                                   ).outcome is Outcome.OK
        for _ in range(5):
            wrong = "Wrong-secret-99"
            w.code_login("U2", wrong)
        secrets_used.add(wrong)
        admin = w.cap_login("A1").session
        reset = w.service.reset_code(admin, "C1", "U2")
        secrets_used.add(reset.code)
        s = w.code_login("U1").session
        pay = Payment(990_00, "EUR", "FR7630006000011234567890189", "ACME SA")
        ch = w.service.begin_step_up(s, "SCT_INST_ENTRY", transaction=pay)
        sign_code = w.cards["U1"].sign(ch.cap_challenge, ch.amount_minor, ch.currency)
        assert w.service.complete_step_up(s, ch.id, transaction=pay, cap_code=sign_code) is (
            Outcome.OK)
        cap_codes.append(sign_code)
        pans = {card.pan for card in w.cards.values()}
        keys = {card_key(card.key_ref).hex() for card in w.cards.values()} | {HSM_SECRET.hex()}
        with w.store.read() as tx:
            audit_text = "\n".join(repr(r[:8]) for r in tx.audit_rows())
            everything = audit_text + "\n" + "\n".join(
                repr(row) for table in ("users", "sessions", "challenges", "grants", "settings",
                                        "certificates", "audit_heads")
                for row in tx.execute(f"SELECT * FROM {table}").fetchall())
        logs = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
        for secret in secrets_used | set(cap_codes) | keys:
            assert secret not in everything, "secret found in the database"
            assert secret not in logs, "secret found in the logs"
        for pan in pans:  # the PAN lives only in the card profile the verifier needs
            assert pan not in audit_text and pan not in logs and pan not in everything
        if engine == "sqlite":
            w.store.close()
            raw = b"".join(Path(target + suffix).read_bytes() for suffix in ("", "-wal")
                           if Path(target + suffix).exists())
            for secret in secrets_used | set(cap_codes) | keys:
                assert secret.encode() not in raw
    finally:
        if schema is not None:
            w.store.drop_schema()
        w.store.close()
