# The CAP card's link commands other than GET_CODE (docs/protocol.md "CAP commands"):
# CARD_STATUS, PERSONALISE, WIPE, and the PC/SC mode's APDU and CARD_RESET, loaded on demand like
# commands/cap.py (apps/cap.py), with commands/cap_code.py, the soft card, DES and the MACs but
# not the reader. In PC/SC mode the CapApp holds this module and the card it loaded.
from applets import emv_card
from applets.emv_card import CardStateError
from commands.cap_code import CONNECTED, answer, card, mask_pan, personalised, zero
from link import LinkError
from link.codes import (
    ERR_ALREADY_PERSONALISED,
    ERR_DENIED,
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    ERR_WRONG_STATE,
    KA_WAITING_FOR_USER,
)
from micropython import const

# CARD_STATUS state byte
STATE_FACTORY = const(0)
STATE_PERSONALISED = const(1)
STATE_ERROR = const(2)  # the card records cannot be read: only WIPE helps

_ERASE_ASK = const("Effacer la carte ?")


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
    if not await ui.confirm(lines, title=CONNECTED):
        raise answer(ui)
    if c is not None:
        c.wipe()
    else:
        app.store.delete(emv_card.CARD_RECORD)
        app.store.delete(emv_card.STATE_RECORD)
    app.pcsc_stop()
    return b""


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
