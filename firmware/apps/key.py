# The certificate key of capkey, resident part: MENU entries, link handlers 0x40-0x48 and the state
# that must live between uses. The dialogues and command bodies are in flows/key.py, loaded with
# the signing applet, the payload rendering and the crypto (P-256, AES, HMAC, sealed blobs) only
# while a flow or a command runs (firmware/ondemand.py), then dropped so the other app's flows
# have the heap. Protocol: docs/protocol.md, "Certificate key commands"; payloads and what the
# screen shows: docs/payloads.md.
#
# MENU: "Changer PIN", "Débloquer PIN" (with the PUK), "Certificats" (slots and subjects).
# State kept here: the consecutive PIN and PUK failures since power-up (3 lock the key until it
# is unplugged; the applet object itself lives for one use) and the certificate chunks a
# KEY_LOAD_CERT sequence has delivered so far.
# A command that does not need the person runs at once; GENERATE, SIGN, DELETE, CHANGE_PIN and
# UNBLOCK_PIN are checked first (a bad request is refused before anything is shown), then take the
# screen (ui.foreground) and load the flows again, so waiting for the screen holds no module.
import ondemand
from link import LinkError
from link.codes import ERR_BUSY
from micropython import const

__version__ = "0.1.0"

CMD_STATUS = const(0x40)
CMD_GENERATE = const(0x41)
CMD_LOAD_CERT = const(0x42)
CMD_SIGN = const(0x43)
CMD_ATTESTATION_KEY = const(0x44)
CMD_DELETE = const(0x45)
CMD_READ_CERT = const(0x46)
CMD_CHANGE_PIN = const(0x47)
CMD_UNBLOCK_PIN = const(0x48)

NOTICE_MS = 3000  # how long an error notice of a link request stays before the reply leaves

FLOWS = "flows.key"
MENU_PIN = "Changer PIN"  # menu labels fit one row after "N "
MENU_PUK = "Débloquer PIN"
MENU_CERTS = "Certificats"

_app = None


class KeyApp:
    def __init__(self, ctx):
        self.ui = ctx.ui
        self.board = ctx.board
        self.store = ctx.store
        self.version = getattr(ctx.ui, "version", "") or __version__
        self.pin_fails = 0  # consecutive failures since power-up (applets/signer.py)
        self.puk_fails = 0
        self.cert = None  # [slot, total, bytearray, received] while KEY_LOAD_CERT chunks arrive

    async def _use(self, fn, *args):
        # Loads the flows, runs fn(KeyFlows, *args) (async), drops them. The applet reads and
        # writes pin_fails/puk_fails here around each of its commands (flows/key.py _apdu).
        async with ondemand.use(FLOWS) as f:
            k = f.KeyFlows(self)
            try:
                return await fn(k, *args)
            finally:
                k.close()

    # -- keypad flows ------------------------------------------------------------------------
    async def menu_change_pin(self, ui):
        await self._use(_menu_change_pin, ui)

    async def menu_unblock(self, ui):
        await self._use(_menu_unblock, ui)

    async def menu_certificates(self, ui):
        lines = await self._use(_certificate_lines, ui)
        await ui.message(lines, title=MENU_CERTS)  # the applet is gone by now

    # -- link commands -----------------------------------------------------------------------
    async def _now(self, name, req):
        # a command, or the checks of one, that does not need the person: load, run, drop
        try:
            return await self._use(_call, name, req)
        except MemoryError:
            raise LinkError(ERR_BUSY)

    async def _person(self, check, flow, req):
        args = await self._now(check, req)
        async with self.ui.foreground():
            try:
                return await self._use(_person, flow, req, args)
            except MemoryError:
                raise LinkError(ERR_BUSY)

    async def cmd_status(self, req):
        return await self._now("cmd_status", req)

    async def cmd_load_cert(self, req):
        return await self._now("cmd_load_cert", req)

    async def cmd_attestation_key(self, req):
        return await self._now("cmd_attestation_key", req)

    async def cmd_read_cert(self, req):
        return await self._now("cmd_read_cert", req)

    async def cmd_generate(self, req):
        return await self._person("check_generate", "person_generate", req)

    async def cmd_sign(self, req):
        return await self._person("check_sign", "person_sign", req)

    async def cmd_delete(self, req):
        return await self._person("check_delete", "person_delete", req)

    async def cmd_change_pin(self, req):
        return await self._person("check_empty", "person_change_pin", req)

    async def cmd_unblock_pin(self, req):
        return await self._person("check_empty", "person_unblock", req)


async def _call(k, name, req):
    return getattr(k, name)(req)


async def _person(k, name, req, args):
    return await k.person(name, req, args)


async def _menu_change_pin(k, ui):
    await k.menu_change_pin(ui)


async def _menu_unblock(k, ui):
    await k.menu_unblock(ui)


async def _certificate_lines(k, ui):
    return k.certificate_lines(ui)


def install(ctx):
    global _app
    app = KeyApp(ctx)
    _app = app
    with ondemand.use(FLOWS) as f:  # first boot: device secret and attestation key
        k = f.KeyFlows(app)
        try:
            k.provision()
        finally:
            k.close()
    ui = ctx.ui
    ui.add_menu_item(MENU_PIN, app.menu_change_pin)
    ui.add_menu_item(MENU_PUK, app.menu_unblock)
    ui.add_menu_item(MENU_CERTS, app.menu_certificates)
    link = ctx.link
    link.register(CMD_STATUS, app.cmd_status)
    link.register(CMD_GENERATE, app.cmd_generate)
    link.register(CMD_LOAD_CERT, app.cmd_load_cert)
    link.register(CMD_SIGN, app.cmd_sign)
    link.register(CMD_ATTESTATION_KEY, app.cmd_attestation_key)
    link.register(CMD_DELETE, app.cmd_delete)
    link.register(CMD_READ_CERT, app.cmd_read_cert)
    link.register(CMD_CHANGE_PIN, app.cmd_change_pin)
    link.register(CMD_UNBLOCK_PIN, app.cmd_unblock_pin)
    return app


def reset():
    """After an unexpected error: drop a half-loaded certificate."""
    if _app is not None:
        _app.cert = None
