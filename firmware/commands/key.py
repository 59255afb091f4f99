# The certificate key's applet access and PIN dialogues every key command and MENU entry shares
# (KeyDialogues), the run of the applet command a dialogue leaves (finish: the PIN, then GENERATE
# or SIGN), and the first boot's provisioning, loaded on demand. SIGN's checks and dialogue are in
# commands/key_sign.py, the other key commands and the PIN changes in commands/key_admin.py; both
# build on this module.
#
# apps/key.py (resident) loads this module with ondemand.use("commands.key") while a key command
# runs, with the command's own module beside it for its checks and its dialogue, dropped before
# finish(): the PIN entry, then the signing applet's crypto (applets/signer.py: the sealing code,
# then P-256) take its place, the heap's peak of GENERATE and SIGN.
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
# applet call, never a str.
import asyncio

import ondemand
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

# PIN_BLOCKED payload (reason)
BLOCKED_PIN = const(1)
BLOCKED_POWER = const(2)
BLOCKED_WIPED = const(3)

_SIGNED = const("Signature effectuée")
_PUK_WRONG = const("Code PUK incorrect")
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
        with ondemand.use("applets.x509") as x509:
            for i in range(sg.SLOTS):
                f = st[5 + i]
                subject = None
                if f & 2:
                    cert, sw = self._apdu(sg.INS_READ_CERT, i)
                    if sw == sg.SW_OK:
                        subject = x509.certificate_subject(cert)
                out.append((i, bool(f & 1), subject))
        return out

    def name(self, subject):
        """A certificate as the person sees it: its subject's CN."""
        if not subject:
            return "?"
        with ondemand.use("applets.x509") as x509:
            return x509.subject_cn(subject) or "?"

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


    async def _confirm(self, ui, lines, title):
        await self.keepalive(KA_WAITING_FOR_USER)
        if not await ui.confirm(lines, title=title):
            raise Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)

    async def _with_pin(self, ui, ins, slot, rest=b"", prompt=()):
        # PIN on the keypad, then the applet command; -> response data.
        pin = await self._digits(ui, i18n.PIN, sg.PIN_MIN, sg.PIN_MAX, prompt)
        try:
            return await self._run(ui, ins, slot, pin, rest)
        finally:
            zero(pin)


class KeyCommands(KeyDialogues):
    """The KeyDialogues of a link request: KEEPALIVEs to its host, refusals shown notice_ms."""

    def __init__(self, app, req):
        super().__init__(app, req.keepalive, app.notice_ms)
        self.req = req


# -- what apps/key.py calls, each with a KeyCommands (or commands/key_admin.py's KeyAdmin) ----
def now(app, name, req, cls=KeyCommands):
    """A command, or the checks of one, that does not need the person -> its reply, or the
    checked arguments of person()."""
    k = cls(app, req)
    try:
        return getattr(k, name)()
    finally:
        k.close()


async def person(app, name, req, args, cls=KeyCommands):
    """Runs the dialogue `name` (the caller holds the screen) -> the reply, or the applet command
    it leaves to finish() (a tuple); Fail -> LinkError."""
    k = cls(app, req)
    try:
        return await getattr(k, name)(*args)
    except Fail as e:
        raise LinkError(e.code, e.payload)
    finally:
        k.close()


async def finish(app, req, job):
    """The applet command a dialogue left (`job`: ins, slot, the data after the PIN, the lines
    shown above the PIN, and the PIN when the dialogue had it chosen), run once the dialogue's
    module is gone, so the applet's crypto loads in its place: the PIN on the keypad, then the
    command -> the reply; Fail -> LinkError."""
    ins, slot, rest, prompt, pin = job
    k = KeyCommands(app, req)
    ui = k.ui
    try:
        if pin is None:
            out = await k._with_pin(ui, ins, slot, rest, prompt)
        else:
            out = await k._run(ui, ins, slot, pin, rest)
        if ins == sg.INS_SIGN:
            ui.show((_SIGNED,))
            return bytes((slot,)) + out
        return out
    except Fail as e:
        raise LinkError(e.code, e.payload)
    finally:
        zero(pin)
        k.close()
