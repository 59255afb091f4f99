"""Host tests open their stores under the published audit test key unless a test says otherwise
(`open_store` refuses to choose it on its own: test_audit_keyed.py checks that). `portal`: the
portal tests' bank and browser (test_portal_support.build)."""

from __future__ import annotations

import pytest

from capkey.store import TEST_KEY_ENV


@pytest.fixture(autouse=True)
def _audit_test_key(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, "1")


@pytest.fixture
def portal(tmp_path):
    from test_portal_support import build

    world, client = build(tmp_path)
    yield world, client
    client.close()
    world.service.store.close()
