# The CAP reader function's link command bodies (0x20-0x25, docs/protocol.md "CAP commands") and
# the pieces its keypad dialogues share with them (the card, the PIN prompt, the code on screen,
# the notice of a refusal: flows/cap.py imports them from here), loaded on demand.
#
# apps/cap.py (resident) loads this module with ondemand.use("commands.cap") while a command runs
# (flows/cap.py with it, while a keypad flow runs) and drops it after; with it come the soft card
# (applets/emv_card.py), DES and the MACs. The reader state machine (reader/cap.py) is loaded by
# code() only while the card computes, after the card's secrets are unsealed: the reader and the
# sealing code (AES, HMAC) never share the heap, whose peak they set together. The shared
# pieces live here, not in a module of their own, so that a command loads one module: each module
# more in a use leaves more holes in the heap (commands/key.py). Every function takes the
# resident CapApp (`app`: ui, store, the PC/SC switch and the card it holds while the mode is on)
# and returns plain values (str, bytes, tuples of labels), never an object of these modules, so
# that nothing of them outlives the use. A command that needs the person is checked first in a
# use of its own (wipe_check, get_code_check), then runs its dialogue in another once
# apps/cap.py holds the screen.
#
# The PIN is typed on the keypad only (except the issuer's PERSONALISE, at the factory): the
# digits live in a bytearray wiped after the VERIFY, never in a str, never on the screen.
# Wrong PIN: the screen says "Code PIN incorrect" and the tries left (docs/cap.md §10.5).
from time import ticks_diff, ticks_ms

import ondemand
import reader
from applets import emv_card
from applets.emv_card import CardStateError, EmvCard
from link import LinkError
from link.codes import (
    ERR_ALREADY_PERSONALISED,
    ERR_DENIED,
    ERR_INTERNAL,
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    ERR_PIN_BLOCKED,
    ERR_PIN_INVALID,
    ERR_TIMEOUT,
    ERR_WRONG_STATE,
    KA_PROCESSING,
    KA_WAITING_FOR_USER,
)
from micropython import const
from ui import i18n
from ui.screen import format_amount

_NOTICE_MS = const(3000)  # a refusal's notice must not hold the reply for long

# CARD_STATUS state byte
STATE_FACTORY = const(0)
STATE_PERSONALISED = const(1)
STATE_ERROR = const(2)  # the card records cannot be read: only WIPE helps

_IDENTIFY = const("Identification")
_ERASE_ASK = const("Effacer la carte ?")
_CONNECTED = const("Demande de l'ordinateur")

# labels the keypad dialogues show too
RESPOND = "Réponse"
SIGNATURE = "Signature"
TDS = "Signer données"
CHALLENGE = "Code défi"
AMOUNT = "Montant"
CARD_ERROR = "Erreur carte"
TRIES = "Essais restants"

_CARD_REFUSED = const("Carte refusée")
_CALL_BANK = const("Contactez votre banque")


# -- the card, the PIN and the code: the keypad dialogues (flows/cap.py) use them too ---------
def mask_pan(pan):
    """BCD PAN (F-padded) -> "476173******0010": first 6 and last 4 digits."""
    digits = ""
    for b in pan:
        for d in (b >> 4, b & 15):
            if d < 10:
                digits += chr(48 + d)
    n = len(digits)
    return digits[:6] + "*" * (n - 10) + digits[-4:] if n > 10 else "*" * n


def zero(buf):
    for i in range(len(buf)):
        buf[i] = 0


def card(app):
    """The soft card: the one the PC/SC mode holds, or one loaded from the store now; None when
    its records cannot be read (store.CorruptRecord or an inconsistent state: only WIPE helps)."""
    if app.card is not None:
        return app.card
    try:
        return EmvCard(app.store)
    except MemoryError:
        raise  # no heap to open the sealed record now: busy, not unreadable
    except Exception:
        return None


def personalised(c):
    return c is not None and c.personalised


def ask_pin(ui):
    """The card PIN on the keypad (awaitable) -> bytearray the caller wipes, or None."""
    return ui.digits(i18n.PIN, 4, 12, masked=True)


class Refused(Exception):
    """The card gave no code: `lines` tell the person why, `error` and `payload` the host."""

    def __init__(self, lines, error, payload=b""):
        self.lines = lines
        self.error = error
        self.payload = payload


def code(app, ui, c, mode, pin, challenge=None, amount=None, fields=None):
    """The card computes, the code goes on screen -> the code as str; Refused when the card
    gives none (a wrong PIN, a blocked one, a declined or broken card)."""
    t0 = ticks_ms()
    ui.show((i18n.WAIT,))
    c.power_on()
    c.open()
    with ondemand.use("reader.cap") as rd:
        try:
            text = str(rd.CapReader(c.process).code(mode, pin, challenge, amount, fields))
        except rd.WrongPin as e:
            n = e.tries_left
            raise Refused((i18n.PIN_WRONG, TRIES + " : %d" % n), ERR_PIN_INVALID, bytes((n,)))
        except rd.PinBlocked:
            raise Refused((i18n.PIN_BLOCKED, _CALL_BANK), ERR_PIN_BLOCKED)
        except rd.ReaderError as e:
            declined = e.reason == rd.ReaderError.DECLINED
            raise Refused((_CARD_REFUSED if declined else CARD_ERROR,), ERR_INTERNAL)
    ui.show(*app.code_screen(text))
    app.last_code_ms = ticks_diff(ticks_ms(), t0)
    return text


# -- the commands ---------------------------------------------------------------------------
def _group(s):
    # "23710189" -> "2371 0189" for reading off the screen
    out = ""
    for i in range(0, len(s), 4):
        out += (" " if out else "") + s[i : i + 4]
    return out


def _answer(ui):
    # the person said no, or nothing
    return LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)


def status(app, req):
    if len(req.payload):
        raise LinkError(ERR_INVALID_PARAMETER)
    c = card(app)
    out = bytearray(8)
    if c is None:
        out[0] = STATE_ERROR
    elif c.personalised:
        out[0] = STATE_PERSONALISED
        out[1] = c.profile_id
        out[2] = c.tries
        out[3] = c.try_limit
        out[4] = c.atc >> 8
        out[5] = c.atc & 0xFF
        out[6] = c.psn
    out[7] = 1 if app.pcsc_on() else 0
    if personalised(c):
        out.extend(mask_pan(c.pan).encode())
    return out


def personalise(app, req):
    data = bytearray(req.payload)
    try:
        c = card(app)
        if c is None:
            raise LinkError(ERR_WRONG_STATE)
        if c.personalised:
            raise LinkError(ERR_ALREADY_PERSONALISED)
        try:
            c.personalise(data)
        except CardStateError:
            raise LinkError(ERR_ALREADY_PERSONALISED)
        except ValueError:
            raise LinkError(ERR_INVALID_PARAMETER)
    finally:
        zero(data)
        zero(req.payload)
    return b""


def wipe_check(app, req):
    if len(req.payload):
        raise LinkError(ERR_INVALID_PARAMETER)
    c = card(app)
    if c is not None and not c.personalised:
        raise LinkError(ERR_NOT_PERSONALISED)


async def wipe(app, ui, req):
    """In the foreground: the person confirms, then the card records go."""
    c = card(app)
    if c is not None and not c.personalised:
        raise LinkError(ERR_NOT_PERSONALISED)  # wiped by another request meanwhile
    await req.keepalive(KA_WAITING_FOR_USER)
    lines = [_ERASE_ASK]
    if c is not None:
        lines.append(mask_pan(c.pan))
    if not await ui.confirm(lines, title=_CONNECTED):
        raise _answer(ui)
    if c is not None:
        c.wipe()
    else:
        app.store.delete(emv_card.CARD_RECORD)
        app.store.delete(emv_card.STATE_RECORD)
    app.pcsc_stop()
    return b""


def get_code_check(app, req):
    """The request, checked before the person is asked: (mode, challenge, amount, currency,
    fields) of plain str values."""
    args = _parse_get_code(req.payload)
    if not personalised(card(app)):
        raise LinkError(ERR_NOT_PERSONALISED)
    return args


async def get_code(app, ui, req, args):
    """In the foreground: the person approves what the host asks, types the PIN -> the code."""
    mode, challenge, amount, currency, fields = args
    c = card(app)
    if not personalised(c):
        raise LinkError(ERR_NOT_PERSONALISED)
    await req.keepalive(KA_WAITING_FOR_USER)
    if not await ui.confirm(_describe(ui, mode, challenge, amount, currency, fields),
                            title=_CONNECTED):
        raise _answer(ui)
    pin = await ask_pin(ui)
    if pin is None:
        raise _answer(ui)
    try:
        await req.keepalive(KA_PROCESSING)
        return code(app, ui, c, mode, pin, challenge, amount, fields)
    except Refused as r:
        await ui.message(r.lines, timeout_ms=_NOTICE_MS)
        raise LinkError(r.error, r.payload)
    finally:
        zero(pin)


def _pcsc_card(app):
    if not app.pcsc_on():
        raise LinkError(ERR_DENIED)
    c = card(app)
    if not personalised(c):
        raise LinkError(ERR_NOT_PERSONALISED)
    app.pcsc_keep(c, __name__)  # again in RAM if another use's need for memory made it go
    app.pcsc_touch()  # activity keeps the mode on
    return c


def apdu(app, req):
    if not 4 <= len(req.payload) <= 261:
        raise LinkError(ERR_INVALID_PARAMETER)
    return _pcsc_card(app).process(bytes(req.payload))


def card_reset(app, req):
    if len(req.payload):
        raise LinkError(ERR_INVALID_PARAMETER)
    return _pcsc_card(app).power_on()


def _digits_ok(s, lo, hi):
    if not lo <= len(s) <= hi:
        return False
    for c in s:
        if not 0x30 <= c <= 0x39:
            return False
    return True


def _parse_get_code(p):
    """GET_CODE payload: mode u8, then length-prefixed ASCII strings (docs/protocol.md)."""
    if len(p) < 1:
        raise LinkError(ERR_INVALID_PARAMETER)
    mode = p[0]
    items = []
    pos = 1
    while pos < len(p):
        n = p[pos]
        if pos + 1 + n > len(p):
            raise LinkError(ERR_INVALID_PARAMETER)
        items.append(bytes(p[pos + 1 : pos + 1 + n]))
        pos += 1 + n
    challenge = amount = currency = fields = None
    if mode == reader.MODE_IDENTIFY:
        ok = not items
    elif mode == reader.MODE_RESPOND:
        ok = len(items) == 1 and _digits_ok(items[0], 1, 8)
        if ok:
            challenge = items[0].decode()
    elif mode == reader.MODE_SIGN:
        ok = 2 <= len(items) <= 3 and _digits_ok(items[0], 1, 8) and _digits_ok(items[1], 1, 12)
        if ok and len(items) == 3:
            ok = len(items[2]) == 3 and all(0x41 <= c <= 0x5A for c in items[2])
            currency = items[2].decode() if ok else None
        if ok:
            challenge = items[0].decode()
            amount = items[1].decode()
            ok = int(amount) > 0
    elif mode == reader.MODE_TDS:
        ok = 1 <= len(items) <= reader.MAX_TDS_FIELDS
        for f in items:
            ok = ok and _digits_ok(f, 1, reader.MAX_FIELD_DIGITS)
        if ok:
            fields = [f.decode() for f in items]
    else:
        ok = False
    if not ok:
        raise LinkError(ERR_INVALID_PARAMETER)
    return mode, challenge, amount, currency, fields


def _describe(ui, mode, challenge, amount, currency, fields):
    # What the person is asked to approve, in full, before typing the PIN.
    if mode == reader.MODE_IDENTIFY:
        return [_IDENTIFY]
    if mode == reader.MODE_RESPOND:
        return [RESPOND, CHALLENGE + " :", _group(challenge)]
    if mode == reader.MODE_SIGN:
        return [SIGNATURE, AMOUNT + " :", format_amount(int(amount)) + " " + (currency or ""),
                CHALLENGE + " :", _group(challenge)]
    lines = [TDS]
    for i, f in enumerate(fields):
        lines.append("%d: %s" % (i + 1, f))
    return lines
