# apps/key.py on a fake board (ui.test_fakeboard) with the signer on a RAM store: the link handlers and
# the keypad dialogues behind them. The HIL suite (hil_tests/test_key_*.py) repeats the flows on
# the simulator through the real link.
import asyncio
import hashlib

# Loaded here, so resident for the whole test: the app would load them on each use and drop them
# after, compiling the sources again every time in a heap the earlier compilations fragmented.
# The simulator and the boards run .mpy files; firmware/test_ondemand.py tests the dropping.
import commands.key  # noqa: F401
import commands.key_admin  # noqa: F401
import commands.key_sign  # noqa: F401
import flows.key  # noqa: F401
from applets.test_key_fixtures import cert as _cert
from applets.test_key_fixtures import payload as _payload
from apps import key as app_key
from apps.test_support import Ctx, Req
from crypto import p256
from crypto import p256_verify as p256v
from link import LinkError
from link.codes import (
    ERR_DENIED,
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    ERR_PIN_BLOCKED,
    ERR_PIN_INVALID,
    ERR_TIMEOUT,
    ERR_WRONG_STATE,
    KA_PROCESSING,
    KA_WAITING_FOR_USER,
)
from ui.test_fakeboard import accept, settle, text, until

PIN = "123456"


async def _start():
    ctx = Ctx()
    app_key.NOTICE_MS = 50
    app = app_key.install(ctx)
    task = asyncio.create_task(ctx.ui.run())
    await settle()
    return ctx, app, task


async def _stop(ctx, task):
    task.cancel()
    await settle(5)
    ctx.ui.close()


async def _typ(b, keys):
    for k in keys:
        b.press(k)
        await asyncio.sleep_ms(3)
    await settle()


def _call(ctx, cmd, payload=b"", req=None):
    return asyncio.create_task(ctx.link.handlers[cmd](req or Req(payload)))


async def _result(task):
    await until(lambda: task.done(), 3000)
    return task.result() if hasattr(task, "result") else await task


async def _error(task):
    try:
        await task
    except LinkError as e:
        return e
    raise AssertionError("no LinkError")


async def _generate_first(ctx, slot=0, puk="87654321"):
    # FACTORY: confirm, choose the PIN twice, then the PUK twice.
    b = ctx.board
    req = Req(bytes((slot,)))
    t = _call(ctx, app_key.CMD_GENERATE, req=req)
    await until(lambda: "Nouvelle clé" in text(ctx.ui))
    await _typ(b, "D")
    await until(lambda: "Choisissez votre code PIN" in text(ctx.ui))
    await _typ(b, PIN + "D")
    await until(lambda: "Confirmez le code PIN" in text(ctx.ui))
    await _typ(b, PIN + "D")
    await until(lambda: "Choisissez votre code PUK" in text(ctx.ui))
    await _typ(b, puk + "D")
    await until(lambda: "Confirmez le code PUK" in text(ctx.ui))
    if puk in text(ctx.ui):
        raise AssertionError("the PUK shows on the screen")
    await _typ(b, puk + "D")
    att = await t
    if KA_WAITING_FOR_USER not in req.statuses or KA_PROCESSING not in req.statuses:
        raise AssertionError("keepalives %r" % req.statuses)
    return att, puk


async def _generate(ctx, slot):
    t = _call(ctx, app_key.CMD_GENERATE, bytes((slot,)))
    await until(lambda: "Nouvelle clé" in text(ctx.ui))
    await _typ(ctx.board, "D")
    await until(lambda: "Code PIN" in text(ctx.ui))
    await _typ(ctx.board, PIN + "D")
    return await t


async def _load(ctx, slot, der, chunk=100):
    for off in range(0, len(der), chunk):
        part = der[off : off + chunk]
        p = bytes((slot, off >> 8, off & 0xFF, len(der) >> 8, len(der) & 0xFF)) + part
        await _call(ctx, app_key.CMD_LOAD_CERT, p)


async def _sign(ctx, payload, pin=PIN, pick=None, listed=None):
    # listed: the rows the certificate choice shows under its title, when there is one
    t = _call(ctx, app_key.CMD_SIGN, payload)
    await until(lambda: "Signature" in text(ctx.ui))
    await accept(ctx.ui, ctx.board)
    if pick is not None:
        await until(lambda: "Sélectionnez" in text(ctx.ui))
        if listed is not None and ctx.ui.snapshot()[1][2:] != listed:
            raise AssertionError("choice %r" % ctx.ui.snapshot()[1])
        await _typ(ctx.board, pick)
    await until(lambda: "Code PIN" in text(ctx.ui))
    await _typ(ctx.board, pin)
    if pin in text(ctx.ui) or "*" * len(pin) not in text(ctx.ui):
        raise AssertionError("PIN not masked: " + text(ctx.ui))
    await _typ(ctx.board, "D")
    return t


async def test_enrol_and_sign_through_the_keypad():
    ctx, app, task = await _start()
    st = await _call(ctx, app_key.CMD_STATUS)
    if st != bytes((1, 0, 8, 3, 8, 3, 4, 0, 0, 1, 0, 2, 0, 3, 0)):
        raise AssertionError("factory status %r" % st)
    apub = await _call(ctx, app_key.CMD_ATTESTATION_KEY)
    att, _ = await _generate_first(ctx, 0)
    stmt = att[:-64]
    if stmt[:6] != b"CKAT\x01\x00" or not p256v.verify(apub, hashlib.sha256(stmt).digest(), att[-64:]):
        raise AssertionError("attestation")
    pub = stmt[-65:]
    e = await _error(_call(ctx, app_key.CMD_SIGN, _payload()))
    if e.code != ERR_NOT_PERSONALISED:
        raise AssertionError("sign without certificate")
    der = _cert(pub, "Alice Martin")
    await _load(ctx, 0, der)
    st = await _call(ctx, app_key.CMD_STATUS)
    if st[1:7] != bytes((1, 8, 3, 8, 3, 4)) or st[7:9] != b"\x00\x03" or st[9:74] != pub:
        raise AssertionError("status %r" % st)
    got = b""
    while len(got) < len(der):
        r = await _call(ctx, app_key.CMD_READ_CERT, bytes((0, len(got) >> 8, len(got) & 0xFF)))
        got += r[2:]
    if got != der or await _call(ctx, app_key.CMD_READ_CERT, b"\x00") != der:
        raise AssertionError("read back certificate")
    if await _call(ctx, app_key.CMD_READ_CERT, b"\x01") != b"":
        raise AssertionError("no certificate reads as empty")
    pay = _payload("payment")
    t = await _sign(ctx, pay)
    await until(lambda: t.done())
    out = await t
    if out[0] != 0 or not p256v.verify(pub, hashlib.sha256(pay).digest(), out[1:]):
        raise AssertionError("signature")
    await _stop(ctx, task)


async def test_the_payload_parser_and_the_certificate_der_never_share_the_heap_with_the_crypto():
    # The applet checks a SIGN payload with the parser loaded, and the slots' certificates are
    # read with the DER module (applets/x509.py) loaded, then the crypto is loaded for the PIN
    # check, then P-256 for the key and the signature, each part once the one before has gone
    # (signer.py, _Crypto and _P256), and GENERATE's and SIGN's dialogue modules are gone before
    # P-256 (commands/key.py finish(); a new key's SETUP runs in its dialogue): what is loaded is
    # noted at every on-demand load.
    import sys

    import ondemand

    ctx, app, task = await _start()
    seen = []
    der = []
    both = []  # the sealing code and P-256 loaded together
    dialogue = []  # GENERATE's or SIGN's dialogue module and P-256 loaded together
    real = ondemand.Use._load

    def spy(use):
        mods = real(use)
        m = sys.modules
        der.append("applets.x509" in m)
        seen.append(("applets.payload" in m or "applets.x509" in m, "crypto.sealed" in m))
        asked = [n for u in ondemand._open for n in u.names]  # p256 is resident in this test
        both.append(("crypto.sealed" in asked, "crypto.p256" in asked))
        dialogue.append(("commands.key_sign" in asked or "commands.key_admin" in asked,
                         "crypto.p256" in asked))
        return mods

    ondemand.Use._load = spy
    try:
        _, _ = await _generate_first(ctx, 0)
        pub = (await _call(ctx, app_key.CMD_STATUS))[9:74]
        await _load(ctx, 0, _cert(pub, "Alice Martin"))
        t = await _sign(ctx, _payload("payment"))
        await until(lambda: t.done())
        if len(await t) != 65:
            raise AssertionError("no signature")
    finally:
        ondemand.Use._load = real
    if not any(s[0] for s in seen) or not any(s[1] for s in seen) or not any(der):
        raise AssertionError("no parser, DER or crypto seen: %r" % seen)
    if (True, True) in seen:
        raise AssertionError("the parser or the DER and the crypto were loaded together: %r" % seen)
    if (True, True) in both or (False, True) not in both:
        raise AssertionError("the sealing code and P-256 (GENERATE, SIGN): %r" % both)
    if (True, True) in dialogue or (False, True) not in dialogue:
        raise AssertionError("GENERATE's or SIGN's dialogue with P-256: %r" % dialogue)
    await _stop(ctx, task)


async def test_payment_screen_cancel_wrong_pin_and_refusals():
    ctx, app, task = await _start()
    att, _ = await _generate_first(ctx, 0)
    await _load(ctx, 0, _cert(att[-129:-64]))
    # a non-canonical payload is refused before anything is shown
    e = await _error(_call(ctx, app_key.CMD_SIGN, _payload()[:-1]))
    if e.code != ERR_INVALID_PARAMETER:
        raise AssertionError("bad payload")
    # the payment is shown as in docs/payloads.md, ANNULER aborts
    t = _call(ctx, app_key.CMD_SIGN, _payload())
    await until(lambda: "Virement" in text(ctx.ui))
    shown = text(ctx.ui)
    for want in ("1 250,00 EUR", "vers FR76 3000"):
        if want not in shown:
            raise AssertionError("payment screen: " + shown)
    await _typ(ctx.board, "*")
    e = await _error(t)
    if e.code != ERR_DENIED:
        raise AssertionError("ANNULER")
    # wrong PIN: tries left on screen and in the error
    t = await _sign(ctx, _payload(), pin="999999")
    await until(lambda: "incorrect" in text(ctx.ui))
    e = await _error(t)
    if e.code != ERR_PIN_INVALID or bytes(e.args[1] if len(e.args) > 1 else e.payload) != b"\x02":
        raise AssertionError("wrong PIN error")
    await _stop(ctx, task)


async def test_several_certificates_ask_which_one():
    ctx, app, task = await _start()
    att, _ = await _generate_first(ctx, 0)
    await _load(ctx, 0, _cert(att[-129:-64], "Alice Pro"))
    att2 = await _generate(ctx, 2)
    await _load(ctx, 2, _cert(att2[-129:-64], "Alice Perso"))
    # numbered once, by the keys that pick them (the PIN prompt then says « 3 Alice Perso »)
    t = await _sign(ctx, _payload("login"), pick="2", listed=["1 Alice Pro", "2 Alice Perso"])
    out = await t
    if out[0] != 2 or not p256v.verify(att2[-129:-64], hashlib.sha256(_payload("login")).digest(), out[1:]):
        raise AssertionError("signed with the chosen certificate")
    e = await _error(_call(ctx, app_key.CMD_GENERATE, b"\x02"))
    if e.code != ERR_WRONG_STATE:
        raise AssertionError("generate over a key")
    await _stop(ctx, task)


async def test_lockout_then_puk_unblock_through_the_menu():
    ctx, app, task = await _start()
    att, puk = await _generate_first(ctx, 0)
    await _load(ctx, 0, _cert(att[-129:-64]))
    for _ in range(3):
        t = await _sign(ctx, _payload(), pin="999999")
        await _error(t)
    e = await _error(_call(ctx, app_key.CMD_SIGN, _payload()))
    if e.code != ERR_PIN_BLOCKED:
        raise AssertionError("locked until power-up")
    # unblock from the link: PUK, new PIN twice
    t = _call(ctx, app_key.CMD_UNBLOCK_PIN)
    await until(lambda: "PUK" in text(ctx.ui))
    await _typ(ctx.board, puk + "D")
    await until(lambda: "Nouveau" in text(ctx.ui))
    await _typ(ctx.board, "2468024D")
    await until(lambda: "Confirmez" in text(ctx.ui))
    await _typ(ctx.board, "2468024D")
    await t
    st = await _call(ctx, app_key.CMD_STATUS)
    if st[2:6] != bytes((8, 3, 8, 3)):
        raise AssertionError("counters after unblock %r" % st)
    t = await _sign(ctx, _payload(), pin="2468024")
    out = await t
    if not p256v.verify(att[-129:-64], hashlib.sha256(_payload()).digest(), out[1:]):
        raise AssertionError("sign with the new PIN")
    await _stop(ctx, task)


async def test_load_cert_chunk_rules():
    ctx, app, task = await _start()
    e = await _error(_call(ctx, app_key.CMD_LOAD_CERT, bytes((0, 0, 0, 0, 10)) + bytes(10)))
    if e.code != ERR_NOT_PERSONALISED:
        raise AssertionError("no key")
    att, _ = await _generate_first(ctx, 1)
    der = _cert(att[-129:-64])
    n = len(der)
    for bad in (
        bytes((1, 0, 5, n >> 8, n & 0xFF)) + der[5:20],  # does not start at 0
        bytes((4, 0, 0, n >> 8, n & 0xFF)) + der,  # bad slot
        bytes((1, 0, 0, 0, 3)) + der[:10],  # more than total
        bytes((1, 0, 0, 0x10, 0)) + der[:10],  # total over the limit
    ):
        e = await _error(_call(ctx, app_key.CMD_LOAD_CERT, bad))
        if e.code != ERR_INVALID_PARAMETER:
            raise AssertionError("chunk accepted %r" % bad[:5])
    other = _cert(p256.public_key(777))
    e = await _error(_call(ctx, app_key.CMD_LOAD_CERT, bytes((1, 0, 0, len(other) >> 8, len(other) & 0xFF)) + other))
    if e.code != ERR_INVALID_PARAMETER:
        raise AssertionError("certificate of another key")
    await _load(ctx, 1, der, 7)
    st = await _call(ctx, app_key.CMD_STATUS)
    if st[7 + 2 + 1] != 3:
        raise AssertionError("slot 1 flags %r" % st)
    await _call(ctx, app_key.CMD_LOAD_CERT, b"\x01" + der)  # the one-frame form
    e = await _error(_call(ctx, app_key.CMD_LOAD_CERT, b"\x01\x30"))
    if e.code != ERR_INVALID_PARAMETER:
        raise AssertionError("a 1-byte DER accepted")
    await _stop(ctx, task)


async def test_timeout_and_host_cancel_end_the_dialogue():
    ctx, app, task = await _start()
    att, _ = await _generate_first(ctx, 0)
    await _load(ctx, 0, _cert(att[-129:-64]))
    # no key pressed: the payload screen times out -> ERR_TIMEOUT
    ctx.ui.INPUT_MS = 150
    t = _call(ctx, app_key.CMD_SIGN, _payload())
    await until(lambda: "Virement" in text(ctx.ui))
    e = await _error(t)
    if e.code != ERR_TIMEOUT:
        raise AssertionError("timeout -> %r" % e.code)
    ctx.ui.INPUT_MS = 60000
    # the host cancels while the person types the PIN: the task ends, the home screen comes back
    t = _call(ctx, app_key.CMD_SIGN, _payload())
    await until(lambda: "Virement" in text(ctx.ui))
    await accept(ctx.ui, ctx.board)
    await until(lambda: "Code PIN" in text(ctx.ui))
    await _typ(ctx.board, "123")
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("not cancelled")
    await until(lambda: "Choisir la fonction" in text(ctx.ui))
    st = await _call(ctx, app_key.CMD_STATUS)
    if st[2] != 8:
        raise AssertionError("a cancelled dialogue spent a try")
    await _stop(ctx, task)


async def test_first_use_refuses_a_puk_equal_to_the_pin_and_mismatches():
    ctx, app, task = await _start()
    b = ctx.board
    t = _call(ctx, app_key.CMD_GENERATE, b"\x01")
    await until(lambda: "Nouvelle clé" in text(ctx.ui))
    await _typ(b, "D")
    for keys, screen in (("12345678D", "Confirmez le code PIN"), ("12345670D", "correspondent"),
                         ("12345678D", "Confirmez le code PIN"), ("12345678D", "Choisissez votre code PUK"),
                         ("12345678D", "Confirmez le code PUK"), ("12345678D", "différer"),
                         ("87654321D", "Confirmez le code PUK"), ("87654321D", None)):
        await until(lambda: "Choisissez" in text(ctx.ui) or "Confirmez" in text(ctx.ui), 3000)
        await _typ(b, keys)
        if screen is not None:
            await until(lambda: screen in text(ctx.ui), 3000)
    att = await t
    if att[:6] != b"CKAT\x01\x01":
        raise AssertionError("attestation")
    st = await _call(ctx, app_key.CMD_STATUS)
    if st[1] != 1:
        raise AssertionError("not set up")
    await _stop(ctx, task)


async def test_failure_counts_are_shared_by_overlapping_uses():
    # A STATUS arriving while the MENU's unblock still shows "débloqué" (its use still open)
    # must see the counts the unblock reset, not a copy taken when its own use began.
    ctx, app, task = await _start()
    att, puk = await _generate_first(ctx, 0)
    await _load(ctx, 0, _cert(att[-129:-64]))
    for _ in range(2):
        await _error(await _sign(ctx, _payload(), pin="999999"))
    st = await _call(ctx, app_key.CMD_STATUS)
    if st[3] != 1:
        raise AssertionError("PIN tries now %d" % st[3])
    ctx.ui.NOTICE_MS = 50
    app.notice_ms = 2000  # the "débloqué" notice stays while we ask
    try:
        b = ctx.board
        await _typ(b, "#")
        await until(lambda: "Débloquer" in text(ctx.ui))
        await _typ(b, "3")
        await until(lambda: "PUK" in text(ctx.ui))
        await _typ(b, puk + "D")
        await until(lambda: "Nouveau" in text(ctx.ui))
        await _typ(b, "2468024D")
        await until(lambda: "Confirmez" in text(ctx.ui))
        await _typ(b, "2468024D")
        await until(lambda: "débloqué" in text(ctx.ui))
        st = await _call(ctx, app_key.CMD_STATUS)
        if st[2:6] != bytes((8, 3, 8, 3)):
            raise AssertionError("status during the notice %r" % bytes(st[2:6]))
    finally:
        app.notice_ms = 50
    await _stop(ctx, task)
