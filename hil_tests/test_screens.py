"""docs/screens/*.png and docs/ui.md's table of them are what the firmware draws now: every screen
a person can meet, rendered from a fresh simulator by capkey_dev.screens (`make screens` rewrites
them)."""

from __future__ import annotations

import dataclasses

import pytest
from capkey_dev import screens

pytestmark = pytest.mark.sim_only  # a fresh simulator of its own


@pytest.fixture(scope="module")
def pictures() -> dict[str, screens.Picture]:
    return screens.render()


def test_docs_screens_are_current(pictures):
    # the committed pictures came from another run: the rendering is deterministic
    assert screens.stale(pictures) == [], "run `make screens`"


def test_a_changed_screen_is_caught(pictures):
    name = screens.SHOTS[0].name
    changed = dict(pictures)
    changed[name] = dataclasses.replace(pictures[name], png=pictures[name].png + b"\0")
    assert screens.stale(changed) == [str(screens.FOLDER / f"{name}.png")]
    changed[name] = dataclasses.replace(pictures[name], lines=("Autre chose",))
    (what,) = screens.stale(changed)
    assert what.startswith(str(screens.UI_DOC))
