import asyncio

from ui.core import Ui
from ui.test_fakeboard import FakeBoard, settle, text, until

CODE = "CODE"
SIGN = "SIGN"


def _ui(store=None):
    b = FakeBoard()
    ui = Ui(b, store=store, version="0.1.0")
    ui.NOTICE_MS = 150
    return b, ui


async def _start(ui):
    task = asyncio.create_task(ui.run())
    await settle()
    return task


async def _stop(task):
    task.cancel()
    await settle(5)


async def test_first_screen():
    b, ui = _ui()

    async def flow(ui):
        pass

    ui.add_function("A", CODE, flow)
    ui.add_function("B", SIGN, flow)
    task = await _start(ui)
    lines = ui.snapshot()[1]
    assert lines == ["", "Choisir la", "fonction", "", "A:CODE B:SIGN", "#:MENU"]
    assert "Choisir la fonction" in text(ui)
    assert b.display.on and b.display.shows >= 1
    await _stop(task)


async def test_menu_in_and_out():
    b, ui = _ui()
    task = await _start(ui)
    b.press("#")
    await settle()
    lines = ui.snapshot()[1]
    assert lines[0] == "Menu"
    assert lines[1] == "1 Infos appareil" and "Langue" not in " ".join(lines)  # French only
    b.press("*")  # back: no "Opération annulée" for leaving the menu
    await settle()
    assert "Choisir la fonction" in text(ui)
    b.press("#1")
    await settle()
    t = text(ui)
    assert "Infos appareil" in t and "Modèle test" in t and "0123456789abcdef" in t
    assert "Version 0.1.0" in t and "/ 194560" in t
    b.press("D")  # back to the menu, then home
    await settle()
    assert ui.snapshot()[1][0] == "Menu"
    b.press("*")
    await settle()
    assert "Choisir la fonction" in text(ui)
    await _stop(task)


async def test_menu_app_item_and_unbound_key():
    b, ui = _ui()
    ran = []

    async def pair(ui):
        ran.append(await ui.confirm(["Appairer ?"]))

    ui.add_menu_item("Appairage", pair)
    task = await _start(ui)
    b.press("C")  # no function on C: a beep, nothing else
    await settle()
    assert b.beeps == 1 and "Choisir la fonction" in text(ui)
    b.press("#")
    await settle()
    assert "2 Appairage" in ui.snapshot()[1]
    b.press("2D")
    await settle()
    assert ran == [True] and "Choisir la fonction" in text(ui)
    await _stop(task)


async def test_idle_timeout_blanks_and_first_key_only_wakes():
    b, ui = _ui()
    ui.IDLE_MS = 80
    task = await _start(ui)
    assert b.display.on
    await until(lambda: not b.display.on)
    shows = b.display.shows
    b.press("#")
    await settle()
    assert b.display.on and b.display.shows == shows + 1
    assert "Choisir la fonction" in text(ui)  # the key was not acted on
    b.press("#")
    await settle()
    assert ui.snapshot()[1][0] == "Menu"
    b.press("*")
    await until(lambda: not b.display.on)  # blanks again after IDLE_MS
    await _stop(task)


async def test_flow_cancel_and_error_notices():
    b, ui = _ui()
    calls = []

    async def code(ui):
        calls.append(await ui.digits("Code PIN", 4, 8, masked=True))

    async def broken(ui):
        raise ValueError("boom")

    ui.add_function("A", CODE, code)
    ui.add_function("B", SIGN, broken)
    task = await _start(ui)
    b.press("A12*")
    await settle()
    assert calls == [None]
    assert "Opération annulée" in text(ui)
    await until(lambda: "Choisir la fonction" in text(ui))
    b.press("B")
    await settle()
    assert text(ui).strip() == "Erreur" and isinstance(ui.last_error, ValueError)
    await until(lambda: "Choisir la fonction" in text(ui))
    b.press("A1234D")  # the loop survived the exception
    await settle()
    assert calls[1] == bytearray(b"1234")
    assert "Choisir la fonction" in text(ui)
    await _stop(task)


async def test_foreground_takes_the_screen_and_gives_it_back():
    b, ui = _ui()
    task = await _start(ui)

    async def handler():
        async with ui.foreground():
            ui.show(["Signer ?"], title="Lien")
            return await ui.confirm(["Signer ?"])

    h = asyncio.create_task(handler())
    await settle()
    assert ui.snapshot()[1][0] == "Signer ?"
    b.press("D")
    assert await asyncio.wait_for_ms(h, 500) is True
    await settle()
    assert "Choisir la fonction" in text(ui)
    # the home loop reads keys again
    b.press("#")
    await settle()
    assert ui.snapshot()[1][0] == "Menu"
    await _stop(task)


async def test_foreground_waits_for_a_running_flow_and_wakes_a_blank_screen():
    b, ui = _ui()
    ui.IDLE_MS = 50

    async def code(ui):
        await ui.message(["Code 12345678"])

    ui.add_function("A", CODE, code)
    task = await _start(ui)
    b.press("A")
    await settle()

    async def handler():
        async with ui.foreground():
            ui.show(["Lien"])
            await settle(5)
            return ui.snapshot()[1]

    h = asyncio.create_task(handler())
    await settle()
    assert not h.done() and "Code 12345678" in text(ui)
    b.press("D")  # the person ends the flow: the handler gets the screen
    assert await asyncio.wait_for_ms(h, 500) == ["Lien"]
    await until(lambda: not b.display.on)  # idle at home again
    h = asyncio.create_task(handler())
    assert await asyncio.wait_for_ms(h, 500) == ["Lien"]
    assert b.display.on
    await _stop(task)


async def test_foreground_cancelled_goes_back_home():
    b, ui = _ui()
    task = await _start(ui)
    pins = []

    async def handler():
        async with ui.foreground():
            pins.append(await ui.digits("Code PIN", 4, 8, masked=True))

    h = asyncio.create_task(handler())
    await settle()
    b.press("12")
    await settle()
    assert "**_" in ui.snapshot()[1]
    h.cancel()  # the host sent CANCEL
    await settle()
    assert pins == [] and "Opération annulée" in text(ui)
    await until(lambda: "Choisir la fonction" in text(ui))
    b.press("#")
    await settle()
    assert ui.snapshot()[1][0] == "Menu"
    await _stop(task)


async def test_foreground_reentrant_and_busy_check():
    b, ui = _ui()
    task = await _start(ui)
    try:
        ui.show(["intrus"])  # another task while the home loop owns the screen
        raise AssertionError("show() without foreground() was accepted")
    except RuntimeError:
        pass

    async def handler():
        async with ui.foreground():
            async with ui.foreground():  # nested: same task, no deadlock
                ui.show(["dedans"])
            ui.show(["encore"])
        return True

    assert await asyncio.wait_for_ms(asyncio.create_task(handler()), 500)
    await settle()
    assert "Choisir la fonction" in text(ui)
    await _stop(task)


async def test_foreground_without_home_loop_and_cancel_while_waiting():
    b, ui = _ui()

    async def first():
        async with ui.foreground():
            await ui.key(1000)

    async def second():
        async with ui.foreground():
            ui.show(["second"])

    t1 = asyncio.create_task(first())
    await settle(5)
    t2 = asyncio.create_task(second())
    await settle(5)
    t2.cancel()  # cancelled while waiting for the screen
    await settle(5)
    b.press("D")
    await asyncio.wait_for_ms(t1, 500)
    assert ui._owner is None and not ui._lock.locked() and ui._fg_waiting == 0
    ui.close()


async def test_reset_drops_typed_ahead_keys():
    b, ui = _ui()
    ui._ensure_pump()
    b.press("12")
    await settle()
    assert len(ui._inbox) == 2
    ui._notice = "x"
    ui.reset()
    assert len(ui._inbox) == 0 and not any(ui._inbox._buf) and ui._notice is None
    ui.close()


async def test_foreground_interrupts_the_menu_but_not_an_app_menu_flow():
    b, ui = _ui()
    done = []

    async def pair(ui):
        done.append(await ui.confirm(["Appairer ?"]))

    ui.add_menu_item("Appairage", pair)
    task = await _start(ui)

    async def handler():
        async with ui.foreground():
            ui.show(["Lien"])
            await settle(5)
            return ui.snapshot()[1]

    b.press("#1")  # MENU > Infos appareil
    await settle()
    assert "Infos appareil" in text(ui)
    h = asyncio.create_task(handler())
    assert await asyncio.wait_for_ms(h, 500) == ["Lien"]
    await settle()
    assert "Choisir la fonction" in text(ui)  # home, not back into the menu
    b.press("#2")  # MENU > Appairage: an app flow, not interrupted
    await settle()
    h = asyncio.create_task(handler())
    await settle()
    assert not h.done() and "Appairer ?" in text(ui)
    b.press("D")
    assert await asyncio.wait_for_ms(h, 500) == ["Lien"]
    assert done == [True]
    await _stop(task)
