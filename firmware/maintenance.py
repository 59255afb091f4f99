# Maintenance mode (docs/boards.md, "Maintenance mode"): the way back into a board that runs
# capkey, for `capkey deploy` and mpremote. Two ways in, both at the device itself:
#
#   - ANNULER (*) and MENU (#) held together while the board powers up, for HOLD_MS;
#   - the link command MAINTENANCE (0x08, docs/protocol.md) confirmed with OK on the keypad: the
#     device leaves a one-shot flag (<storage>/.maintenance) and restarts; the next boot takes the
#     flag away, so the boot after it is a normal one again.
#
# A maintenance boot builds nothing: no store opened, no app installed, no link server, so nothing
# is unsealed into RAM. It draws the maintenance screen, turns Ctrl-C back on (the link turns it
# off: a 0x03 inside a frame must not interrupt the firmware) and main() returns True: on a board
# main.py ends and MicroPython's REPL answers on USB; the simulator serves a REPL on its TCP port
# (boards/sim/main.py). Leaving: unplug and plug back in.
#
# Loaded only while used (firmware/ondemand.py): at boot by main(), and by the MAINTENANCE
# command's handler (link/system.py). What a normal boot loads stays in the heap for good (the
# names and strings of the module), so the boot path is kept short.
import asyncio
import os

import micropython
from micropython import const

COMBO = "*#"  # ANNULER + MENU, held at power-up
HOLD_MS = const(1000)  # how long the combination must stay held: no brush of two keys
_POLL_MS = const(50)
FLAG = "/.maintenance"  # under board.storage; a leading dot keeps it out of the store's records

TITLE = "Mode maintenance"
LINES = ("Lien capkey arrêté, REPL sur USB.", "Pour quitter : débrancher puis rebrancher.")
ASK = ("Le PC pourra lire et remplacer le logiciel.", "Accepter ?")


def _held(board):
    keys = board.keys_held()
    for k in COMBO:
        if k not in keys:
            return False
    return True


async def _combination(board):
    # held now, and still held at every poll for HOLD_MS
    if not _held(board):
        return False
    for _ in range(HOLD_MS // _POLL_MS):
        await asyncio.sleep_ms(_POLL_MS)
        if not _held(board):
            return False
    return True


def _take_flag(board):
    # True once per MAINTENANCE request: removing the flag is the test and the consumption at once
    try:
        os.remove(board.storage + FLAG)
        return True
    except OSError:
        return False


async def at_boot(board):
    """At power-up, before anything else is built: is this a maintenance boot? If so the
    maintenance screen is drawn, Ctrl-C is on, and the Screen drawn is returned (main() then
    returns); None for a normal boot."""
    flagged = _take_flag(board)  # taken even when the keys are held too: one request, one boot
    if not flagged and not await _combination(board):
        return None
    from ui.screen import COLS, ROWS, Screen, wrap

    scr = Screen(board.display, getattr(board, "lab", False))
    scr.clear()
    scr.row(0, TITLE, True)
    rows = []
    for line in LINES:
        wrap(line, COLS, rows)
    for i in range(min(len(rows), ROWS - 1)):
        scr.row(i + 1, rows[i])
    scr.flush()
    micropython.kbd_intr(3)
    return scr


async def request(ui, board, req):
    """The MAINTENANCE command, in the foreground: the person confirms on the keypad, then the flag
    is left for the next boot (the caller restarts the board). ANNULER: ERR_DENIED; no answer:
    ERR_TIMEOUT, and no flag."""
    from link import LinkError
    from link.codes import ERR_DENIED, ERR_TIMEOUT, KA_WAITING_FOR_USER

    await req.keepalive(KA_WAITING_FOR_USER)
    if not await ui.confirm(ASK, title=TITLE):
        raise LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
    with open(board.storage + FLAG, "w"):
        pass
