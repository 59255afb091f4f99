# The certificate key's link command bodies (0x40-0x48, docs/protocol.md "Certificate key
# commands"; payloads and what the screen shows: docs/payloads.md), the applet access and PIN
# dialogues its MENU shares with them (KeyDialogues: flows/key.py imports it from here) and the
# first boot's provisioning, loaded on demand.
#
# apps/key.py (resident) loads this module with ondemand.use("commands.key") while a command runs
# (flows/key.py with it, while a MENU entry runs) and drops it after; with it come the signing
# applet (applets/signer.py), the payload parser and its French rendering (applets/payload.py),
# P-256, AES, HMAC and the sealed blobs. The shared dialogues live here, not in a module of their
# own, so that a command loads one module: SIGN is the firmware's largest use, and a second
# module in it (its globals, its loading) fragments the simulator's heap enough to make SIGN
# fail for memory measurably more often (hil_tests/test_cert_enrol.py).
#
# A KeyDialogues lives for one use: it makes the applet object from the resident KeyApp (store,
# board); the per-power-up PIN/PUK failure counts stay in the KeyApp and go in and out of the
# applet around each of its commands, so "3 failures lock until the next power-up" holds across
# uses. Values handed to the resident part are plain (bytes, str, lists), never objects of these
# modules. A KeyCommands is the one of a request: its dialogues send the host KEEPALIVEs while the
# person is asked or the applet computes, and a refusal's notice stays only the app's notice_ms
# so the reply is not held. apps/key.py calls now("check_<cmd>") in one use, takes
# ui.foreground(), then person("person_<cmd>", args) in another: a request is refused before
# anything is shown and waiting for the screen holds no module.
#
# The PIN and the PUK are typed on the keypad only: a bytearray, masked on screen, wiped after the
# applet call, never a str. First use (FACTORY): GENERATE asks the person to choose a PIN and a
# PUK (each typed twice). The PUK is chosen, not shown: anything on the screen can be read by the
# host with SCREEN, and a PUK that a hostile host learnt would unblock the PIN of a stolen key.
import asyncio

from applets import payload as pl
from applets import signer as sg
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

_CONNECTED = const("Demande de l'ordinateur")
_SIGN_TITLE = const("Signature")
_SELECT = const("Sélectionnez votre certificat")
_NEW_KEY = const("Nouvelle clé")
_SLOT = const("Emplacement")
_DELETE_ASK = const("Supprimer la clé ?")
_CHOOSE_PIN = const("Choisissez votre code PIN")
_CHOOSE_PUK = const("Choisissez votre code PUK")
_CONFIRM_PUK = const("Confirmez le code PUK")
_PUK_RULE = const("8 chiffres, à noter : il débloque le PIN")  # 3 rows under a 2-row title
_PUK_IS_PIN = const("Le PUK doit différer du code PIN")
_SIGNED = const("Signature effectuée")
_CONFIRM_PIN = const("Confirmez le code PIN")
_NEW_PIN = const("Nouveau code PIN")
_OLD_PIN = const("Code PIN actuel")
_PIN_RULE = const("6 à 8 chiffres")
_MISMATCH = const("Les codes ne correspondent pas")
_PUK = const("Code PUK")
_PUK_WRONG = const("Code PUK incorrect")
_PIN_CHANGED = const("Code PIN modifié")
_PIN_UNBLOCKED = const("Code PIN débloqué")
_USE_PUK = const("Débloquez-le avec le PUK (MENU)")
_LOCKED = const("Code verrouillé : débranchez et rebranchez la clé")
_WIPED = const("PUK bloqué : toutes les clés et certificats ont été effacés")


class Fail(Exception):
    # A dialogue ended without success; `code`/`payload` are the link error it stands for.
    def __init__(self, code, payload=b""):
        self.code = code
        self.payload = payload


class NoPin(Fail):
    # No PIN yet (before the first GENERATE): the MENU says so, a link request gets WRONG_STATE.
    pass


def zero(buf):
    if buf is not None:
        for i in range(len(buf)):
            buf[i] = 0


def _signer(app):
    return sg.Signer(app.store, app.board.random, app.board.serial, app.version)


def provision(app):
    """First boot: the device secret and the attestation key."""
    _signer(app).provision()


class KeyDialogues:
    """One use of the applet with the dialogues the MENU and the link share. keepalive(status) is
    told when the person is asked something or the applet computes (a link request's, or nobody
    on the keypad); fail_ms is how long a refused PIN's notice stays."""

    def __init__(self, app, keepalive, fail_ms):
        self.app = app
        self.ui = app.ui
        self.signer = _signer(app)
        self.keepalive = keepalive
        self.fail_ms = fail_ms

    def close(self):
        """The use ends: the applet object goes."""
        self.signer = None

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
            zero(cmd)  # it may hold a PIN
            app.pin_fails = s.pin_fails
            app.puk_fails = s.puk_fails
        return r[:-2], (r[-2] << 8) | r[-1]

    def status(self):
        """The applet's STATUS data (state, tries, slot flags)."""
        out, sw = self._apdu(sg.INS_STATUS)
        if sw != sg.SW_OK:
            raise LinkError(ERR_INTERNAL)
        return out

    def slots(self):
        """[(slot, has_key, subject DER or None)]"""
        st = self.status()
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

    def name(self, subject):
        """A certificate as the person sees it: its subject's CN."""
        return (sg.subject_cn(subject) if subject else None) or "?"

    def label(self, slot, subject):
        """A slot as the person sees it: "1 <subject CN>" (slot 0 is « Emplacement 1 »)."""
        return "%d %s" % (slot + 1, self.name(subject))

    async def _pin_failure(self, ui, sw, puk=False):
        # Shows what a refused PIN/PUK means and raises the matching Fail.
        t = self.fail_ms
        if sw & 0xFFF0 == 0x63C0:
            n = sw & 0x0F
            head = _PUK_WRONG if puk else i18n.PIN_WRONG
            await ui.message((head, i18n.TRIES_LEFT + " : %d" % n), timeout_ms=t)
            raise Fail(ERR_PIN_INVALID, bytes((n,)))
        if sw == sg.SW_BLOCKED:
            if puk:
                await ui.message((_WIPED,), timeout_ms=t * 2)
                raise Fail(ERR_PIN_BLOCKED, bytes((BLOCKED_WIPED,)))
            await ui.message((i18n.PIN_BLOCKED, _USE_PUK), timeout_ms=t)
            raise Fail(ERR_PIN_BLOCKED, bytes((BLOCKED_PIN,)))
        if sw == sg.SW_LOCKED:
            await ui.message((_LOCKED,), timeout_ms=t)
            raise Fail(ERR_PIN_BLOCKED, bytes((BLOCKED_POWER,)))
        if sw == sg.SW_STATE:
            raise Fail(ERR_WRONG_STATE)
        if sw == sg.SW_EMPTY:
            raise Fail(ERR_NOT_PERSONALISED)
        if sw in (sg.SW_DATA, sg.SW_P1P2, sg.SW_LENGTH):
            raise Fail(ERR_INVALID_PARAMETER)
        raise Fail(ERR_INTERNAL)

    def _check_pin_usable(self):
        # Before a dialogue: refuse at once when no PIN can be tried (no point showing a payload).
        st = self.status()
        if st[0] == sg.ACTIVE:
            if st[1] == 0:
                return sg.SW_BLOCKED
            if st[2] == 0:
                return sg.SW_LOCKED
        return None

    # -- dialogues ---------------------------------------------------------------------------

    async def _digits(self, ui, title, lo, hi, prompt=()):
        await self.keepalive(KA_WAITING_FOR_USER)
        v = await ui.digits(title, lo, hi, masked=True, prompt_lines=prompt)
        if v is None:
            raise Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
        return v

    async def _new_code(self, ui, title, again, lo, hi, rule):
        # A new PIN or PUK typed twice (again until both match) -> bytearray the caller wipes.
        while True:
            a = await self._digits(ui, title, lo, hi, (rule,))
            try:
                b = await self._digits(ui, again, lo, hi)
            except BaseException:  # Fail, or CancelledError from the host
                zero(a)
                raise
            same = len(a) == len(b) and a == b
            zero(b)
            if same:
                return a
            zero(a)
            await ui.message((_MISMATCH,), timeout_ms=self.app.notice_ms)

    async def _new_pin(self, ui, title):
        return await self._new_code(ui, title, _CONFIRM_PIN, sg.PIN_MIN, sg.PIN_MAX, _PIN_RULE)

    async def _run(self, ui, ins, slot, pin, rest=b""):
        await self.keepalive(KA_PROCESSING)
        ui.show((i18n.WAIT,))
        await asyncio.sleep_ms(0)
        data = bytearray(1 + len(pin) + len(rest))
        data[0] = len(pin)
        data[1 : 1 + len(pin)] = pin
        data[1 + len(pin) :] = rest
        try:
            out, sw = self._apdu(ins, slot, data)
        finally:
            zero(data)
        if sw != sg.SW_OK:
            await self._pin_failure(ui, sw)
        return out

    async def change_pin(self, ui):
        if self.status()[0] != sg.ACTIVE:
            raise NoPin(ERR_WRONG_STATE)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked)
        old = await self._digits(ui, _OLD_PIN, sg.PIN_MIN, sg.PIN_MAX)
        new = None
        try:
            new = await self._new_pin(ui, _NEW_PIN)
            await self._run(ui, sg.INS_CHANGE, 0, old, sg.lv(new))
        finally:
            zero(old)
            zero(new)
        await ui.message((_PIN_CHANGED,), timeout_ms=self.app.notice_ms)

    async def unblock(self, ui):
        st = self.status()
        if st[0] != sg.ACTIVE:
            raise NoPin(ERR_WRONG_STATE)
        if st[4] == 0:
            await self._pin_failure(ui, sg.SW_LOCKED, True)
        puk = await self._digits(ui, _PUK, sg.PUK_LEN, sg.PUK_LEN)
        new = None
        try:
            new = await self._new_pin(ui, _NEW_PIN)
            await self.keepalive(KA_PROCESSING)
            ui.show((i18n.WAIT,))
            data = bytearray(puk) + sg.lv(new)
            try:
                _, sw = self._apdu(sg.INS_RESET, 0, data)
            finally:
                zero(data)
            if sw != sg.SW_OK:
                await self._pin_failure(ui, sw, True)
        finally:
            zero(puk)
            zero(new)
        await ui.message((_PIN_UNBLOCKED,), timeout_ms=self.app.notice_ms)


class KeyCommands(KeyDialogues):
    def __init__(self, app, req):
        super().__init__(app, req.keepalive, app.notice_ms)
        self.req = req

    # -- dialogues only the host starts ------------------------------------------------------

    async def _confirm(self, ui, lines, title):
        await self.keepalive(KA_WAITING_FOR_USER)
        if not await ui.confirm(lines, title=title):
            raise Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)

    async def _setup(self, ui):
        # FACTORY -> ACTIVE: the person chooses the PIN, then the PUK. Returns the new PIN
        # (bytearray, the caller wipes it).
        pin = await self._new_pin(ui, _CHOOSE_PIN)
        puk = None
        try:
            while True:
                puk = await self._new_code(ui, _CHOOSE_PUK, _CONFIRM_PUK, sg.PUK_LEN, sg.PUK_LEN,
                                           _PUK_RULE)
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

    async def _with_pin(self, ui, ins, slot, rest=b"", prompt=()):
        # PIN on the keypad, then the applet command; -> response data.
        pin = await self._digits(ui, i18n.PIN, sg.PIN_MIN, sg.PIN_MAX, prompt)
        try:
            return await self._run(ui, ins, slot, pin, rest)
        finally:
            zero(pin)

    async def _generate(self, ui, slot):
        if self.status()[0] == sg.FACTORY:
            await self._confirm(ui, (_NEW_KEY, _SLOT + " %d" % (slot + 1)), _CONNECTED)
            pin = await self._setup(ui)
            try:
                return await self._run(ui, sg.INS_GENERATE, slot, pin)
            finally:
                zero(pin)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked)
        await self._confirm(ui, (_NEW_KEY, _SLOT + " %d" % (slot + 1)), _CONNECTED)
        return await self._with_pin(ui, sg.INS_GENERATE, slot)

    async def _sign(self, ui, slot, p):
        candidates = [(i, s) for i, k, s in self.slots() if k and s]
        if slot != ANY_SLOT:
            candidates = [c for c in candidates if c[0] == slot]
        if not candidates:
            raise Fail(ERR_NOT_PERSONALISED)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked)
        await self._confirm(ui, pl.display(p), _SIGN_TITLE)
        chosen = candidates[0]
        if len(candidates) > 1:
            await self.keepalive(KA_WAITING_FOR_USER)
            # the names alone: choose() numbers them (1, 2...) for the keys that pick them
            i = await ui.choose(_SELECT, [self.name(s) for _, s in candidates])
            if i is None:
                raise Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
            chosen = candidates[i]
        sig = await self._with_pin(ui, sg.INS_SIGN, chosen[0], p.raw, (self.label(*chosen),))
        ui.show((_SIGNED,))
        return bytes((chosen[0],)) + sig

    async def _delete(self, ui, slot):
        subject = self.slots()[slot][2]
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked)
        await self._confirm(ui, (_DELETE_ASK, self.label(slot, subject)), _CONNECTED)
        return await self._with_pin(ui, sg.INS_DELETE, slot)

    # -- the commands: checks and bodies that run at once (now), dialogues with the screen taken
    # (person) ----------------------------------------------------------------------------------

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

    def check_sign(self):
        try:
            pl.parse(self.req.payload)  # refused before anything is shown
        except pl.PayloadError:
            raise LinkError(ERR_INVALID_PARAMETER)
        return ()

    async def person_sign(self):
        # parsed again in this use: an object of the previous use's module must not live on
        return await self._sign(self.ui, ANY_SLOT, pl.parse(self.req.payload))

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
        await self.change_pin(self.ui)
        return b""

    async def person_unblock(self):
        await self.unblock(self.ui)
        return b""


# -- what apps/key.py calls, each with a KeyCommands of its own ----------------------------------
def now(app, name, req):
    """A command, or the checks of one, that does not need the person -> its reply, or the
    checked arguments of person()."""
    k = KeyCommands(app, req)
    try:
        return getattr(k, name)()
    finally:
        k.close()


async def person(app, name, req, args):
    """Runs the dialogue `name` (the caller holds the screen) -> the reply; Fail -> LinkError."""
    k = KeyCommands(app, req)
    try:
        return await getattr(k, name)(*args)
    except Fail as e:
        raise LinkError(e.code, e.payload)
    finally:
        k.close()
