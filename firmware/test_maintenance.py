# Maintenance mode, run inside MicroPython (root conftest.py): the boot check (keys held, the
# one-shot flag), the screen, main() building nothing, and the MAINTENANCE command through the
# real link server and UI of a simulator board.
import asyncio
import os
import sys

import maintenance
from link.codes import ERR_DENIED, ERR_INVALID_PARAMETER, ERR_TIMEOUT
from test_main import (
    _board,
    _call,
    _rmtree,
    _tmp,
    _until_listening,
    _until_text,
    compose,
    main,  # firmware/main.py (test_main imports it past boards/sim/main.py)
)

_MAINTENANCE = 0x08
_PRESS = 0x06


def _flagged(b):
    try:
        os.stat(b.storage + maintenance.FLAG)
        return True
    except OSError:
        return False


def _flag(b):
    with open(b.storage + maintenance.FLAG, "w"):
        pass


def _holding(b, sequence):
    # keys_held() answers the next item of `sequence` at each call, then the last one
    calls = []

    def held():
        calls.append(1)
        return sequence[min(len(calls), len(sequence)) - 1]

    b.keys_held = held
    return calls


def test_normal_boot_is_not_maintenance_and_does_not_wait():
    folder = _tmp()
    try:
        b = _board(folder)
        calls = _holding(b, ["", "*#"])
        if asyncio.run(maintenance.at_boot(b)) is not None:
            raise AssertionError("no keys, no flag: a normal boot")
        if len(calls) != 1:
            raise AssertionError("a normal boot reads the keys once and goes on")
        for keys in ("*", "#", "*0", "D#"):  # one key of the combination is not enough
            _holding(b, [keys])
            if asyncio.run(maintenance.at_boot(b)) is not None:
                raise AssertionError(keys)
    finally:
        _rmtree(folder)


def test_combination_held_for_the_hold_time_enters_maintenance():
    folder = _tmp()
    try:
        b = _board(folder)
        calls = _holding(b, ["#*1"])  # both keys, in any order, other keys beside them
        scr = asyncio.run(maintenance.at_boot(b))
        if scr is None:
            raise AssertionError("*# held: maintenance")
        if len(calls) < maintenance.HOLD_MS // 50:
            raise AssertionError("the keys must stay held for HOLD_MS: %d reads" % len(calls))
        text = " ".join(scr.lines())
        for words in ("Mode maintenance", "REPL", "débrancher puis rebrancher"):
            if words not in text:
                raise AssertionError((words, scr.lines()))
        if scr.lines()[0] != maintenance.TITLE or not any(b.display.glass()):
            raise AssertionError("the title on the glass")
    finally:
        _rmtree(folder)


def test_combination_let_go_before_the_hold_time_is_a_normal_boot():
    folder = _tmp()
    try:
        b = _board(folder)
        _holding(b, ["*#", "*#", "*#", "*"])  # a brush of two keys while plugging in
        if asyncio.run(maintenance.at_boot(b)) is not None:
            raise AssertionError("released early: a normal boot")
    finally:
        _rmtree(folder)


def test_flag_gives_one_maintenance_boot():
    folder = _tmp()
    try:
        b = _board(folder)
        _holding(b, [""])
        _flag(b)
        if asyncio.run(maintenance.at_boot(b)) is None:
            raise AssertionError("the flag of a confirmed request: maintenance")
        if _flagged(b):
            raise AssertionError("the flag is taken at the maintenance boot")
        b = _board(folder)
        _holding(b, [""])
        if asyncio.run(maintenance.at_boot(b)) is not None:
            raise AssertionError("the next power-up is a normal boot")
    finally:
        _rmtree(folder)


def test_maintenance_boot_builds_nothing_and_returns():
    folder = _tmp()
    try:
        b = _board(folder)
        _holding(b, [""])
        _flag(b)
        before = set(sys.modules)
        if asyncio.run(main.main(b)) is not True:
            raise AssertionError("main() returns True: the REPL follows")
        loaded = [m for m in sys.modules if m not in before]
        for m in loaded:
            for part in ("store", "apps", "applets", "crypto", "commands", "flows", "server"):
                if part in m:
                    raise AssertionError("a maintenance boot loads nothing that unseals: " + m)
        if "maintenance" in sys.modules and "maintenance" not in before:
            raise AssertionError("dropped after use")
        if b.listening:
            raise AssertionError("no link server in maintenance mode")
        files = sorted(e[0] for e in os.ilistdir(folder))
        if files != [".sim-glass", ".sim-serial"]:  # the simulator's own files only
            raise AssertionError("no store record made: %r" % files)
    finally:
        _rmtree(folder)


async def _request_then(b, keys):
    # MAINTENANCE on one connection; `keys` pressed on the keypad once the question is shown
    task = asyncio.create_task(_call(b, _MAINTENANCE, rid=9))
    await _until_text(b, "Accepter ?")
    for k in keys:
        b.inject_key(k)
    return await task


def _served(folder, scenario, input_ms=None):
    b = _board(folder)
    ctx = compose.build(b, apps=())
    if input_ms is not None:
        ctx.ui.INPUT_MS = input_ms
    rebooted = []
    b.reboot = lambda: rebooted.append(1)

    async def run():
        task = asyncio.create_task(main.main(b, ctx))
        try:
            await _until_listening(b)
            await _until_text(b, "Choisir la fonction")
            out = await scenario(b)
            await asyncio.sleep_ms(300)  # longer than the reboot delay
            return out
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    return asyncio.run(run()), b, rebooted


def test_maintenance_command_ok_on_the_keypad_flags_and_restarts():
    folder = _tmp()
    try:
        (status, payload), b, rebooted = _served(folder, lambda b: _request_then(b, "D"))
        if status != 0 or payload != b"":
            raise AssertionError((status, payload))
        if not _flagged(b) or rebooted != [1]:
            raise AssertionError("OK: the flag, then a restart")
        _holding(b, [""])
        if asyncio.run(maintenance.at_boot(b)) is None:
            raise AssertionError("the restart is a maintenance boot")
    finally:
        _rmtree(folder)


def test_maintenance_command_refused_or_unanswered_changes_nothing():
    folder = _tmp()
    try:
        (status, _), b, rebooted = _served(folder, lambda b: _request_then(b, "*"))
        if status != ERR_DENIED or _flagged(b) or rebooted:
            raise AssertionError(("ANNULER", status, rebooted))
        (status, _), b, rebooted = _served(folder, lambda b: _request_then(b, ""), input_ms=300)
        if status != ERR_TIMEOUT or _flagged(b) or rebooted:
            raise AssertionError(("no answer", status, rebooted))

        async def with_payload(b):
            return await _call(b, _MAINTENANCE, b"\x01")

        (status, _), b, rebooted = _served(folder, with_payload)
        if status != ERR_INVALID_PARAMETER or _flagged(b) or rebooted:
            raise AssertionError(("payload", status))
    finally:
        _rmtree(folder)
