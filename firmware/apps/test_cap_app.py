# apps/cap.py on a fake board: keypad flows, link handlers and the PC/SC gate. Codes are checked
# against docs/vectors/cap_otp.json (written by the host engineer's independent implementation).
import asyncio

# Loaded here, so resident for the whole test: the app would load them on each use and drop them
# after, compiling the sources again every time in a heap the earlier compilations fragmented.
# The simulator and the boards run .mpy files; firmware/test_ondemand.py tests the dropping.
import commands.cap  # noqa: F401
import commands.cap_card  # noqa: F401
import commands.cap_code  # noqa: F401
import flows.cap  # noqa: F401
from applets.test_fakes import load_vectors
from apps import cap as app_cap
from apps.test_support import Ctx, Req
from link import LinkError
from link.codes import (
    ERR_ALREADY_PERSONALISED,
    ERR_DENIED,
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    ERR_PIN_BLOCKED,
    ERR_PIN_INVALID,
    KA_WAITING_FOR_USER,
)
from ui.test_fakeboard import accept, settle, text, until


async def _start():
    ctx = Ctx()
    app = app_cap.install(ctx)
    task = asyncio.create_task(ctx.ui.run())
    await settle()
    return ctx, app, task


async def _call(ctx, cmd, payload=b""):
    return await ctx.link.handlers[cmd](Req(payload))


async def _error(coro):
    try:
        await coro
    except LinkError as e:
        return e
    raise AssertionError("no LinkError")


async def _atc(ctx):
    st = await _call(ctx, app_cap.CMD_CARD_STATUS)
    return (st[4] << 8) | st[5]


def _card(i=0):
    return load_vectors()["cards"][i]


async def _personalise(ctx, i=0):
    await _call(ctx, app_cap.CMD_PERSONALISE, bytes.fromhex(_card(i)["personalise"]))


async def typ(b, keys):
    # one key at a time: the UI's inbox holds 8 keys, a person never types ahead that far
    for k in keys:
        b.press(k)
        await asyncio.sleep_ms(3)
    await settle()


async def _stop(ctx, task):
    task.cancel()
    await settle(5)
    ctx.ui.close()


async def test_status_and_personalise():
    ctx, app, task = await _start()
    st = await _call(ctx, app_cap.CMD_CARD_STATUS)
    if st != bytes(8):
        raise AssertionError("factory status %r" % st)
    e = await _error(_call(ctx, app_cap.CMD_PERSONALISE, b"\xdf\x01\x01\x09"))
    if e.code != ERR_INVALID_PARAMETER:
        raise AssertionError("bad data")
    req = Req(bytes.fromhex(_card()["personalise"]))
    await ctx.link.handlers[app_cap.CMD_PERSONALISE](req)
    if any(req.payload):
        raise AssertionError("the PERSONALISE payload (key, PIN block) was not wiped")
    st = await _call(ctx, app_cap.CMD_CARD_STATUS)
    if st[:8] != bytes((1, 1, 3, 3, 0, 0, 1, 0)) or st[8:] != b"476173******0010":
        raise AssertionError("status %r" % st)
    e = await _error(_personalise(ctx))
    if e.code != ERR_ALREADY_PERSONALISED:
        raise AssertionError("silent re-personalisation")
    await _stop(ctx, task)


async def test_keypad_code_and_sign_flows_give_the_vector_codes():
    ctx, app, task = await _start()
    await _personalise(ctx)
    s = _card()["sessions"]
    b = ctx.board
    b.press("A1234")
    await settle()
    if "****" not in text(ctx.ui) or "1234" in text(ctx.ui):
        raise AssertionError("PIN not masked: " + text(ctx.ui))
    b.press("D")
    await until(lambda: s[0]["otp"] in text(ctx.ui))  # Identify, ATC 1
    drawn = bytes(ctx.board.display.buffer)
    await settle(50)  # the flow has ended, its modules are gone: the app keeps the code on
    if ctx.ui.snapshot()[1] != ["Votre code", "", s[0]["otp"], "", "D:OK *:ANNULER"]:
        raise AssertionError("code screen %r" % ctx.ui.snapshot()[1])
    if bytes(ctx.board.display.buffer) != drawn:
        raise AssertionError("the code screen changed once the flow ended")
    b.press("D")
    await until(lambda: "Choisir la fonction" in text(ctx.ui))
    for keys in ("B1", "78901234D", "1234D"):  # Réponse
        await typ(b, keys)
    await until(lambda: s[1]["otp"] in text(ctx.ui))
    b.press("D")
    await settle()
    for keys in ("B2", "23710189D", "125000D", "1234D"):  # Signature 1 250,00
        await typ(b, keys)
    await until(lambda: s[2]["otp"] in text(ctx.ui))
    b.press("D")
    await settle()
    for keys in ("B3", "1234D", "3101234567D", "D", "1234D"):  # Signer données
        await typ(b, keys)
    try:
        await until(lambda: s[3]["otp"] in text(ctx.ui))
    except AssertionError:
        raise AssertionError("screen: " + text(ctx.ui) + " last error %r" % (ctx.ui.last_error,))
    if not 0 <= app.last_code_ms < 1000:
        raise AssertionError("timing")
    print("ok_to_code_ms", app.last_code_ms)
    b.press("D")
    await _stop(ctx, task)


async def test_the_reader_and_the_sealing_code_never_share_the_heap():
    # Together they set the CAP flows' peak: cap_code.code() unseals the card (EmvCard.open) before
    # it loads the reader, and the dialogue that asked for the code (flows/cap.py, the GET_CODE of
    # commands/cap.py) is gone by then. What is loaded (or, for the dialogues, which this test
    # imports, asked for) is noted at every on-demand load of a keypad code and of a GET_CODE.
    import sys

    import ondemand

    seen = []
    real = ondemand.Use._load

    def spy(use):
        mods = real(use)
        asked = [n for u in ondemand._open for n in u.names]
        seen.append(("reader.cap" in sys.modules, "crypto.sealed" in sys.modules,
                     "ui.inputs" in sys.modules, "flows.cap" in asked or "commands.cap" in asked))
        return mods

    ctx, app, task = await _start()
    await _personalise(ctx)
    ondemand.Use._load = spy
    try:
        ctx.board.press("A1234")
        await settle()
        ctx.board.press("D")
        await until(lambda: "Votre code" in text(ctx.ui))
        ctx.board.press("D")
        await until(lambda: "Choisir la fonction" in text(ctx.ui))
        t = asyncio.create_task(_call(ctx, app_cap.CMD_GET_CODE, b"\x01"))
        await until(lambda: "Identification" in text(ctx.ui))
        await typ(ctx.board, "D1234D")
        await asyncio.wait_for_ms(t, 2000)
    finally:
        ondemand.Use._load = real
    reader_loads = [s for s in seen if s[0]]
    if len(reader_loads) < 2 or not any(s[1] for s in seen) or not any(s[3] for s in seen):
        raise AssertionError("no reader, no unsealing or no dialogue seen: %r" % seen)
    if any(s[1] for s in reader_loads):
        raise AssertionError("the sealing code was still loaded with the reader: %r" % seen)
    if any(s[2] for s in reader_loads):
        raise AssertionError("the PIN entry was still loaded with the reader: %r" % seen)
    if any(s[3] for s in reader_loads):
        raise AssertionError("the dialogue was still loaded with the reader: %r" % seen)
    ctx.board.press("D")
    await _stop(ctx, task)


async def test_wrong_pin_says_so_then_blocks():
    ctx, app, task = await _start()
    await _personalise(ctx, 1)
    b = ctx.board
    for left in (2, 1):
        b.press("A9999D")
        await until(lambda: "incorrect" in text(ctx.ui))
        if "Essais restants : %d" % left not in text(ctx.ui):
            raise AssertionError(text(ctx.ui))
        b.press("D")
        await until(lambda: "Choisir la fonction" in text(ctx.ui))
    b.press("A9999D")
    await until(lambda: "bloqué" in text(ctx.ui))
    b.press("D")
    await settle()
    b.press("A1234D")
    await until(lambda: "bloqué" in text(ctx.ui))  # even the right PIN
    b.press("D")
    await settle()
    if (await _call(ctx, app_cap.CMD_CARD_STATUS))[2] != 0:
        raise AssertionError("tries")
    await _stop(ctx, task)


async def test_connected_get_code_confirm_pin_and_errors():
    ctx, app, task = await _start()
    e = await _error(_call(ctx, app_cap.CMD_GET_CODE, b"\x01"))
    if e.code != ERR_NOT_PERSONALISED:
        raise AssertionError("not personalised")
    await _personalise(ctx, 1)
    s = _card(1)["sessions"]
    for bad in (b"", b"\x09", b"\x02\x00", b"\x02\x09123456789", b"\x03\x0878901234\x010",
                b"\x01\x011", b"\x04", b"\x02\x0812345678\x00"):
        e = await _error(_call(ctx, app_cap.CMD_GET_CODE, bad))
        if e.code != ERR_INVALID_PARAMETER:
            raise AssertionError("accepted %r" % bad)
    b = ctx.board
    # Identify: the device shows the request, OK, PIN, code back over the link
    req = Req(b"\x01")
    t = asyncio.create_task(ctx.link.handlers[app_cap.CMD_GET_CODE](req))
    await until(lambda: "Identification" in text(ctx.ui))
    if req.statuses[:1] != [KA_WAITING_FOR_USER]:
        raise AssertionError("keepalive")
    await typ(b, "D1234D")
    code = await asyncio.wait_for_ms(t, 2000)
    if code != s[0]["otp"].encode():
        raise AssertionError("code %r" % code)
    await until(lambda: s[0]["otp"] in text(ctx.ui))  # and it stays on screen
    b.press("D")
    await until(lambda: "Choisir la fonction" in text(ctx.ui))
    # Sign: amount and challenge shown before the PIN
    t = asyncio.create_task(_call(ctx, app_cap.CMD_GET_CODE, b"\x03\x0823710189\x06125000\x03EUR"))
    await until(lambda: "1 250,00 EUR" in text(ctx.ui))
    if "2371 0189" not in text(ctx.ui):
        raise AssertionError(text(ctx.ui))
    await accept(ctx.ui, b)
    b.press("1234D")
    await asyncio.wait_for_ms(t, 2000)  # ATC 2 spent on Sign: vectors differ from here
    b.press("D")
    await settle()
    # ANNULER at the request -> ERR_DENIED, no ATC used
    atc = await _atc(ctx)
    t = asyncio.create_task(_error(_call(ctx, app_cap.CMD_GET_CODE, b"\x02\x0878901234")))
    await until(lambda: "7890 1234" in text(ctx.ui))
    b.press("*")
    e = await asyncio.wait_for_ms(t, 2000)
    if e.code != ERR_DENIED or await _atc(ctx) != atc:
        raise AssertionError("ANNULER")
    await settle(80)
    # wrong PIN -> ERR_PIN_INVALID with the tries left; blocked -> ERR_PIN_BLOCKED
    for left in (2, 1, 0):
        t = asyncio.create_task(_error(_call(ctx, app_cap.CMD_GET_CODE, b"\x01")))
        await until(lambda: "Identification" in text(ctx.ui))
        await typ(b, "D0000D")
        await until(lambda: "incorrect" in text(ctx.ui) or "bloqué" in text(ctx.ui))
        b.press("D")
        e = await asyncio.wait_for_ms(t, 2000)
        want = ERR_PIN_BLOCKED if left == 0 else ERR_PIN_INVALID
        if e.code != want or (left and e.payload != bytes((left,))):
            raise AssertionError("left %d: %r %r" % (left, e.code, e.payload))
        await settle(80)
    await _stop(ctx, task)


async def test_wipe_needs_the_keypad_and_apdu_needs_pcsc_mode():
    ctx, app, task = await _start()
    e = await _error(_call(ctx, app_cap.CMD_WIPE))
    if e.code != ERR_NOT_PERSONALISED:
        raise AssertionError("wipe factory")
    await _personalise(ctx)
    b = ctx.board
    t = asyncio.create_task(_error(_call(ctx, app_cap.CMD_WIPE)))
    await until(lambda: "Effacer" in text(ctx.ui))
    b.press("*")
    e = await asyncio.wait_for_ms(t, 2000)
    if e.code != ERR_DENIED or (await _call(ctx, app_cap.CMD_CARD_STATUS))[0] != 1:
        raise AssertionError("wipe refused")
    await settle(80)
    select = bytes.fromhex("00A4040007A000000003800200")
    e = await _error(_call(ctx, app_cap.CMD_APDU, select))
    if e.code != ERR_DENIED:
        raise AssertionError("APDU without PC/SC mode")
    b.press("#3")  # MENU, 3 = Lecteur PC/SC (after Infos, Carte CAP)
    await until(lambda: "PC/SC" in text(ctx.ui))
    b.press("D")
    await until(lambda: app.pcsc_on())
    b.press("D")
    await settle()
    atr = await _call(ctx, app_cap.CMD_CARD_RESET)
    r = await _call(ctx, app_cap.CMD_APDU, select)
    if atr[:1] != b"\x3b" or r[-2:] != b"\x90\x00" or b"VisaRemAuthen" not in r:
        raise AssertionError("APDU %r" % r)
    app_cap.reset()  # an unexpected error elsewhere switches the mode off
    e = await _error(_call(ctx, app_cap.CMD_APDU, select))
    if e.code != ERR_DENIED:
        raise AssertionError("PC/SC mode survived reset()")
    await settle(80)
    t = asyncio.create_task(_call(ctx, app_cap.CMD_WIPE))
    await until(lambda: "Effacer" in text(ctx.ui))
    if "476173******0010" not in text(ctx.ui):
        raise AssertionError("wipe screen lacks the masked PAN")
    b.press("D")
    await asyncio.wait_for_ms(t, 2000)
    # the device secret (crypto/devkey.py) is shared with the certificate key: a card wipe keeps it
    if (await _call(ctx, app_cap.CMD_CARD_STATUS))[0] != 0 or [n for n in ctx.store.d if n != "dev.secret"]:
        raise AssertionError("not wiped")
    await _personalise(ctx, 1)  # factory state again: personalisation allowed
    await _stop(ctx, task)


async def test_pcsc_mode_keeps_the_card_and_its_timer_gives_it_back():
    ctx, app, task = await _start()
    await _personalise(ctx)
    b = ctx.board
    app_cap.PCSC_IDLE_MS = 200
    try:
        b.press("#3")
        await until(lambda: "PC/SC" in text(ctx.ui))
        b.press("D")
        await until(lambda: app.pcsc_on())
        b.press("D")
        await settle()
        card = app.card
        select = bytes.fromhex("00A4040007A000000003800200")
        await _call(ctx, app_cap.CMD_CARD_RESET)
        await _call(ctx, app_cap.CMD_APDU, select)
        if app.card is not card or card is None:
            raise AssertionError("the card must stay the same between APDUs")
        await asyncio.sleep_ms(120)
        await _call(ctx, app_cap.CMD_APDU, select)  # activity pushes the deadline
        await asyncio.sleep_ms(120)
        if not app.pcsc_on():
            raise AssertionError("an APDU did not keep the mode on")
        await asyncio.sleep_ms(150)  # the timer switches it off without anybody asking
        if app.pcsc_until is not None or app.card is not None or app._hold is not None:
            raise AssertionError("PC/SC mode still holds the card")
    finally:
        app_cap.PCSC_IDLE_MS = 600000
    e = await _error(_call(ctx, app_cap.CMD_APDU, select))
    if e.code != ERR_DENIED:
        raise AssertionError("APDU after the timer")
    await _stop(ctx, task)
