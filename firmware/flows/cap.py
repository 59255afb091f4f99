# The CAP reader function's keypad dialogues, loaded on demand.
#
# apps/cap.py (resident) loads this module with ondemand.use("flows.cap") while a keypad flow
# asks its questions and drops it before the PIN: the PIN and the code are commands/cap_code.py's
# (the pieces the link commands use too), which apps/cap.py keeps loaded around this module, with
# the soft card and DES; the reader comes in this module's place while the card computes.
import reader
from commands import cap_code
from micropython import const

_SIGN = const("SIGN")
_FIELD = const("Donnée")
_FIELD_HINT = const("OK sans chiffre : fin")
_NO_CARD = const("Carte non personnalisée")
_PCSC_MENU = const("Lecteur PC/SC")
_PCSC_ON = const("Mode lecteur PC/SC activé")
_PCSC_OFF = const("Mode lecteur PC/SC désactivé")
_PCSC_ASK = const("Activer le lecteur PC/SC ? L'ordinateur pourra parler à la carte")


async def _needs_card(ui, c):
    if cap_code.personalised(c):
        return True
    await ui.message((cap_code.CARD_ERROR if c is None else _NO_CARD,), timeout_ms=cap_code.NOTICE_MS)
    return False


# -- each flow returns what the card computes a code for (cap_code.pin_and_code), or None -----
async def code_flow(app, ui):
    c = cap_code.card(app)
    if not await _needs_card(ui, c):
        return None
    return c, reader.MODE_IDENTIFY, None, None, None


async def sign_flow(app, ui):
    c = cap_code.card(app)
    if not await _needs_card(ui, c):
        return None
    i = await ui.choose(_SIGN, (cap_code.RESPOND, cap_code.SIGNATURE, cap_code.TDS))
    if i is None:
        return None
    challenge = amount = fields = None
    if i in (0, 1):
        d = await ui.digits(cap_code.CHALLENGE, 1, 8)
        if d is None:
            return None
        challenge = str(d, "ascii")
    if i == 1:
        v = await ui.amount(cap_code.AMOUNT, max_digits=12)
        if v is None:
            return None
        amount = str(v)
    if i == 2:
        fields = []
        while len(fields) < reader.MAX_TDS_FIELDS:
            title = _FIELD + " %d" % (len(fields) + 1)
            f = await ui.digits(title, 0 if fields else 1, reader.MAX_FIELD_DIGITS,
                                prompt_lines=(_FIELD_HINT,) if fields else ())
            if f is None:
                return None
            if not f:
                break
            fields.append(str(f, "ascii"))
    mode = (reader.MODE_RESPOND, reader.MODE_SIGN, reader.MODE_TDS)[i]
    return c, mode, challenge, amount, fields


def card_lines(app, ui):
    """What the "Carte CAP" menu entry shows: (lines, title)."""
    c = cap_code.card(app)
    if not cap_code.personalised(c):
        return (cap_code.CARD_ERROR if c is None else _NO_CARD,), None
    lines = (
        c.profile_name,
        cap_code.mask_pan(c.pan),
        cap_code.TRIES + " : %d/%d" % (c.tries, c.try_limit),
        "ATC : %d" % c.atc,
    )
    return lines, None


async def pcsc_menu(app, ui):
    if app.pcsc_on():
        app.pcsc_stop()
        await ui.message((_PCSC_OFF,), timeout_ms=cap_code.NOTICE_MS)
        return
    if await ui.confirm((_PCSC_ASK,), title=_PCSC_MENU):
        # the card stays in RAM while the mode is on: its transaction state lives between APDUs
        app.pcsc_start(cap_code.card(app), __name__)
        await ui.message((_PCSC_ON,), timeout_ms=cap_code.NOTICE_MS)
