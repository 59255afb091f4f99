# The certificate key's SIGN (0x43, docs/protocol.md "Certificate key commands"; payloads and what
# the screen shows: docs/payloads.md): its checks and its dialogue up to the PIN, on
# commands/key.py's KeyCommands, loaded on demand by apps/key.py beside commands/key.py.
#
# The dialogue shows the payload, takes OK, and the certificate when several could sign; then it
# leaves the PIN and the signature to commands/key.py's finish(), which runs once this module is
# gone: the signing crypto takes its place in the heap. The payload parser and its French
# rendering (applets/payload.py) are loaded only while a payload is checked and put into lines.
import ondemand
from applets import signer as sg
from commands import key
from commands.key import Fail
from link import LinkError
from link.codes import (
    ERR_DENIED,
    ERR_INVALID_PARAMETER,
    ERR_NOT_PERSONALISED,
    ERR_TIMEOUT,
    KA_WAITING_FOR_USER,
)
from micropython import const

_ANY_SLOT = const(0xFF)
_SIGN_TITLE = const("Signature")
_SELECT = const("Sélectionnez votre certificat")


class KeySign(key.KeyCommands):
    async def _sign(self, ui, slot, lines, raw):
        candidates = [(i, s) for i, k, s in self.slots() if k and s]
        if slot != _ANY_SLOT:
            candidates = [c for c in candidates if c[0] == slot]
        if not candidates:
            raise Fail(ERR_NOT_PERSONALISED)
        blocked = self._check_pin_usable()
        if blocked:
            await self._pin_failure(ui, blocked)
        await self._confirm(ui, lines, _SIGN_TITLE)
        chosen = candidates[0]
        if len(candidates) > 1:
            await self.keepalive(KA_WAITING_FOR_USER)
            # the names alone: choose() numbers them (1, 2...) for the keys that pick them
            i = await ui.choose(_SELECT, [self.name(s) for _, s in candidates])
            if i is None:
                raise Fail(ERR_DENIED if ui.cancelled else ERR_TIMEOUT)
            chosen = candidates[i]
        return sg.INS_SIGN, chosen[0], raw, (self.label(*chosen),), None  # for key.finish()

    def check_sign(self):
        _display(self.req.payload)  # refused before anything is shown
        return ()

    async def person_sign(self):
        # parsed again in this use: an object of the previous use's module must not live on
        p = self.req.payload
        return await self._sign(self.ui, _ANY_SLOT, _display(p), p)


def _display(payload):
    # What the screen shows of a SIGN payload (plain strs), or INVALID_PARAMETER. The parser is
    # loaded for this only: the PIN check and the signature run without it (the applet parses
    # the same bytes again before it signs them, applets/signer.py).
    with ondemand.use("applets.payload") as pl:
        try:
            return pl.display(pl.parse(payload))
        except pl.PayloadError:
            raise LinkError(ERR_INVALID_PARAMETER)


def now(app, name, req):
    """commands/key.py's now() for SIGN's checks."""
    return key.now(app, name, req, KeySign)


async def person(app, name, req, args):
    """commands/key.py's person() for SIGN's dialogue."""
    return await key.person(app, name, req, args, KeySign)
