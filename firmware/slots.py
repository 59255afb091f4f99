# A/B app slots: update with rollback (docs/boards.md, "Update and rollback").
#
# The flash holds two copies of the app, /app_a and /app_b (each the whole firmware tree with its
# capkey-manifest.json), and, outside both, this module and the two-line /main.py that calls
# start(). The store (/data) belongs to neither: cards, keys and counters survive updates.
#
# State: /slots.json, {"run": "a", "prev": "b" or null, "trial": 0|1, "boots": 0|1,
# "failed": null or the slot given up}. Written whole to /slots.json.new, then renamed over it:
# littlefs and POSIX rename atomically, so after a power cut the state is the old one or the new.
#
# Update (capkey deploy, at the REPL of maintenance mode): the new tree is copied into the slot
# that does not run and checked against its manifest; switch() then makes it the slot to try.
# Boot (start): a trial is counted before the app starts (boots 1). A trial boot that comes
# round again without having confirmed (a power cut, a crash, a hang past BOUND_MS) falls back
# to the previous slot, and so does an exception while the app imports or starts. The app
# confirms through the ready() it is given, once it runs with every app installed (main.py).
# Only a trial falls back: the confirmed app failing is an error left on the REPL (recovery:
# maintenance mode, deploy again).
#
# Every durable step passes through write_point("slots:<stage>") like the store's, so the
# simulator can pull the plug at each one (boards/sim/board.py).
import asyncio
import json
import os
import sys

from micropython import const

BOUND_MS = const(30_000)  # a trial app that has not confirmed by then is given up
STATE = "/slots.json"
SLOTS = ("a", "b")

_root = None  # the flash root start() ran from ("" on a board); None: not booted by slots
_hook = None


def set_hook(fn):
    """Installs fn(tag), called at every durable step (the simulator's power cuts)."""
    global _hook
    _hook = fn


def _point(tag):
    if _hook is not None:
        _hook("slots:" + tag)


def folder(slot, root=""):
    """Where `slot` lives on the flash."""
    return root + "/app_" + slot


def read(root=""):
    """The state; None when no app was ever installed into a slot."""
    try:
        with open(root + STATE) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError:
        # only a partial copy ever lands under this name (.new is renamed whole), so a state
        # that does not parse is damage to the flash: start the app of slot a
        return {"run": "a", "prev": None, "trial": 0, "boots": 0, "failed": None}


def _write(root, state):
    path = root + STATE
    _point("begin")
    with open(path + ".new", "w") as f:
        json.dump(state, f)
    _point("synced")
    os.rename(path + ".new", path)
    _point("renamed")


def status(root=None):
    """One line for INFO and deploy: "b", "b trial", "a failed=b"; None when not booted by
    slots (a board from before them, the simulator running the sources)."""
    if root is None:
        root = _root
        if root is None:
            return None
    st = read(root)
    if st is None:
        return None
    out = st["run"]
    if st["trial"]:
        out += " trial"
    if st.get("failed"):
        out += " failed=" + st["failed"]
    return out


def target(root=""):
    """The slot an update goes into: the one that does not run, or, while an update is on
    trial (deploy from the maintenance mode of a trial boot), that update's own slot: never
    the app a trial falls back to."""
    st = read(root)
    if st is None:
        return "a"
    if st["trial"] and st["prev"]:
        return st["run"]
    return "a" if st["run"] == "b" else "b"


def switch(slot, root=""):
    """Makes the freshly copied `slot` the one the next boot tries (called by capkey deploy)."""
    if slot not in SLOTS:
        raise ValueError("no slot " + slot)
    st = read(root)
    if st is None:  # the first install: nothing to fall back to, nothing to try
        _write(root, {"run": slot, "prev": None, "trial": 0, "boots": 0, "failed": None})
        return
    prev = st["run"]
    if st["trial"] and st["prev"]:
        if slot != st["run"]:
            raise ValueError("slot " + slot + " holds the app to fall back to")
        prev = st["prev"]  # an update replacing one still on trial: the fallback stays
    elif st["run"] == slot:
        raise ValueError("slot " + slot + " is the one running")
    _write(root, {"run": slot, "prev": prev, "trial": 1, "boots": 0, "failed": None})


def _fall_back(root, st):
    # back to the previous slot; the one given up is kept as prev, so that a later deploy
    # writes over it rather than over the app that works
    print("capkey: the app of slot", st["run"], "did not start well; back to slot", st["prev"])
    _write(root, {"run": st["prev"], "prev": st["run"], "trial": 0, "boots": 0,
                  "failed": st["run"]})


def choose(root=""):
    """At boot: (slot to run, is it a trial). Counts a trial boot; a trial seen again falls
    back. None when no slot was ever installed."""
    st = read(root)
    if st is None:
        return None
    if st["trial"] and st["prev"]:
        if st["boots"]:
            _fall_back(root, st)
            return st["prev"], False
        st["boots"] = 1
        _write(root, st)
        return st["run"], True
    return st["run"], False


def confirm(root=""):
    """The app in trial runs well: it stays."""
    st = read(root)
    if st is not None and st["trial"]:
        st["trial"] = 0
        st["boots"] = 0
        _write(root, st)
        print("capkey: slot", st["run"], "confirmed")


async def _watch(root, done, restart, bound_ms):
    await asyncio.sleep_ms(bound_ms)
    if not done[0]:
        _fall_back(root, read(root))
        restart()


async def _run(app_main, board, root, trial, restart, bound_ms):
    done = [False]

    def ready():
        if not done[0]:
            done[0] = True
            confirm(root)

    watch = asyncio.create_task(_watch(root, done, restart, bound_ms)) if trial else None
    try:
        return await app_main(board, ready=ready if trial else None)
    finally:
        if watch is not None:
            watch.cancel()


def start(make_board=None, restart=None, root="", bound_ms=BOUND_MS):
    """Boots the app of the chosen slot: its folder first on sys.path, then the board (by
    make_board(), or board.BOARD from the slot) and its main.main(board, ready). Returns what
    main() returns (True: maintenance mode, the REPL follows). restart() restarts the board
    (machine.reset by default)."""
    global _root
    if restart is None:
        import machine

        restart = machine.reset
    chosen = choose(root)
    if chosen is None:
        raise RuntimeError("no app installed: deploy one with capkey deploy")
    slot, trial = chosen
    _root = root
    sys.path.insert(0, folder(slot, root))
    try:
        if make_board is None:
            import board

            b = board.BOARD
        else:
            b = make_board()
        import main

        return asyncio.run(_run(main.main, b, root, trial, restart, bound_ms))
    except Exception as e:
        if not trial:
            raise
        sys.print_exception(e)
        _fall_back(root, read(root))
        restart()
