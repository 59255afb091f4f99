# The certificate key of capkey, resident part: MENU entries, link handlers 0x40-0x48 and the state
# that must live between uses. The MENU dialogues are in flows/key.py and the command bodies in
# commands/key_sign.py (SIGN) and commands/key_admin.py (the others), on commands/key.py (the
# applet and the PIN), loaded with the signing applet, the payload rendering and the crypto
# (P-256, AES, HMAC, sealed blobs) only while a flow or a command runs (firmware/ondemand.py),
# then dropped so the other app's flows have the heap. GENERATE and SIGN end in commands/key.py's
# finish() (the PIN, then the applet), their dialogue's module gone. Protocol:
# docs/protocol.md, "Certificate key commands"; payloads and what the screen shows:
# docs/payloads.md.
#
# MENU: "Changer PIN", "Débloquer PIN" (with the PUK), "Certificats" (slots and subjects).
# State kept here: the consecutive PIN and PUK failures since power-up (3 lock the key until it
# is unplugged; the applet object itself lives for one use) and the certificate chunks a
# KEY_LOAD_CERT sequence has delivered so far.
# A command that does not need the person runs at once; GENERATE, SIGN, DELETE, CHANGE_PIN and
# UNBLOCK_PIN are checked first (a bad request is refused before anything is shown), then take the
# screen (ui.foreground) and load the command bodies again, so waiting for the screen holds no
# module.
import ondemand
from link import LinkError
from link.codes import ERR_BUSY, ERR_UNKNOWN_COMMAND
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
COMMANDS = "commands.key"  # what every command shares: the applet, the PIN, finish()
SIGN = "commands.key_sign"  # SIGN's checks and dialogue (it imports COMMANDS)
ADMIN = "commands.key_admin"  # the other commands (it imports COMMANDS)
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
        self.notice_ms = NOTICE_MS  # read by the flows and commands at each notice
        # consecutive failures since power-up (applets/signer.py), read and written by the applet
        # around each of its commands (commands/key.py, KeyDialogues._apdu)
        self.pin_fails = 0
        self.puk_fails = 0
        self.cert = None  # [slot, total, bytearray, received] while KEY_LOAD_CERT chunks arrive

    # -- keypad flows ------------------------------------------------------------------------
    async def menu_change_pin(self, ui):
        async with ondemand.use(FLOWS) as f:
            await f.menu_change_pin(self, ui)

    async def menu_unblock(self, ui):
        async with ondemand.use(FLOWS) as f:
            await f.menu_unblock(self, ui)

    async def menu_certificates(self, ui):
        async with ondemand.use(FLOWS) as f:
            lines = f.certificate_lines(self, ui)
        await ui.message(lines, title=MENU_CERTS)  # the applet is gone by now

    # -- link commands -----------------------------------------------------------------------
    async def _now(self, name, req, module=ADMIN):
        # a command, or the checks of one, that does not need the person: load, run, drop
        try:
            async with ondemand.use(module) as c:
                return c.now(self, name, req)
        except MemoryError:
            raise LinkError(ERR_BUSY)

    async def _person(self, check, flow, req, module=ADMIN):
        args = await self._now(check, req, module)
        async with self.ui.foreground():
            try:
                async with ondemand.use(COMMANDS) as k:
                    async with ondemand.use(module) as c:
                        out = await c.person(self, flow, req, args)
                    if isinstance(out, tuple):
                        # the applet command the dialogue left: its module is gone, the
                        # applet's crypto loads in its place
                        out = await k.finish(self, req, out)
                    return out
            except MemoryError:
                raise LinkError(ERR_BUSY)

    async def command(self, req):
        """The link handler of every key command: the commands without a person run at once, the
        others are checked first, then run with the screen taken. One function for all, its
        names interned in its bytecode: a method or a table entry per command would hold heap
        for as long as the app is installed."""
        cmd = req.cmd
        if cmd == CMD_STATUS:
            return await self._now("cmd_status", req)
        if cmd == CMD_LOAD_CERT:
            return await self._now("cmd_load_cert", req)
        if cmd == CMD_ATTESTATION_KEY:
            return await self._now("cmd_attestation_key", req)
        if cmd == CMD_READ_CERT:
            return await self._now("cmd_read_cert", req)
        if cmd == CMD_GENERATE:
            return await self._person("check_generate", "person_generate", req)
        if cmd == CMD_SIGN:
            return await self._person("check_sign", "person_sign", req, SIGN)
        if cmd == CMD_DELETE:
            return await self._person("check_delete", "person_delete", req)
        if cmd == CMD_CHANGE_PIN:
            return await self._person("check_empty", "person_change_pin", req)
        if cmd == CMD_UNBLOCK_PIN:
            return await self._person("check_empty", "person_unblock", req)
        raise LinkError(ERR_UNKNOWN_COMMAND)

def install(ctx):
    global _app
    app = KeyApp(ctx)
    _app = app
    # Each loaded once at boot, as in apps/cap.py: their names (qstrs, never freed) are interned
    # at the bottom of a young heap, and ondemand learns what a load of each takes.
    with ondemand.use(COMMANDS) as c:
        c.provision(app)  # first boot: device secret and attestation key
    for name in (SIGN, FLOWS):
        with ondemand.use(name):
            pass
    ui = ctx.ui
    ui.add_menu_item(MENU_PIN, app.menu_change_pin)
    ui.add_menu_item(MENU_PUK, app.menu_unblock)
    ui.add_menu_item(MENU_CERTS, app.menu_certificates)
    handler = app.command
    for cmd in range(CMD_STATUS, CMD_UNBLOCK_PIN + 1):
        ctx.link.register(cmd, handler)
    return app


def reset():
    """After an unexpected error: drop a half-loaded certificate."""
    if _app is not None:
        _app.cert = None
