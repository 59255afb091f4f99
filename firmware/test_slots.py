# The A/B app slots (slots.py) on a real folder: the switch, the trial, the fallback, a power cut
# at every durable step, and start() with apps that confirm, raise at import, or never confirm.
import os
import sys

import slots
from store.test_support import Crash, rmtree


def _flash():
    root = "/tmp/capkey-slots-" + os.urandom(6).hex()
    os.mkdir(root)
    return root


def _app(root, slot, body):
    # an app slot holding only main.py; `body` is its main()'s code
    folder = slots.folder(slot, root)
    os.mkdir(folder)
    with open(folder + "/main.py", "w") as f:
        f.write(body)


_GOOD = """
VERSION = "%s"

async def main(board, ctx=None, ready=None):
    board.ran.append(VERSION)
    if ready is not None:
        ready()
    return "ran"
"""


def _forget_app():
    # each start() imports the app of a slot as "main": drop the last one and its folder
    sys.modules.pop("main", None)
    for p in list(sys.path):
        if "/app_" in p:
            sys.path.remove(p)


class _Board:
    def __init__(self):
        self.ran = []


class _Restarted(BaseException):
    # like the simulator's restart (SystemExit): it goes through asyncio, not to a task handler
    pass


def _restart():
    raise _Restarted()


def _start(root, board, bound_ms=slots.BOUND_MS):
    _forget_app()
    try:
        return slots.start(lambda: board, _restart, root, bound_ms)
    finally:
        _forget_app()


def test_first_install_then_update_confirmed():
    root = _flash()
    try:
        if slots.read(root) is not None or slots.target(root) != "a":
            raise AssertionError("a fresh flash has no slot; the first install goes into a")
        _app(root, "a", _GOOD % "v1")
        slots.switch("a", root)
        if slots.status(root) != "a":
            raise AssertionError("the first install runs confirmed: nothing to fall back to")
        board = _Board()
        if _start(root, board) != "ran" or board.ran != ["v1"]:
            raise AssertionError(board.ran)
        if slots.target(root) != "b":
            raise AssertionError("the update goes beside the running app")
        _app(root, "b", _GOOD % "v2")
        slots.switch("b", root)
        if slots.status(root) != "b trial":
            raise AssertionError(slots.status(root))
        _start(root, board)
        if board.ran != ["v1", "v2"] or slots.status(root) != "b":
            raise AssertionError("v2 confirmed itself: %r %s" % (board.ran, slots.status(root)))
        try:
            slots.switch("b", root)
        except ValueError:
            pass
        else:
            raise AssertionError("switching to the slot that runs is refused")
    finally:
        rmtree(root)


def test_a_trial_seen_again_without_confirmation_falls_back():
    root = _flash()
    try:
        slots.switch("a", root)
        slots.switch("b", root)
        if slots.choose(root) != ("b", True):
            raise AssertionError("the first boot after the switch tries b")
        # that boot died before confirming (power cut, crash): the next one goes back to a
        if slots.choose(root) != ("a", False) or slots.status(root) != "a failed=b":
            raise AssertionError(slots.status(root))
        if slots.target(root) != "b":
            raise AssertionError("the next update writes over the app given up")
    finally:
        rmtree(root)


def test_an_update_during_a_trial_replaces_the_trial_never_the_fallback():
    root = _flash()
    try:
        slots.switch("a", root)
        slots.switch("b", root)
        slots.choose(root)  # the trial boot was a maintenance boot: deploy again from there
        if slots.target(root) != "b":
            raise AssertionError("the new copy goes over the unconfirmed b, not over a")
        try:
            slots.switch("a", root)
        except ValueError:
            pass
        else:
            raise AssertionError("switching onto the fallback is refused")
        slots.switch("b", root)
        if slots.choose(root) != ("b", True):
            raise AssertionError("the new b is tried from the start")
        if slots.choose(root) != ("a", False):
            raise AssertionError("and still falls back to a")
    finally:
        rmtree(root)


def test_an_app_raising_at_import_falls_back_and_restarts():
    root = _flash()
    try:
        _app(root, "a", _GOOD % "v2")
        slots.switch("a", root)
        _app(root, "b", "raise RuntimeError('v3 is broken')\n")
        slots.switch("b", root)
        board = _Board()
        try:
            _start(root, board)
        except _Restarted:
            pass
        else:
            raise AssertionError("the board restarts after the fallback")
        if slots.status(root) != "a failed=b":
            raise AssertionError(slots.status(root))
        _start(root, board)
        if board.ran != ["v2"]:
            raise AssertionError("back on v2: %r" % board.ran)
    finally:
        rmtree(root)


def test_a_confirmed_app_that_raises_is_not_switched_away_from():
    root = _flash()
    try:
        _app(root, "a", "raise RuntimeError('flash damage')\n")
        slots.switch("a", root)
        try:
            _start(root, _Board())
        except RuntimeError:
            pass
        else:
            raise AssertionError("the error is left for the REPL")
        if slots.status(root) != "a":
            raise AssertionError(slots.status(root))
    finally:
        rmtree(root)


def test_an_app_that_never_confirms_is_given_up_after_the_bound():
    root = _flash()
    try:
        slots.switch("a", root)
        _app(root, "b", """
import asyncio

async def main(board, ctx=None, ready=None):
    await asyncio.sleep_ms(5000)  # up, but never ready (an app missing, an error)
""")
        slots.switch("b", root)
        try:
            _start(root, _Board(), bound_ms=50)
        except _Restarted:
            pass
        else:
            raise AssertionError("restarted by the bound")
        if slots.status(root) != "a failed=b":
            raise AssertionError(slots.status(root))
    finally:
        rmtree(root)


def _cut_at(n):
    count = [0]

    def hook(tag):
        count[0] += 1
        if count[0] == n:
            raise Crash(tag)

    return hook


def test_a_power_cut_at_every_step_leaves_a_bootable_state():
    # update from v1 (a) to v2 (b): switch, first boot (counted), confirmation. Cut at the nth
    # durable step, then boot again: always the old app or the new, never no state.
    steps = 0
    n = 1
    while True:
        root = _flash()
        try:
            slots.switch("a", root)
            slots.set_hook(_cut_at(n))
            cut = None
            try:
                slots.switch("b", root)
                slots.choose(root)
                slots.confirm(root)
            except Crash as c:
                cut = c.args[0]
            slots.set_hook(None)
            if cut is None:
                steps = n - 1
                break
            booted = slots.choose(root)
            if booted is None or booted[0] not in ("a", "b"):
                raise AssertionError("after a cut at %s: %r" % (cut, booted))
            if booted[0] == "b" and not booted[1] and slots.status(root) != "b":
                raise AssertionError("b runs only confirmed or on trial")
        finally:
            slots.set_hook(None)
            rmtree(root)
        n += 1
    if steps != 9:  # three writes of three steps each
        raise AssertionError("durable steps: %d" % steps)
