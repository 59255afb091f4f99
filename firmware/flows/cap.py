# The CAP reader function's dialogues and link command bodies, loaded on demand.
#
# apps/cap.py (resident) loads this module with ondemand.use("flows.cap") while a keypad flow or
# a link command runs and drops it after; with it come the soft card (applets/emv_card.py), the
# reader state machine (reader/cap.py), DES and the MACs. Every function takes the resident
# CapApp (`app`: ui, store, the PC/SC switch and the card it holds while the mode is on) and
# returns plain values (str, bytes, tuples of labels), never an object of these modules, so that
# nothing of them outlives the use.
#
# The PIN is typed on the keypad only (except the issuer's PERSONALISE, at the factory): the
# digits live in a bytearray wiped after the VERIFY, never in a str, never on the screen.
# Wrong PIN: the screen says "Code PIN incorrect" and the tries left (docs/cap.md §10.5).
from time import ticks_diff, ticks_ms

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
from reader import cap as rd
from ui import i18n
from ui.inputs import format_amount

MODE_IDENTIFY = rd.MODE_IDENTIFY
MODE_RESPOND = rd.MODE_RESPOND
MODE_SIGN = rd.MODE_SIGN
MODE_TDS = rd.MODE_TDS
_MAX_TDS_FIELDS = rd.MAX_TDS_FIELDS
_MAX_FIELD_DIGITS = rd.MAX_FIELD_DIGITS

# CARD_STATUS state byte
STATE_FACTORY = const(0)
STATE_PERSONALISED = const(1)
STATE_ERROR = const(2)  # the card records cannot be read: only WIPE helps

_SIGN = "SIGN"
_RESPOND = "Réponse"
_SIGNATURE = "Signature"
_TDS = "Signer données"
_IDENTIFY = "Identification"
_CHALLENGE = "Code défi"
_AMOUNT = "Montant"
_FIELD = "Donnée"
_FIELD_HINT = "OK sans chiffre : fin"
_YOUR_CODE = "Votre code"
_NO_CARD = "Carte non personnalisée"
_CARD_ERROR = "Erreur carte"
_CARD_REFUSED = "Carte refusée"
_CALL_BANK = "Contactez votre banque"
_PCSC_MENU = "Lecteur PC/SC"
_PCSC_ON = "Mode lecteur PC/SC activé"
_PCSC_OFF = "Mode lecteur PC/SC désactivé"
_PCSC_ASK = "Activer le lecteur PC/SC ? L'ordinateur pourra parler à la carte"
_ERASE_ASK = "Effacer la carte ?"
_CONNECTED = "Demande de l'ordinateur"
_TRIES = "Essais restants"


def mask_pan(pan):
    """BCD PAN (F-padded) -> "476173******0010": first 6 and last 4 digits."""
    digits = ""
    for b in pan:
        for d in (b >> 4, b & 15):
            if d < 10:
                digits += chr(48 + d)
    n = len(digits)
    return digits[:6] + "*" * (n - 10) + digits[-4:] if n > 10 else "*" * n


def _group(s):
    # "23710189" -> "2371 0189" for reading off the screen
    out = ""
    for i in range(0, len(s), 4):
        out += (" " if out else "") + s[i : i + 4]
    return out


def _wipe(buf):
    for i in range(len(buf)):
        buf[i] = 0


# -- the card ---------------------------------------------------------------------------------
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


def _personalised(c):
    return c is not None and c.personalised


async def _say(ui, lines, req=None):
    # a short notice; in connected mode it must not hold the reply for a minute
    await ui.message(lines, timeout_ms=(5000 if req is None else 3000))


async def _needs_card(ui, c):
    if _personalised(c):
        return True
    await _say(ui, (_CARD_ERROR if c is None else _NO_CARD,))
    return False


# -- the computation shared by the keypad and connected mode --------------------------------
async def _run(app, ui, c, mode, challenge=None, amount=None, fields=None, req=None):
    """PIN on the keypad, the code on screen -> the code as str, or None (the reason was shown).
    With req (connected mode) errors become LinkError."""
    pin = await ui.digits(i18n.PIN, 4, 12, masked=True)
    if pin is None:
        if req is not None:
            raise LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
        return None
    try:
        return await _transaction(app, ui, c, mode, pin, challenge, amount, fields, req)
    finally:
        _wipe(pin)


async def _transaction(app, ui, c, mode, pin, challenge, amount, fields, req):
    t0 = ticks_ms()
    try:
        if req is not None:
            await req.keepalive(KA_PROCESSING)
        ui.show((i18n.WAIT,))
        c.power_on()
        code = rd.CapReader(c.process).code(mode, pin, challenge, amount, fields)
    except rd.WrongPin as e:
        await _say(ui, (i18n.PIN_WRONG, _TRIES + " : %d" % e.tries_left), req)
        if req is not None:
            raise LinkError(ERR_PIN_INVALID, bytes((e.tries_left,)))
        return None
    except rd.PinBlocked:
        await _say(ui, (i18n.PIN_BLOCKED, _CALL_BANK), req)
        if req is not None:
            raise LinkError(ERR_PIN_BLOCKED)
        return None
    except rd.ReaderError as e:
        msg = _CARD_REFUSED if e.reason == rd.ReaderError.DECLINED else _CARD_ERROR
        await _say(ui, (msg,), req)
        if req is not None:
            raise LinkError(ERR_INTERNAL)
        return None
    text = str(code)
    ui.show(("", text, "", i18n.HINT_OK), title=_YOUR_CODE)
    app.last_code_ms = ticks_diff(ticks_ms(), t0)
    return text


# -- keypad flows: each returns the code to leave on screen, or None -------------------------
async def code_flow(app, ui):
    c = card(app)
    if not await _needs_card(ui, c):
        return None
    return await _run(app, ui, c, MODE_IDENTIFY)


async def sign_flow(app, ui):
    c = card(app)
    if not await _needs_card(ui, c):
        return None
    i = await ui.choose(_SIGN, (_RESPOND, _SIGNATURE, _TDS))
    if i is None:
        return None
    challenge = amount = fields = None
    if i in (0, 1):
        d = await ui.digits(_CHALLENGE, 1, 8)
        if d is None:
            return None
        challenge = str(d, "ascii")
    if i == 1:
        v = await ui.amount(_AMOUNT, max_digits=12)
        if v is None:
            return None
        amount = str(v)
    if i == 2:
        fields = []
        while len(fields) < _MAX_TDS_FIELDS:
            title = _FIELD + " %d" % (len(fields) + 1)
            f = await ui.digits(title, 0 if fields else 1, _MAX_FIELD_DIGITS,
                                prompt_lines=(_FIELD_HINT,) if fields else ())
            if f is None:
                return None
            if not f:
                break
            fields.append(str(f, "ascii"))
    mode = (MODE_RESPOND, MODE_SIGN, MODE_TDS)[i]
    return await _run(app, ui, c, mode, challenge, amount, fields)


def card_lines(app, ui):
    """What the "Carte CAP" menu entry shows: (lines, title)."""
    c = card(app)
    if not _personalised(c):
        return (_CARD_ERROR if c is None else _NO_CARD,), None
    lines = (
        emv_card.PROFILE_NAMES[c.profile_id],
        mask_pan(c.pan),
        _TRIES + " : %d/%d" % (c.tries, c.try_limit),
        "ATC : %d" % c.atc,
    )
    return lines, None


async def pcsc_menu(app, ui):
    if app.pcsc_on():
        app.pcsc_stop()
        await _say(ui, (_PCSC_OFF,))
        return
    if await ui.confirm((_PCSC_ASK,), title=_PCSC_MENU):
        c = card(app)
        # the card stays in RAM while the mode is on: its transaction state lives between APDUs
        app.pcsc_start(c)
        await _say(ui, (_PCSC_ON,))


# -- link commands ----------------------------------------------------------------------------
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
    if _personalised(c):
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
        _wipe(data)
        _wipe(req.payload)
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
        raise LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
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
    if not _personalised(card(app)):
        raise LinkError(ERR_NOT_PERSONALISED)
    return args


async def get_code(app, ui, req, args):
    """In the foreground: the person approves what the host asks, types the PIN -> the code."""
    mode, challenge, amount, currency, fields = args
    c = card(app)
    if not _personalised(c):
        raise LinkError(ERR_NOT_PERSONALISED)
    await req.keepalive(KA_WAITING_FOR_USER)
    if not await ui.confirm(_describe(ui, mode, challenge, amount, currency, fields),
                            title=_CONNECTED):
        raise LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
    return await _run(app, ui, c, mode, challenge, amount, fields, req)


def _pcsc_card(app):
    if not app.pcsc_on():
        raise LinkError(ERR_DENIED)
    c = card(app)
    if not _personalised(c):
        raise LinkError(ERR_NOT_PERSONALISED)
    app.pcsc_keep(c)  # again in RAM if another use's need for memory made it go
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
    if mode == MODE_IDENTIFY:
        ok = not items
    elif mode == MODE_RESPOND:
        ok = len(items) == 1 and _digits_ok(items[0], 1, 8)
        if ok:
            challenge = items[0].decode()
    elif mode == MODE_SIGN:
        ok = 2 <= len(items) <= 3 and _digits_ok(items[0], 1, 8) and _digits_ok(items[1], 1, 12)
        if ok and len(items) == 3:
            ok = len(items[2]) == 3 and all(0x41 <= c <= 0x5A for c in items[2])
            currency = items[2].decode() if ok else None
        if ok:
            challenge = items[0].decode()
            amount = items[1].decode()
            ok = int(amount) > 0
    elif mode == MODE_TDS:
        ok = 1 <= len(items) <= _MAX_TDS_FIELDS
        for f in items:
            ok = ok and _digits_ok(f, 1, _MAX_FIELD_DIGITS)
        if ok:
            fields = [f.decode() for f in items]
    else:
        ok = False
    if not ok:
        raise LinkError(ERR_INVALID_PARAMETER)
    return mode, challenge, amount, currency, fields


def _describe(ui, mode, challenge, amount, currency, fields):
    # What the person is asked to approve, in full, before typing the PIN.
    if mode == MODE_IDENTIFY:
        return [_IDENTIFY]
    if mode == MODE_RESPOND:
        return [_RESPOND, _CHALLENGE + " :", _group(challenge)]
    if mode == MODE_SIGN:
        return [_SIGNATURE, _AMOUNT + " :", format_amount(int(amount)) + " " + (currency or ""),
                _CHALLENGE + " :", _group(challenge)]
    lines = [_TDS]
    for i, f in enumerate(fields):
        lines.append("%d: %s" % (i + 1, f))
    return lines
