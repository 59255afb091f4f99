# The certificate key's dialogues and link command bodies, loaded on demand.
#
# apps/key.py (resident) loads this module with ondemand.use("flows.key") while a keypad flow or
# a link command runs and drops it after; with it come the signing applet (applets/signer.py),
# the payload parser and its French rendering (applets/payload.py), P-256, AES, HMAC and the
# sealed blobs. A KeyFlows lives for one use: it makes the applet object from the resident KeyApp
# (store, board); the per-power-up PIN/PUK failure counts stay in the KeyApp and go in and out of
# the applet around each of its commands, so "3 failures lock until the next power-up" holds
# across uses. Values handed to the resident part are plain (bytes, str, tuples), never objects
# of these modules.
#
# The PIN and the PUK are typed on the keypad only: a bytearray, masked on screen, wiped after the
# applet call, never a str. First use (FACTORY): GENERATE asks the person to choose a PIN and a PUK
# (each typed twice). The PUK is chosen, not shown: anything on the screen can be read by the host
# with SCREEN, and a PUK that a hostile host learnt would unblock the PIN of a stolen key.
import asyncio

from applets import payload as pl
from applets import signer as sg
from apps import key as _resident
from link import LinkError
from link.codes import (
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

ANY_SLOT = const(0xFF)
_CHUNK = const(1000)  # KEY_READ_CERT chunk
# PIN_BLOCKED payload (reason)
BLOCKED_PIN = const(1)
BLOCKED_POWER = const(2)
BLOCKED_WIPED = const(3)

_CONNECTED = "Demande de l'ordinateur"
_SIGN_TITLE = "Signature"
_SELECT = "Sélectionnez votre certificat"
_NEW_KEY = "Nouvelle clé"
_SLOT = "Emplacement"
_DELETE_ASK = "Supprimer la clé ?"
_CHOOSE_PIN = "Choisissez votre code PIN"
_CONFIRM_PIN = "Confirmez le code PIN"
_NEW_PIN = "Nouveau code PIN"
_OLD_PIN = "Code PIN actuel"
_PIN_RULE = "6 à 8 chiffres"
_MISMATCH = "Les codes ne correspondent pas"
_CHOOSE_PUK = "Choisissez votre code PUK"
_CONFIRM_PUK = "Confirmez le code PUK"
_PUK_RULE = "8 chiffres, à noter : il débloque le code PIN"
_PUK_IS_PIN = "Le PUK doit différer du code PIN"
_PUK = "Code PUK"
_PUK_WRONG = "Code PUK incorrect"
_PIN_CHANGED = "Code PIN modifié"
_PIN_UNBLOCKED = "Code PIN débloqué"
_USE_PUK = "Débloquez-le avec le PUK (MENU)"
_LOCKED = "Code verrouillé : débranchez et rebranchez la clé"
_WIPED = "PUK bloqué : toutes les clés et certificats ont été effacés"
_NO_CERT = "Aucun certificat"
_NO_PIN = "Aucun code PIN : créez d'abord une clé"
_SIGNED = "Signature effectuée"
_DONE = "Terminé"
_EMPTY = "vide"
_KEY_ONLY = "clé sans certificat"


class _Fail(Exception):
    # A dialogue ended without success; `code`/`payload` are the link error it stands for.
    def __init__(self, code, payload=b""):
        self.code = code
        self.payload = payload


def _wipe(buf):
    if buf is not None:
        for i in range(len(buf)):
            buf[i] = 0


def _notice_ms():
    return _resident.NOTICE_MS  # how long an error notice of a link request stays


class KeyFlows:
    def __init__(self, app):
        self.app = app
        self.ui = app.ui
        self.signer = sg.Signer(app.store, app.board.random, app.board.serial, app.version)

    def close(self):
        """The use ends: the applet object goes."""
        self.signer = None

    def provision(self):
        return self.signer.provision()  # first boot: device secret and attestation key

    # -- applet ----------------------------------------------------------------------------

    def _apdu(self, ins, p2=0, data=b""):
        # The consecutive failures since power-up live in the resident app: copied into the
        # applet before each command and back after it (process() never yields, and two uses
        # may overlap: a STATUS while a MENU dialogue is still on screen).
        app = self.app
        s = self.signer
        s.pin_fails = app.pin_fails
        s.puk_fails = app.puk_fails
        cmd = sg.apdu(ins, p2, data)
        try:
            r = s.process(cmd)
        finally:
            _wipe(cmd)  # it may hold a PIN
            app.pin_fails = s.pin_fails
            app.puk_fails = s.puk_fails
        return r[:-2], (r[-2] << 8) | r[-1]

    def _status(self):
        out, sw = self._apdu(sg.INS_STATUS)
        if sw != sg.SW_OK:
            raise LinkError(ERR_INTERNAL)
        return out

    def _slots(self):
        # [(slot, has_key, subject DER or None)]
        st = self._status()
        out = []
        for i in range(sg.SLOTS):
            f = st[5 + i]
            subject = None
            if f & 2:
                cert, sw = self._apdu(sg.INS_READ_CERT, i)
                if sw == sg.SW_OK:
                    subject = sg.certificate_subject(cert)
            out.append((i, bool(f & 1), subject))
        return out

    def _label(self, slot, subject):
        cn = sg.subject_cn(subject) if subject else None
        return "%d %s" % (slot + 1, cn or "?")

    async def _pin_failure(self, ui, sw, req, puk=False):
        # Shows what a refused PIN/PUK means and raises the matching _Fail.
        t = _notice_ms() if req is not None else 5000
        if sw & 0xFFF0 == 0x63C0:
            n = sw & 0x0F
            head = _PUK_WRONG if puk else i18n.PIN_WRONG
            await ui.message((head, i18n.TRIES_LEFT + " : %d" % n), timeout_ms=t)
            raise _Fail(ERR_PIN_INVALID, bytes((n,)))
        if sw == sg.SW_BLOCKED:
            if puk:
                await ui.message((_WIPED,), timeout_ms=t * 2)
                raise _Fail(ERR_PIN_BLOCKED, bytes((BLOCKED_WIPED,)))
            await ui.message((i18n.PIN_BLOCKED, _USE_PUK), timeout_ms=t)
            raise _Fail(ERR_PIN_BLOCKED, bytes((BLOCKED_PIN,)))
        if sw == sg.SW_LOCKED:
            await ui.message((_LOCKED,), timeout_ms=t)
            raise _Fail(ERR_PIN_BLOCKED, bytes((BLOCKED_POWER,)))
        if sw == sg.SW_STATE:
            raise _Fail(ERR_WRONG_STATE)
        if sw == sg.SW_EMPTY:
            raise _Fail(ERR_NOT_PERSONALISED)
        if sw in (sg.SW_DATA, sg.SW_P1P2, sg.SW_LENGTH):
            raise _Fail(ERR_INVALID_PARAMETER)
        raise _Fail(ERR_INTERNAL)

    def _check_pin_usable(self):
        # Before a dialogue: refuse at once when no PIN can be tried (no point showing a payload).
        st = self._status()
        if st[0] == sg.ACTIVE:
            if st[1] == 0:
                return sg.SW_BLOCKED
            if st[2] == 0:
                return sg.SW_LOCKED
        return None

    # -- dialogues (shared by the keypad flows and the link handlers) ----------------------

    async def _digits(self, ui, req, title, lo, hi, prompt=()):
        if req is not None:
            await req.keepalive(KA_WAITING_FOR_USER)
        v = await ui.digits(title, lo, hi, masked=True, prompt_lines=prompt)
        if v is None:
            raise _Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
        return v

    async def _confirm(self, ui, req, lines, title):
        if req is not None:
            await req.keepalive(KA_WAITING_FOR_USER)
        if not await ui.confirm(lines, title=title):
            raise _Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)

    async def _new_code(self, ui, req, title, again, lo, hi, rule):
        # A new PIN or PUK typed twice (again until both match) -> bytearray the caller wipes.
        while True:
            a = await self._digits(ui, req, title, lo, hi, (rule,))
            try:
                b = await self._digits(ui, req, again, lo, hi)
            except BaseException:  # _Fail, or CancelledError from the host
                _wipe(a)
                raise
            same = len(a) == len(b) and a == b
            _wipe(b)
            if same:
                return a
            _wipe(a)
            await ui.message((_MISMATCH,), timeout_ms=_notice_ms())

    async def _new_pin(self, ui, req, title):
        return await self._new_code(ui, req, title, _CONFIRM_PIN, sg.PIN_MIN, sg.PIN_MAX, _PIN_RULE)

    async def _setup(self, ui, req):
        # FACTORY -> ACTIVE: the person chooses the PIN, then the PUK. Returns the new PIN
        # (bytearray, the caller wipes it).
        pin = await self._new_pin(ui, req, _CHOOSE_PIN)
        puk = None
        try:
            while True:
                puk = await self._new_code(ui, req, _CHOOSE_PUK, _CONFIRM_PUK, sg.PUK_LEN,
                                           sg.PUK_LEN, _PUK_RULE)
                if puk != pin:
                    break
                _wipe(puk)
                await ui.message((_PUK_IS_PIN,), timeout_ms=_notice_ms())
            if req is not None:
                await req.keepalive(KA_PROCESSING)
            ui.show((i18n.WAIT,))
            data = bytearray(sg.lv(pin)) + puk
            try:
                _, sw = self._apdu(sg.INS_SETUP, 0, data)
            finally:
                _wipe(data)
            if sw != sg.SW_OK:
                await self._pin_failure(ui, sw, req)
            return pin
        except BaseException:
            _wipe(pin)
            raise
        finally:
            _wipe(puk)

    async def _with_pin(self, ui, req, ins, slot, rest=b"", prompt=()):
        # PIN on the keypad, then the applet command; -> response data.
        pin = await self._digits(ui, req, i18n.PIN, sg.PIN_MIN, sg.PIN_MAX, prompt)
        try:
            return await self._run(ui, req, ins, slot, pin, rest)
        finally:
            _wipe(pin)

    async def _run(self, ui, req, ins, slot, pin, rest=b""):
        if req is not None:
            await req.keepalive(KA_PROCESSING)
        ui.show((i18n.WAIT,))
        await asyncio.sleep_ms(0)
        data = bytearray(1 + len(pin) + len(rest))
        data[0] = len(pin)
        data[1 : 1 + len(pin)] = pin
        data[1 + len(pin) :] = rest
        try:
            out, sw = self._apdu(ins, slot, data)
        finally:
            _wipe(data)
        if sw != sg.SW_OK:
            await self._pin_failure(ui, sw, req)
        return out

    # -- flows -------------------------------------------------------------------------------

    async def generate(self, ui, req, slot):
        if self._status()[0] == sg.FACTORY:
            await self._confirm(ui, req, (_NEW_KEY, _SLOT + " %d" % (slot + 1)), _CONNECTED)
            pin = await self._setup(ui, req)
            try:
                return await self._run(ui, req, sg.INS_GENERATE, slot, pin)
            finally:
                _wipe(pin)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked, req)
        await self._confirm(ui, req, (_NEW_KEY, _SLOT + " %d" % (slot + 1)), _CONNECTED)
        return await self._with_pin(ui, req, sg.INS_GENERATE, slot)

    async def sign(self, ui, req, slot, p):
        candidates = [(i, s) for i, k, s in self._slots() if k and s]
        if slot != ANY_SLOT:
            candidates = [c for c in candidates if c[0] == slot]
        if not candidates:
            raise _Fail(ERR_NOT_PERSONALISED)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked, req)
        await self._confirm(ui, req, pl.display(p), _SIGN_TITLE)
        chosen = candidates[0]
        if len(candidates) > 1:
            if req is not None:
                await req.keepalive(KA_WAITING_FOR_USER)
            i = await ui.choose(_SELECT, [self._label(i, s) for i, s in candidates])
            if i is None:
                raise _Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
            chosen = candidates[i]
        sig = await self._with_pin(ui, req, sg.INS_SIGN, chosen[0], p.raw,
                                   (self._label(*chosen),))
        ui.show((_SIGNED,))
        return bytes((chosen[0],)) + sig

    async def delete(self, ui, req, slot):
        subject = self._slots()[slot][2]
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked, req)
        await self._confirm(ui, req, (_DELETE_ASK, self._label(slot, subject)), _CONNECTED)
        return await self._with_pin(ui, req, sg.INS_DELETE, slot)

    async def change_pin(self, ui, req=None):
        if self._status()[0] != sg.ACTIVE:
            if req is None:
                await ui.message((_NO_PIN,))
            raise _Fail(ERR_WRONG_STATE)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked, req)
        old = await self._digits(ui, req, _OLD_PIN, sg.PIN_MIN, sg.PIN_MAX)
        new = None
        try:
            new = await self._new_pin(ui, req, _NEW_PIN)
            await self._run(ui, req, sg.INS_CHANGE, 0, old, sg.lv(new))
        finally:
            _wipe(old)
            _wipe(new)
        await ui.message((_PIN_CHANGED,), timeout_ms=_notice_ms())

    async def unblock(self, ui, req=None):
        st = self._status()
        if st[0] != sg.ACTIVE:
            if req is None:
                await ui.message((_NO_PIN,))
            raise _Fail(ERR_WRONG_STATE)
        if st[4] == 0:
            await self._pin_failure(ui, sg.SW_LOCKED, req, True)
        puk = await self._digits(ui, req, _PUK, sg.PUK_LEN, sg.PUK_LEN)
        new = None
        try:
            new = await self._new_pin(ui, req, _NEW_PIN)
            if req is not None:
                await req.keepalive(KA_PROCESSING)
            ui.show((i18n.WAIT,))
            data = bytearray(puk) + sg.lv(new)
            try:
                _, sw = self._apdu(sg.INS_RESET, 0, data)
            finally:
                _wipe(data)
            if sw != sg.SW_OK:
                await self._pin_failure(ui, sw, req, True)
        finally:
            _wipe(puk)
            _wipe(new)
        await ui.message((_PIN_UNBLOCKED,), timeout_ms=_notice_ms())

    # MENU entries: a failure was already shown on screen
    async def menu_change_pin(self, ui):
        try:
            await self.change_pin(ui)
        except _Fail:
            pass

    async def menu_unblock(self, ui):
        try:
            await self.unblock(ui)
        except _Fail:
            pass

    def certificate_lines(self, ui):
        lines = []
        for i, has_key, subject in self._slots():
            if subject:
                lines.append(self._label(i, subject))
            else:
                lines.append("%d %s" % (i + 1, _KEY_ONLY if has_key else _EMPTY))
        st = self._status()
        if st[0] == sg.ACTIVE:
            lines.append(i18n.TRIES_LEFT + " PIN : %d" % st[2])
        return lines

    # -- link commands: checks made at once, then the dialogue with the screen taken ------------
    # apps/key.py calls check_<cmd>(req) in one use, takes ui.foreground(), then calls
    # person("<flow>", req, args) in another: a request is refused before anything is shown and
    # waiting for the screen holds no module.

    async def person(self, name, req, args):
        # Runs a dialogue (the caller holds the screen); _Fail -> LinkError.
        try:
            return await getattr(self, name)(self.ui, req, *args)
        except _Fail as e:
            raise LinkError(e.code, e.payload)

    def _slot_arg(self, p, n):
        if len(p) != n or p[0] >= sg.SLOTS:
            raise LinkError(ERR_INVALID_PARAMETER)
        return p[0]

    def cmd_status(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        st = self._status()
        out = bytearray((1,)) + st[:5] + bytes((sg.SLOTS,))
        for i in range(sg.SLOTS):
            f = st[5 + i]
            out.append(i)
            out.append(f)
            if f & 1:
                out += self._apdu(sg.INS_READ_PUB, i)[0]
            if f & 2:
                subject = sg.certificate_subject(self._apdu(sg.INS_READ_CERT, i)[0]) or b""
                out += bytes((len(subject) >> 8, len(subject) & 0xFF)) + subject
        return out

    def check_generate(self, req):
        slot = self._slot_arg(req.payload, 1)
        if self._status()[5 + slot] & 1:
            raise LinkError(ERR_WRONG_STATE)
        return (slot,)

    async def person_generate(self, ui, req, slot):
        if self._status()[5 + slot] & 1:  # generated by another request meanwhile
            raise _Fail(ERR_WRONG_STATE)
        return await self.generate(ui, req, slot)

    def cmd_load_cert(self, req):
        # slot u8 + the whole DER (it starts with 0x30), or chunks: slot, offset u16, total u16,
        # chunk (an offset's high byte is never 0x30: MAX_CERT < 0x3000). The chunks gathered so
        # far live in the resident app (app.cert) between requests.
        app = self.app
        p = req.payload
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
            if not self._status()[5 + slot] & 1:
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

    def check_sign(self, req):
        try:
            pl.parse(req.payload)  # refused before anything is shown
        except pl.PayloadError:
            raise LinkError(ERR_INVALID_PARAMETER)
        return ()

    async def person_sign(self, ui, req):
        # parsed again in this use: an object of the previous use's module must not live on
        return await self.sign(ui, req, ANY_SLOT, pl.parse(req.payload))

    def cmd_attestation_key(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        return self.signer.attestation_public_key()

    def check_delete(self, req):
        slot = self._slot_arg(req.payload, 1)
        if not self._status()[5 + slot] & 1:
            raise LinkError(ERR_NOT_PERSONALISED)
        return (slot,)

    async def person_delete(self, ui, req, slot):
        if not self._status()[5 + slot] & 1:  # deleted by another request meanwhile
            raise _Fail(ERR_NOT_PERSONALISED)
        await self.delete(ui, req, slot)
        return b""

    def cmd_read_cert(self, req):
        # slot u8 -> the whole DER (empty when the slot has no certificate); slot u8 + offset u16
        # -> total u16 + at most _CHUNK bytes from offset (for certificates over one frame).
        p = req.payload
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

    def check_empty(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        return ()

    async def person_change_pin(self, ui, req):
        await self.change_pin(ui, req)
        return b""

    async def person_unblock(self, ui, req):
        await self.unblock(ui, req)
        return b""
