# The certificate key's commands other than SIGN (0x40-0x42, 0x44-0x48, docs/protocol.md
# "Certificate key commands") and the PIN dialogues of its MENU (flows/key.py), on
# commands/key.py's KeyDialogues and KeyCommands, loaded on demand like it (apps/key.py).
#
# First use (FACTORY): GENERATE asks the person to choose a PIN and a PUK (each typed twice). The
# PUK is chosen, not shown: anything on the screen can be read by the host with SCREEN, and a PUK
# that a hostile host learnt would unblock the PIN of a stolen key.
import ondemand
from applets import signer as sg
from commands import key
from commands.key import Fail, NoPin, zero
from link import LinkError
from link.codes import (
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    ERR_WRONG_STATE,
    KA_PROCESSING,
)
from micropython import const
from ui import i18n

_CHUNK = const(1000)  # KEY_READ_CERT chunk

_CONNECTED = const("Demande de l'ordinateur")
_NEW_KEY = const("Nouvelle clé")
_DELETE_ASK = const("Supprimer la clé ?")
_CHOOSE_PIN = const("Choisissez votre code PIN")
_CHOOSE_PUK = const("Choisissez votre code PUK")
_CONFIRM_PUK = const("Confirmez le code PUK")
_PUK_RULE = const("8 chiffres, à noter : il débloque le PIN")  # 3 rows under a 2-row title
_PUK_IS_PIN = const("Le PUK doit différer du code PIN")
_CONFIRM_PIN = const("Confirmez le code PIN")
_NEW_PIN = const("Nouveau code PIN")
_OLD_PIN = const("Code PIN actuel")
_PIN_RULE = const("6 à 8 chiffres")
_MISMATCH = const("Les codes ne correspondent pas")
_PIN_CHANGED = const("Code PIN modifié")
_PIN_UNBLOCKED = const("Code PIN débloqué")
_SLOT = const("Emplacement")
_PUK = const("Code PUK")


async def _new_code(k, ui, title, again, lo, hi, rule):
    # A new PIN or PUK typed twice (again until both match) -> bytearray the caller wipes.
    while True:
        a = await k._digits(ui, title, lo, hi, (rule,))
        try:
            b = await k._digits(ui, again, lo, hi)
        except BaseException:  # Fail, or CancelledError from the host
            zero(a)
            raise
        same = len(a) == len(b) and a == b
        zero(b)
        if same:
            return a
        zero(a)
        await ui.message((_MISMATCH,), timeout_ms=k.app.notice_ms)


async def _new_pin(k, ui, title):
    return await _new_code(k, ui, title, _CONFIRM_PIN, sg.PIN_MIN, sg.PIN_MAX, _PIN_RULE)


async def change_pin(k, ui):
    """The PIN change dialogue (MENU « Changer PIN » and CHANGE_PIN)."""
    if k.status()[0] != sg.ACTIVE:
        raise NoPin(ERR_WRONG_STATE)
    blocked = k._check_pin_usable()
    if blocked:
        await k._pin_failure(ui, blocked)
    old = await k._digits(ui, _OLD_PIN, sg.PIN_MIN, sg.PIN_MAX)
    new = None
    try:
        new = await _new_pin(k, ui, _NEW_PIN)
        await k._run(ui, sg.INS_CHANGE, 0, old, sg.lv(new))
    finally:
        zero(old)
        zero(new)
    await ui.message((_PIN_CHANGED,), timeout_ms=k.app.notice_ms)


async def unblock(k, ui):
    """The PUK dialogue that sets a new PIN (MENU « Débloquer PIN » and UNBLOCK_PIN)."""
    st = k.status()
    if st[0] != sg.ACTIVE:
        raise NoPin(ERR_WRONG_STATE)
    if st[4] == 0:
        await k._pin_failure(ui, sg.SW_LOCKED, True)
    puk = await k._digits(ui, _PUK, sg.PUK_LEN, sg.PUK_LEN)
    new = None
    try:
        new = await _new_pin(k, ui, _NEW_PIN)
        await k.keepalive(KA_PROCESSING)
        ui.show((i18n.WAIT,))
        data = bytearray(puk) + sg.lv(new)
        try:
            _, sw = k._apdu(sg.INS_RESET, 0, data)
        finally:
            zero(data)
        if sw != sg.SW_OK:
            await k._pin_failure(ui, sw, True)
    finally:
        zero(puk)
        zero(new)
    await ui.message((_PIN_UNBLOCKED,), timeout_ms=k.app.notice_ms)


class KeyAdmin(key.KeyCommands):
    async def _setup(self, ui):
        # FACTORY -> ACTIVE: the person chooses the PIN, then the PUK. Returns the new PIN
        # (bytearray, the caller wipes it).
        pin = await _new_pin(self, ui, _CHOOSE_PIN)
        puk = None
        try:
            while True:
                puk = await _new_code(self, ui, _CHOOSE_PUK, _CONFIRM_PUK, sg.PUK_LEN,
                                      sg.PUK_LEN, _PUK_RULE)
                if puk != pin:
                    break
                zero(puk)
                await ui.message((_PUK_IS_PIN,), timeout_ms=self.app.notice_ms)
            await self.keepalive(KA_PROCESSING)
            ui.show((i18n.WAIT,))
            data = bytearray(sg.lv(pin)) + puk
            try:
                _, sw = self._apdu(sg.INS_SETUP, 0, data)
            finally:
                zero(data)
            if sw != sg.SW_OK:
                await self._pin_failure(ui, sw)
            return pin
        except BaseException:
            zero(pin)
            raise
        finally:
            zero(puk)

    async def _generate(self, ui, slot):
        # -> the GENERATE for commands/key.py's finish(), run once this module is gone: with the
        # PIN the person has just chosen on a new key (FACTORY), or asked for then
        if self.status()[0] == sg.FACTORY:
            await self._confirm(ui, (_NEW_KEY, _SLOT + " %d" % (slot + 1)), _CONNECTED)
            return sg.INS_GENERATE, slot, b"", (), await self._setup(ui)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked)
        await self._confirm(ui, (_NEW_KEY, _SLOT + " %d" % (slot + 1)), _CONNECTED)
        return sg.INS_GENERATE, slot, b"", (), None

    async def _delete(self, ui, slot):
        subject = self.slots()[slot][2]
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked)
        await self._confirm(ui, (_DELETE_ASK, self.label(slot, subject)), _CONNECTED)
        return await self._with_pin(ui, sg.INS_DELETE, slot)

    def _slot_arg(self):
        p = self.req.payload
        if len(p) != 1 or p[0] >= sg.SLOTS:
            raise LinkError(ERR_INVALID_PARAMETER)
        return p[0]

    def cmd_status(self):
        if len(self.req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        st = self.status()
        out = bytearray((1,)) + st[:5] + bytes((sg.SLOTS,))
        with ondemand.use("applets.x509") as x509:
            for i in range(sg.SLOTS):
                f = st[5 + i]
                out.append(i)
                out.append(f)
                if f & 1:
                    out += self._apdu(sg.INS_READ_PUB, i)[0]
                if f & 2:
                    subject = x509.certificate_subject(self._apdu(sg.INS_READ_CERT, i)[0]) or b""
                    out += bytes((len(subject) >> 8, len(subject) & 0xFF)) + subject
        return out

    def check_generate(self):
        slot = self._slot_arg()
        if self.status()[5 + slot] & 1:
            raise LinkError(ERR_WRONG_STATE)
        return (slot,)

    async def person_generate(self, slot):
        if self.status()[5 + slot] & 1:  # generated by another request meanwhile
            raise Fail(ERR_WRONG_STATE)
        return await self._generate(self.ui, slot)

    def cmd_load_cert(self):
        # slot u8 + the whole DER (it starts with 0x30), or chunks: slot, offset u16, total u16,
        # chunk (an offset's high byte is never 0x30: MAX_CERT < 0x3000). The chunks gathered so
        # far live in the resident app (app.cert) between requests.
        app = self.app
        p = self.req.payload
        if len(p) < 3 or p[0] >= sg.SLOTS:
            raise LinkError(ERR_INVALID_PARAMETER)
        slot = p[0]
        if p[1] == 0x30:
            offset = 0
            total = len(p) - 1
            chunk = p[1:]
        elif len(p) >= 6:
            offset = (p[1] << 8) | p[2]
            total = (p[3] << 8) | p[4]
            chunk = p[5:]
        else:
            raise LinkError(ERR_INVALID_PARAMETER)
        if not 1 <= total <= sg.MAX_CERT or not chunk or offset + len(chunk) > total:
            raise LinkError(ERR_INVALID_PARAMETER)
        if offset == 0:
            if not self.status()[5 + slot] & 1:
                raise LinkError(ERR_NOT_PERSONALISED)
            app.cert = [slot, total, bytearray(total), 0]
        c = app.cert
        if c is None or c[0] != slot or c[1] != total or c[3] != offset:
            app.cert = None
            raise LinkError(ERR_INVALID_PARAMETER)
        c[2][offset : offset + len(chunk)] = chunk
        c[3] = offset + len(chunk)
        if c[3] < total:
            return b""
        app.cert = None
        _, sw = self._apdu(sg.INS_PUT_CERT, slot, c[2])
        if sw == sg.SW_EMPTY:
            raise LinkError(ERR_NOT_PERSONALISED)
        if sw != sg.SW_OK:
            raise LinkError(ERR_INVALID_PARAMETER)
        return b""

    def cmd_attestation_key(self):
        if len(self.req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        return self.signer.attestation_public_key()

    def check_delete(self):
        slot = self._slot_arg()
        if not self.status()[5 + slot] & 1:
            raise LinkError(ERR_NOT_PERSONALISED)
        return (slot,)

    async def person_delete(self, slot):
        if not self.status()[5 + slot] & 1:  # deleted by another request meanwhile
            raise Fail(ERR_NOT_PERSONALISED)
        await self._delete(self.ui, slot)
        return b""

    def cmd_read_cert(self):
        # slot u8 -> the whole DER (empty when the slot has no certificate); slot u8 + offset u16
        # -> total u16 + at most _CHUNK bytes from offset (for certificates over one frame).
        p = self.req.payload
        if len(p) not in (1, 3) or p[0] >= sg.SLOTS:
            raise LinkError(ERR_INVALID_PARAMETER)
        cert, sw = self._apdu(sg.INS_READ_CERT, p[0])
        if sw != sg.SW_OK:
            cert = b""
        n = len(cert)
        if len(p) == 1:
            if n > _CHUNK:
                raise LinkError(ERR_INVALID_PARAMETER)
            return cert
        offset = (p[1] << 8) | p[2]
        if offset > n:
            raise LinkError(ERR_INVALID_PARAMETER)
        return bytes((n >> 8, n & 0xFF)) + cert[offset : offset + _CHUNK]

    def check_empty(self):
        if len(self.req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        return ()

    async def person_change_pin(self):
        await change_pin(self, self.ui)
        return b""

    async def person_unblock(self):
        await unblock(self, self.ui)
        return b""


def now(app, name, req):
    """commands/key.py's now() for these commands."""
    return key.now(app, name, req, KeyAdmin)


async def person(app, name, req, args):
    """commands/key.py's person() for these dialogues."""
    return await key.person(app, name, req, args, KeyAdmin)
