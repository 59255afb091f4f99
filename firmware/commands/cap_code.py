# The CAP card, the PIN and the code: what the keypad dialogues (flows/cap.py) and the link
# commands (commands/cap.py) share, loaded on demand with either. A keypad flow loads this module
# and not the link command bodies.
#
# The PIN is typed on the keypad only (except the issuer's PERSONALISE, at the factory): the
# digits live in a bytearray wiped after the VERIFY, never in a str, never on the screen.
# Wrong PIN: the screen says "Code PIN incorrect" and the tries left (docs/cap.md §10.5).
from time import ticks_diff, ticks_ms

import ondemand
from applets.emv_card import EmvCard
from link import LinkError
from link.codes import (
    ERR_DENIED,
    ERR_INTERNAL,
    ERR_PIN_BLOCKED,
    ERR_PIN_INVALID,
    ERR_TIMEOUT,
    KA_PROCESSING,
)
from micropython import const
from ui import i18n

CONNECTED = const("Demande de l'ordinateur")  # the title of what the host asks for
# labels the keypad dialogues show too
RESPOND = "Réponse"
SIGNATURE = "Signature"
TDS = "Signer données"
CHALLENGE = "Code défi"
AMOUNT = "Montant"
CARD_ERROR = "Erreur carte"
TRIES = "Essais restants"

NOTICE_MS = 5000  # a notice on the keypad stays until OK or this long
_REFUSAL_MS = const(3000)  # a link request's: its notice must not hold the reply for long

_CARD_REFUSED = const("Carte refusée")
_CALL_BANK = const("Contactez votre banque")


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


async def pin_and_code(app, ui, job, req=None):
    """The PIN on the keypad, then the card's code on screen -> the code (str). `job` is (card,
    mode, challenge, amount, fields), what a keypad flow (flows/cap.py) or a GET_CODE
    (commands/cap.py) asked for; apps/cap.py calls this once their module is gone, so the reader
    loads in its place. None when the person leaves the PIN (ANNULER, timeout) or the card refuses
    (its notice shown); for a link request `req`, those raise its LinkError."""
    c, mode, challenge, amount, fields = job
    pin = await ask_pin(ui)
    if pin is None:
        if req is not None:
            raise answer(ui)
        return None
    try:
        if req is not None:
            await req.keepalive(KA_PROCESSING)
        return code(app, ui, c, mode, pin, challenge, amount, fields)
    except Refused as r:
        await ui.message(r.lines, timeout_ms=NOTICE_MS if req is None else _REFUSAL_MS)
        if req is not None:
            raise LinkError(r.error, r.payload)
        return None
    finally:
        zero(pin)


def answer(ui):
    """The link error of a dialogue the person refused (ANNULER) or left (timeout)."""
    return LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
