# The CAP reader function's GET_CODE (0x23, docs/protocol.md "CAP commands"), loaded on demand;
# the card's other commands are in commands/cap_card.py.
#
# apps/cap.py (resident) loads this module with ondemand.use("commands.cap") while a GET_CODE
# is checked and while the person approves it, and drops it before the PIN: the PIN, the code on
# screen and the notice of a refusal are commands/cap_code.py's (the keypad dialogues of
# flows/cap.py use them too), which apps/cap.py keeps loaded around this module, with the soft
# card (applets/emv_card.py), DES and the MACs. The reader state machine (reader/cap.py) is
# loaded by cap_code.code() only while the card computes, after the card's secrets are unsealed:
# the reader and the sealing code (AES, HMAC) never share the heap, whose peak they set together,
# and neither this module nor flows/cap.py is loaded beside the reader. Every function takes the
# resident CapApp (`app`: ui, store, the PC/SC switch and the card it holds while the mode is on)
# and returns plain values (str, bytes, tuples of labels, the card for cap_code.pin_and_code while
# apps/cap.py keeps cap_code's use open), never an object of these modules that outlives the use. A
# command that needs the person is checked first in a use of its own (get_code_check), then runs
# its dialogue in another once apps/cap.py holds the screen.
import reader
from commands.cap_code import (
    AMOUNT,
    CHALLENGE,
    CONNECTED,
    RESPOND,
    SIGNATURE,
    TDS,
    answer,
    card,
    personalised,
)
from link import LinkError
from link.codes import (
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    KA_WAITING_FOR_USER,
)
from micropython import const
from ui.screen import format_amount

_IDENTIFY = const("Identification")

# -- the commands ---------------------------------------------------------------------------
def _group(s):
    # "23710189" -> "2371 0189" for reading off the screen
    out = ""
    for i in range(0, len(s), 4):
        out += (" " if out else "") + s[i : i + 4]
    return out


def get_code_check(app, req):
    """The request, checked before the person is asked: (mode, challenge, amount, currency,
    fields) of plain str values."""
    args = _parse_get_code(req.payload)
    if not personalised(card(app)):
        raise LinkError(ERR_NOT_PERSONALISED)
    return args


async def get_code(app, ui, req, args):
    """In the foreground: the person approves what the host asks -> what the card computes a
    code for (cap_code.pin_and_code, once this module is gone)."""
    mode, challenge, amount, currency, fields = args
    c = card(app)
    if not personalised(c):
        raise LinkError(ERR_NOT_PERSONALISED)
    await req.keepalive(KA_WAITING_FOR_USER)
    if not await ui.confirm(_describe(ui, mode, challenge, amount, currency, fields),
                            title=CONNECTED):
        raise answer(ui)
    return c, mode, challenge, amount, fields


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
