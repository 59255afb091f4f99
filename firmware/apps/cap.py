# The CAP reader function of capkey: keypad flows, MENU entries and link commands 0x20-0x3F
# around the soft card (applets/emv_card.py) and the reader state machine (reader/cap.py).
#
# Home keys: A CODE (Identify), B SIGN (Réponse / Signature / Signer des données).
# MENU: "Carte CAP" (profile, masked PAN, tries left, ATC), "Lecteur PC/SC" (lets the host send
# raw APDUs to the soft card until switched off, for 10 minutes at most without an APDU).
# Link commands (docs/protocol.md, "CAP commands"):
#   0x20 CARD_STATUS  0x21 PERSONALISE  0x22 WIPE  0x23 GET_CODE  0x24 APDU  0x25 CARD_RESET
#
# The PIN is typed on the keypad only (except the issuer's PERSONALISE, at the factory): the
# digits live in a bytearray wiped after the VERIFY, never in a str, never on the screen.
# Wrong PIN: the screen says "Code PIN incorrect" and the tries left (docs/cap.md §10.5).
import asyncio
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

__version__ = "0.1.0"

CMD_CARD_STATUS = const(0x20)
CMD_PERSONALISE = const(0x21)
CMD_WIPE = const(0x22)
CMD_GET_CODE = const(0x23)
CMD_APDU = const(0x24)
CMD_CARD_RESET = const(0x25)

# GET_CODE modes are the reader's numbers
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

CODE_SHOW_MS = 60000  # the code stays on screen until OK or this long
PCSC_IDLE_MS = 600000  # PC/SC mode switches itself off after this long without an APDU

_CODE = ("CODE", "CODE")
_SIGN = ("SIGN", "SIGN")
_RESPOND = ("Réponse", "Respond")
_SIGNATURE = ("Signature", "Sign")
_TDS = ("Signer données", "Sign data")
_IDENTIFY = ("Identification", "Identification")
_CHALLENGE = ("Code défi", "Challenge")
_AMOUNT = ("Montant", "Amount")
_FIELD = ("Donnée", "Field")
_FIELD_HINT = ("OK sans chiffre : fin", "OK when empty: done")
_YOUR_CODE = ("Votre code", "Your code")
_NO_CARD = ("Carte non personnalisée", "Card not personalised")
_CARD_ERROR = ("Erreur carte", "Card error")
_CARD_REFUSED = ("Carte refusée", "Card refused")
_CALL_BANK = ("Contactez votre banque", "Contact your bank")
_CARD_MENU = ("Carte CAP", "CAP card")
_PCSC_MENU = ("Lecteur PC/SC", "PC/SC reader")
_PCSC_ON = ("Mode lecteur PC/SC activé", "PC/SC reader mode on")
_PCSC_OFF = ("Mode lecteur PC/SC désactivé", "PC/SC reader mode off")
_PCSC_ASK = ("Activer le lecteur PC/SC ? L'ordinateur pourra parler à la carte",
             "Enable the PC/SC reader? The computer can talk to the card")
_ERASE_ASK = ("Effacer la carte ?", "Erase the card?")
_CONNECTED = ("Demande de l'ordinateur", "Request from computer")
_TRIES = ("Essais restants", "Tries left")

_app = None


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


class CapApp:
    def __init__(self, ctx):
        self.ui = ctx.ui
        self.store = ctx.store
        self.card = None
        self.broken = False
        self.pcsc_until = None  # ticks_ms deadline while PC/SC mode is on
        self.last_code_ms = -1  # PIN accepted -> code on screen, for the benchmark
        self._load()

    def _load(self):
        try:
            self.card = EmvCard(self.store)
            self.broken = False
        except Exception:  # corrupt record (store.CorruptRecord) or inconsistent state
            self.card = None
            self.broken = True

    @property
    def personalised(self):
        return self.card is not None and self.card.personalised

    # -- the computation shared by the keypad and connected mode ----------------------------
    async def _run(self, ui, mode, challenge=None, amount=None, fields=None, req=None):
        """PIN on the keypad, the code on screen -> the code as str, or None (the reason was
        shown). With req (connected mode) errors become LinkError."""
        pin = await ui.digits(i18n.PIN, 4, 12, masked=True)
        if pin is None:
            if req is not None:
                raise LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
            return None
        try:
            return await self._transaction(ui, mode, pin, challenge, amount, fields, req)
        finally:
            for i in range(len(pin)):
                pin[i] = 0

    async def _transaction(self, ui, mode, pin, challenge, amount, fields, req):
        t0 = ticks_ms()
        try:
            if req is not None:
                await req.keepalive(KA_PROCESSING)
            ui.show((i18n.WAIT,))
            self.card.power_on()
            code = rd.CapReader(self.card.process).code(mode, pin, challenge, amount, fields)
        except rd.WrongPin as e:
            await self._say(ui, (i18n.PIN_WRONG, ui.t(_TRIES) + " : %d" % e.tries_left), req)
            if req is not None:
                raise LinkError(ERR_PIN_INVALID, bytes((e.tries_left,)))
            return None
        except rd.PinBlocked:
            await self._say(ui, (i18n.PIN_BLOCKED, _CALL_BANK), req)
            if req is not None:
                raise LinkError(ERR_PIN_BLOCKED)
            return None
        except rd.ReaderError as e:
            msg = _CARD_REFUSED if e.reason == rd.ReaderError.DECLINED else _CARD_ERROR
            await self._say(ui, (msg,), req)
            if req is not None:
                raise LinkError(ERR_INTERNAL)
            return None
        text = str(code)
        self._show_code(ui, text)
        self.last_code_ms = ticks_diff(ticks_ms(), t0)
        return text

    def _show_code(self, ui, text):
        ui.show(("", text, "", i18n.HINT_OK), title=_YOUR_CODE)

    async def _say(self, ui, lines, req=None):
        # a short notice; in connected mode it must not hold the reply for a minute
        await ui.message(lines, timeout_ms=(5000 if req is None else 3000))

    async def _needs_card(self, ui):
        if self.personalised:
            return True
        await self._say(ui, (_CARD_ERROR if self.broken else _NO_CARD,))
        return False

    # -- keypad flows ------------------------------------------------------------------------
    async def code_flow(self, ui):
        if not await self._needs_card(ui):
            return
        text = await self._run(ui, MODE_IDENTIFY)
        if text is not None:
            await ui.message(("", text), title=_YOUR_CODE, timeout_ms=CODE_SHOW_MS)
            ui.cancelled = False  # leaving the code with ANNULER is not a cancelled operation

    async def sign_flow(self, ui):
        if not await self._needs_card(ui):
            return
        i = await ui.choose(_SIGN, (_RESPOND, _SIGNATURE, _TDS))
        if i is None:
            return
        challenge = amount = fields = None
        if i in (0, 1):
            c = await ui.digits(_CHALLENGE, 1, 8)
            if c is None:
                return
            challenge = str(c, "ascii")
        if i == 1:
            v = await ui.amount(_AMOUNT, max_digits=12)
            if v is None:
                return
            amount = str(v)
        if i == 2:
            fields = []
            while len(fields) < _MAX_TDS_FIELDS:
                title = ui.t(_FIELD) + " %d" % (len(fields) + 1)
                f = await ui.digits(title, 0 if fields else 1, _MAX_FIELD_DIGITS,
                                    prompt_lines=(_FIELD_HINT,) if fields else ())
                if f is None:
                    return
                if not f:
                    break
                fields.append(str(f, "ascii"))
        mode = (MODE_RESPOND, MODE_SIGN, MODE_TDS)[i]
        text = await self._run(ui, mode, challenge, amount, fields)
        if text is not None:
            await ui.message(("", text), title=_YOUR_CODE, timeout_ms=CODE_SHOW_MS)
            ui.cancelled = False

    async def card_menu(self, ui):
        if not await self._needs_card(ui):
            return
        c = self.card
        lines = (
            emv_card.PROFILE_NAMES[c.profile_id],
            mask_pan(c.pan),
            ui.t(_TRIES) + " : %d/%d" % (c.tries, c.try_limit),
            "ATC : %d" % c.atc,
        )
        await ui.message(lines, title=_CARD_MENU)

    async def pcsc_menu(self, ui):
        if self.pcsc_on():
            self.pcsc_until = None
            await self._say(ui, (_PCSC_OFF,))
            return
        if await ui.confirm((_PCSC_ASK,), title=_PCSC_MENU):
            self.pcsc_until = ticks_ms()
            await self._say(ui, (_PCSC_ON,))

    def pcsc_on(self):
        t = self.pcsc_until
        if t is None:
            return False
        if ticks_diff(ticks_ms(), t) > PCSC_IDLE_MS:
            self.pcsc_until = None
            return False
        return True

    # -- link commands -----------------------------------------------------------------------
    async def cmd_status(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        out = bytearray(8)
        if self.broken:
            out[0] = STATE_ERROR
        elif self.personalised:
            c = self.card
            out[0] = STATE_PERSONALISED
            out[1] = c.profile_id
            out[2] = c.tries
            out[3] = c.try_limit
            out[4] = c.atc >> 8
            out[5] = c.atc & 0xFF
            out[6] = c.psn
        out[7] = 1 if self.pcsc_on() else 0
        if self.personalised:
            out.extend(mask_pan(self.card.pan).encode())
        return out

    async def cmd_personalise(self, req):
        if self.broken:
            raise LinkError(ERR_WRONG_STATE)
        if self.personalised:
            raise LinkError(ERR_ALREADY_PERSONALISED)
        data = bytearray(req.payload)
        try:
            self.card.personalise(data)
        except CardStateError:
            raise LinkError(ERR_ALREADY_PERSONALISED)
        except ValueError:
            raise LinkError(ERR_INVALID_PARAMETER)
        finally:
            _wipe(data)
            _wipe(req.payload)
        return b""

    async def cmd_wipe(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        if not self.personalised and not self.broken:
            raise LinkError(ERR_NOT_PERSONALISED)
        ui = self.ui
        async with ui.foreground():
            await req.keepalive(KA_WAITING_FOR_USER)
            lines = [_ERASE_ASK]
            if self.personalised:
                lines.append(mask_pan(self.card.pan))
            if not await ui.confirm(lines, title=_CONNECTED):
                raise LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
            if self.card is not None:
                self.card.wipe()
            else:
                self.store.delete(emv_card.CARD_RECORD)
                self.store.delete(emv_card.STATE_RECORD)
            self.pcsc_until = None
            self._load()
        return b""

    async def cmd_get_code(self, req):
        mode, challenge, amount, currency, fields = _parse_get_code(req.payload)
        if not self.personalised:
            raise LinkError(ERR_NOT_PERSONALISED)
        ui = self.ui
        async with ui.foreground():
            await req.keepalive(KA_WAITING_FOR_USER)
            if not await ui.confirm(_describe(ui, mode, challenge, amount, currency, fields),
                                    title=_CONNECTED):
                raise LinkError(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
            text = await self._run(ui, mode, challenge, amount, fields, req)
            # the reply leaves now; the code stays on screen until OK or CODE_SHOW_MS
            asyncio.create_task(self._linger(text))
        return text.encode()

    async def _linger(self, text):
        ui = self.ui
        async with ui.foreground():
            await ui.message(("", text), title=_YOUR_CODE, timeout_ms=CODE_SHOW_MS)
            ui.cancelled = False

    def _pcsc_gate(self):
        if not self.pcsc_on():
            raise LinkError(ERR_DENIED)
        if not self.personalised:
            raise LinkError(ERR_NOT_PERSONALISED)
        self.pcsc_until = ticks_ms()  # activity keeps the mode on

    async def cmd_apdu(self, req):
        if not 4 <= len(req.payload) <= 261:
            raise LinkError(ERR_INVALID_PARAMETER)
        self._pcsc_gate()
        return self.card.process(bytes(req.payload))

    async def cmd_card_reset(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        self._pcsc_gate()
        return self.card.power_on()


def _wipe(buf):
    for i in range(len(buf)):
        buf[i] = 0


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
        return [_RESPOND, ui.t(_CHALLENGE) + " :", _group(challenge)]
    if mode == MODE_SIGN:
        return [_SIGNATURE, ui.t(_AMOUNT) + " :", format_amount(int(amount)) + " " + (currency or ""),
                ui.t(_CHALLENGE) + " :", _group(challenge)]
    lines = [_TDS]
    for i, f in enumerate(fields):
        lines.append("%d: %s" % (i + 1, f))
    return lines


def install(ctx):
    global _app
    app = CapApp(ctx)
    _app = app
    ui = ctx.ui
    ui.add_function("A", _CODE, app.code_flow)
    ui.add_function("B", _SIGN, app.sign_flow)
    ui.add_menu_item(_CARD_MENU, app.card_menu)
    ui.add_menu_item(_PCSC_MENU, app.pcsc_menu)
    link = ctx.link
    link.register(CMD_CARD_STATUS, app.cmd_status)
    link.register(CMD_PERSONALISE, app.cmd_personalise)
    link.register(CMD_WIPE, app.cmd_wipe)
    link.register(CMD_GET_CODE, app.cmd_get_code)
    link.register(CMD_APDU, app.cmd_apdu)
    link.register(CMD_CARD_RESET, app.cmd_card_reset)
    return app


def reset():
    """After an unexpected error: PC/SC access is switched off (it needs the keypad again)."""
    if _app is not None:
        _app.pcsc_until = None
