import asyncio

from ui.core import Ui
from ui.test_fakeboard import FakeBoard, settle, text


def _ui():
    b = FakeBoard()
    return b, Ui(b)


async def test_digits_corr_ok():
    b, ui = _ui()
    b.press("12C34D")
    got = await asyncio.wait_for_ms(ui.digits("Défi", 3, 8), 1000)
    assert isinstance(got, bytearray)
    assert got == bytearray(b"134")


async def test_digits_min_len_refuses_ok_then_accepts():
    b, ui = _ui()
    b.press("12C3D")
    task = asyncio.create_task(ui.digits("Défi", 3, 8, prompt_lines=("Saisir le défi",)))
    await settle()
    # "1","2",C -> "1"; "3" -> "13"; D refused (2 < 3)
    assert not task.done()
    assert b.beeps == 1
    assert "13_" in ui.snapshot()[1]
    b.press("7D")
    got = await asyncio.wait_for_ms(task, 500)
    assert got == bytearray(b"137")
    assert not ui.cancelled


async def test_digits_max_len_and_annuler():
    b, ui = _ui()
    b.press("123456")
    task = asyncio.create_task(ui.digits("X", 1, 4))
    await settle()
    assert "1234" in ui.snapshot()[1]  # no cursor once full, extra digits refused
    assert b.beeps == 2
    b.press("*")
    assert await asyncio.wait_for_ms(task, 500) is None
    assert ui.cancelled


async def test_digits_timeout():
    b, ui = _ui()
    b.press("12")
    assert await ui.digits("X", 1, 4, timeout_ms=40) is None
    assert not ui.cancelled


async def test_masked_pin_never_in_snapshot_text():
    b, ui = _ui()
    task = asyncio.create_task(ui.digits("Code PIN", 4, 8, masked=True))
    for k in "9317":
        b.press(k)
        await settle(10)
        joined = "".join(ui.snapshot()[1])
        for d in "9317":
            assert d not in joined
    assert "****_" in ui.snapshot()[1]
    b.press("C")
    await settle(10)
    assert "***_" in ui.snapshot()[1]
    b.press("7D")
    pin = await asyncio.wait_for_ms(task, 500)
    assert pin == bytearray(b"9317")
    # no digit stays behind in the keypad's ring or in the UI's inbox
    assert not any(b.keypad._buf) and not any(ui._inbox._buf)
    for i in range(len(pin)):  # the caller wipes it
        pin[i] = 0


async def test_amount_shows_decimal_comma():
    b, ui = _ui()
    task = asyncio.create_task(ui.amount("Montant"))
    await settle()
    assert "0,00 EUR" in text(ui)
    b.press("1250009C")
    await settle()
    assert ui.snapshot()[1] == ["Montant", "", "1 250,00 EUR", "", "", "", "C:CORR D:OK"]
    # right-aligned: the last cell of the entry row (pixel lines 18-26) is lit, the first is not
    d = b.display
    assert not any(d.pixel(x, y) for x in range(8) for y in range(18, 27))
    assert any(d.pixel(x, y) for x in range(120, 127) for y in range(18, 27))
    b.press("D")
    assert await asyncio.wait_for_ms(task, 500) == 125000


async def test_amount_zero_refused_and_max_digits():
    b, ui = _ui()
    b.press("0D123D")
    assert await ui.amount("M", max_digits=2, currency="") == 12
    assert b.beeps == 2  # OK at 0, then the third digit


async def test_choose_digit_cursor_and_cancel():
    b, ui = _ui()
    items = ("Un", "Deux", "Trois")
    b.press("2")
    assert await ui.choose("Liste", items) == 1
    b.press("BBBD")  # cursor wraps around: 0 -> 1 -> 2 -> 0
    assert await ui.choose("Liste", items) == 0
    b.press("AD")
    assert await ui.choose("Liste", items) == 2
    b.press("9*")  # 9 is not an item
    assert await ui.choose("Liste", items) is None
    assert ui.cancelled and b.beeps == 1


async def test_choose_scrolls_to_the_cursor():
    b, ui = _ui()
    items = ["Article %d" % i for i in range(12)]
    task = asyncio.create_task(ui.choose("Liste", items))
    await settle()
    assert ui.snapshot()[1][:2] == ["Liste", "1 Article 0"]
    b.press("A")  # up from the first item: the last one, scrolled into view
    await settle()
    assert ui.snapshot()[1][-1] == "  Article 11"
    b.press("D")
    assert await asyncio.wait_for_ms(task, 500) == 11


async def test_confirm_and_message():
    b, ui = _ui()
    b.press("D")
    assert await ui.confirm(["Virement", "1 250,00 EUR"]) is True
    b.press("*")
    assert await ui.confirm(["Virement"]) is False and ui.cancelled
    assert await ui.confirm(["Virement"], timeout_ms=30) is False and not ui.cancelled
    b.press("D")
    assert await ui.message(["Code", "12345678"]) is True
    assert await ui.message(["Code"], timeout_ms=30) is False


async def test_confirm_longer_than_the_screen_needs_its_end_shown():
    # what is signed must all have been on screen before OK counts: D first shows the rest
    b, ui = _ui()
    lines = ["ligne %d" % i for i in range(8)]  # + the hint: 9 rows under the title, 6 shown
    task = asyncio.create_task(ui.confirm(lines, title="Signature"))
    await settle()
    assert ui.snapshot()[1][-1] == "ligne 5"
    b.press("D")  # not yet: the last page instead
    await settle()
    assert not task.done()
    assert ui.snapshot()[1][1:] == ["ligne 3", "ligne 4", "ligne 5", "ligne 6", "ligne 7",
                                    "D:OK *:ANNULER"]
    b.press("AAAD")  # the end was shown: OK from anywhere now
    assert await asyncio.wait_for_ms(task, 500) is True
    # B to the end, then D at once
    b.press("BBBD")
    assert await ui.confirm(lines, title="Signature") is True
    b.press("*")  # ANNULER needs nothing shown
    assert await ui.confirm(lines, title="Signature") is False and ui.cancelled


async def test_message_scrolls_long_text():
    b, ui = _ui()
    lines = ["ligne %d" % i for i in range(10)]
    task = asyncio.create_task(ui.message(lines, title="Titre"))
    await settle()
    assert ui.snapshot()[1][1] == "ligne 0" and ui.snapshot()[1][-1] == "ligne 5"
    d = b.display
    assert [y for y in range(9, 64) if d.pixel(127, y)] == list(range(9, 41))  # 6 of 10 rows
    b.press("BBBBBB")  # only 4 steps possible
    await settle()
    assert ui.snapshot()[1][1] == "ligne 4" and ui.snapshot()[1][-1] == "ligne 9"
    assert [y for y in range(9, 64) if d.pixel(127, y)] == list(range(30, 63))  # ... at the end
    b.press("A")
    await settle()
    assert ui.snapshot()[1][1] == "ligne 3"
    b.press("D")  # a message is left with OK at once
    assert await asyncio.wait_for_ms(task, 500) is True


def test_show_title_wrap_and_snapshot():
    b, ui = _ui()
    ui.show(["Code PIN incorrect", "Réessayez"], title="Sélectionnez votre certificat")
    fb, lines = ui.snapshot()
    assert len(fb) == 1024 and fb == bytes(b.display.buffer)
    assert lines == ["Sélectionnez", "votre certificat", "Code PIN", "incorrect", "Réessayez"]
    assert b.display.buffer[0] != 0  # the title row is inverted (lit background)
    ui.show("Patientez...")  # a single str is one line, not one row per character
    assert ui.snapshot()[1] == ["Patientez..."]
