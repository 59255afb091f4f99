# Firmware composition tests, run inside MicroPython (root conftest.py): the real store, UI, link
# server and simulator board, a host client on a TCP connection of the same event loop.
import asyncio
import os
import sys

from link.frame import HEADER, KIND_KEEPALIVE, KIND_REQUEST, KIND_RESPONSE, encode

# boards/sim/main.py comes first on the device's sys.path: import firmware/main.py explicitly
sys.path.insert(0, [p for p in sys.path if p.endswith("/firmware")][0])
try:
    import main
finally:
    sys.path.pop(0)
import compose  # noqa: E402

_PING = 0x03
_SCREEN = 0x05
_PRESS = 0x06


def _tmp():
    return "/tmp/capkey-main-" + os.urandom(6).hex()


def _rmtree(path):
    for entry in os.ilistdir(path):
        p = path + "/" + entry[0]
        if entry[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def _board(storage):
    import board

    port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
    return board.SimBoard(port, storage)


async def _call(board, code, payload=b"", rid=7):
    r, w = await asyncio.open_connection("127.0.0.1", board.port)
    try:
        w.write(encode(KIND_REQUEST, rid, code, payload))
        await w.drain()
        while True:
            hdr = await r.readexactly(HEADER)
            n = (hdr[6] << 8) | hdr[7]
            body = await r.readexactly(n + 2)
            if hdr[2] == KIND_KEEPALIVE:
                continue
            if hdr[2] != KIND_RESPONSE or ((hdr[3] << 8) | hdr[4]) != rid:
                raise AssertionError(hdr)
            return hdr[5], bytes(body[:n])
    finally:
        w.close()
        await w.wait_closed()


async def _screen_text(board):
    status, text = await _call(board, _SCREEN, b"\x01")
    if status != 0:
        raise AssertionError(status)
    return text.decode()


async def _until_listening(board):
    for _ in range(200):
        if board.listening:
            return
        await asyncio.sleep_ms(10)
    raise AssertionError("the board never listened")


async def _until_text(board, text):
    got = ""
    for _ in range(100):
        got = await _screen_text(board)
        if text in got.replace("\n", " "):
            return got
        await asyncio.sleep_ms(20)
    raise AssertionError("%r not on screen: %r" % (text, got))


class _FakeAppModule:
    __version__ = "9.9"

    def __init__(self):
        self.installed = None
        self.resets = 0

    def install(self, ctx):
        self.installed = ctx

    def reset(self):
        self.resets += 1


def test_install_apps_skips_missing_and_too_big_and_registers_resets():
    folder = _tmp()
    pkg = "capkey_test_apps_" + os.urandom(3).hex()
    os.mkdir(folder)
    os.mkdir(folder + "/" + pkg)
    with open(folder + "/" + pkg + "/demo.py", "w") as f:
        f.write("__version__ = '1.2'\nseen = []\n")
        f.write("def install(ctx):\n    seen.append(ctx)\n")
        f.write("def reset():\n    seen.append('reset')\n")
    with open(folder + "/" + pkg + "/helper.py", "w") as f:
        f.write("VALUE = 1\n")
    with open(folder + "/" + pkg + "/huge.py", "w") as f:
        f.write("from . import helper\nraise MemoryError\n")  # an app too big for the heap
    sys.path.insert(0, folder)
    try:
        b = _board(folder + "/flash")
        ctx = compose.build(b, apps=())  # the real apps are tested by their own tests and the HIL
        names = (pkg + ".missing", pkg + ".huge", pkg + ".demo", "apps.nothing")
        installed = compose.install_apps(ctx, names)
        if installed != [pkg + ".demo"]:
            raise AssertionError(installed)
        for m in (pkg + ".huge", pkg + ".helper"):
            if m in sys.modules:
                raise AssertionError("a failed import must give its modules back: " + m)
        demo = sys.modules[pkg + ".demo"]
        if demo.seen != [ctx]:
            raise AssertionError("install(ctx) not called with the context")
        if ("demo", "1.2") not in ctx.link.apps:
            raise AssertionError(ctx.link.apps)
        for attr in ("board", "ui", "store", "link"):
            if getattr(ctx, attr) is None:
                raise AssertionError(attr)
        ctx.recover(None, "test")
        if demo.seen[-1] != "reset" or ctx.errors != 1:
            raise AssertionError("reset hook not run by recover()")
    finally:
        sys.path.remove(folder)
        _rmtree(folder)


def test_main_serves_recovers_and_starts_again():
    folder = _tmp()
    try:
        for boot in range(2):  # the same firmware started twice in one interpreter
            b = _board(folder)
            ctx = compose.build(b, apps=())
            wiped = []
            ctx.on_reset(lambda: wiped.append(1))
            real_run = ctx.ui.run
            failures = [boot == 0]  # first boot: the UI loop dies once

            async def flaky_run():
                if failures[0]:
                    failures[0] = False
                    raise ValueError("bug in a flow")
                await real_run()

            ctx.ui.run = flaky_run

            async def scenario():
                task = asyncio.create_task(main.main(b, ctx))
                await _until_listening(b)
                status, echo = await _call(b, _PING, b"ping")
                if status != 0 or echo != b"ping":
                    raise AssertionError((status, echo))
                await _until_text(b, "Choisir la fonction")

                async def stray():
                    raise KeyError("lost task")

                asyncio.create_task(stray())  # nobody awaits it: the loop handler gets it
                await asyncio.sleep_ms(50)
                await _call(b, _PRESS, b"#")
                await _until_text(b, "Menu")
                await _call(b, _PRESS, b"*")
                await _until_text(b, "Choisir la fonction")
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                return len(wiped), ctx.errors

            resets, errors = asyncio.run(scenario())
            want = 2 if boot == 0 else 1  # (ui loop death +) the stray task
            if resets != want or errors != want:
                raise AssertionError((boot, resets, errors))
    finally:
        _rmtree(folder)
