# The CAP reader function's link command bodies (0x20-0x25, docs/protocol.md "CAP commands"),
# loaded on demand.
#
# apps/cap.py (resident) loads this module with ondemand.use("commands.cap") while a command runs
# and drops it after; with it come commands/cap_code.py (the card, the PIN prompt, the code on
# screen, the notice of a refusal: the keypad dialogues of flows/cap.py load it without this
# module), the soft card (applets/emv_card.py), DES and the MACs. The reader state machine
# (reader/cap.py) is loaded by cap_code.code() only while the card computes, after the card's
# secrets are unsealed: the reader and the sealing code (AES, HMAC) never share the heap, whose
# peak they set together. Every function takes the resident CapApp (`app`: ui, store, the PC/SC
# switch and the card it holds while the mode is on) and returns plain values (str, bytes, tuples
# of labels), never an object of these modules, so that nothing of them outlives the use. A
# command that needs the person is checked first in a use of its own (wipe_check,
# get_code_check), then runs its dialogue in another once apps/cap.py holds the screen.
import reader
from applets import emv_card
from applets.emv_card import CardStateError
from commands.cap_code import (
    AMOUNT,
    CHALLENGE,
    RESPOND,
    SIGNATURE,
    TDS,
    Refused,
    ask_pin,
    card,
    code,
    mask_pan,
    personalised,
    zero,
)
from link import LinkError
from link.codes import (
    ERR_ALREADY_PERSONALISED,
    ERR_DENIED,
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    ERR_TIMEOUT,
    ERR_WRONG_STATE,
    KA_PROCESSING,
    KA_WAITING_FOR_USER,
)
from micropython import const
from ui.screen import format_amount

_NOTICE_MS = const(3000)  # a refusal's notice must not hold the reply for long

# CARD_STATUS state byte
STATE_FACTORY = const(0)
STATE_PERSONALISED = const(1)
STATE_ERROR = const(2)  # the card records cannot be read: only WIPE helps

_IDENTIFY = const("Identification")
_ERASE_ASK = const("Effacer la carte ?")
_CONNECTED = const("Demande de l'ordinateur")

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
