# The CAP reader function of capkey, resident part: home keys, MENU entries, link handlers 0x20-0x3F
# and the state that must live between uses. The keypad dialogues are in flows/cap.py and the
# command bodies in commands/cap.py (GET_CODE) and commands/cap_card.py (the others), loaded with
# the soft card, the reader and DES only while a flow or a command runs (firmware/ondemand.py),
# then dropped so the other app's flows have the heap.
#
# Home keys: A CODE (Identify), B SIGN (Réponse / Signature / Signer des données).
# MENU: "Carte CAP" (profile, masked PAN, tries left, ATC), "Lecteur PC/SC" (lets the host send
# raw APDUs to the soft card until switched off, for 10 minutes at most without an APDU; the card
# stays in RAM meanwhile, its transaction state lives between APDUs, unless the other app's flow
# needs that memory: then the card is dropped and loaded again by the next APDU, as after a reset).
# Link commands (docs/protocol.md, "CAP commands"):
#   0x20 CARD_STATUS  0x21 PERSONALISE  0x22 WIPE  0x23 GET_CODE  0x24 APDU  0x25 CARD_RESET
# A command that does not need the person runs at once; WIPE and GET_CODE take the screen
# (ui.foreground) first and load the command bodies after, so waiting for the screen holds no
# module.
import asyncio
from time import ticks_diff, ticks_ms

import ondemand
from link import LinkError
from link.codes import ERR_BUSY, ERR_UNKNOWN_COMMAND
from micropython import const
from ui import i18n

__version__ = "0.1.0"

CMD_CARD_STATUS = const(0x20)
CMD_PERSONALISE = const(0x21)
CMD_WIPE = const(0x22)
CMD_GET_CODE = const(0x23)
CMD_APDU = const(0x24)
CMD_CARD_RESET = const(0x25)

CODE_SHOW_MS = 60000  # the code stays on screen until OK or this long
PCSC_IDLE_MS = 600000  # PC/SC mode switches itself off after this long without an APDU

FLOWS = "flows.cap"
COMMANDS = "commands.cap"  # GET_CODE
CARD_COMMANDS = "commands.cap_card"  # the others
CODE = "commands.cap_code"  # the card, the PIN and the code, which the flows and GET_CODE share
_CODE = const("CODE")
_SIGN = const("SIGN")
_YOUR_CODE = const("Votre code")
_CARD_MENU = const("Carte CAP")
_PCSC_MENU = const("Lecteur PC/SC")

_app = None


class CapApp:
    def __init__(self, ctx):
        self.ui = ctx.ui
        self.store = ctx.store
        self.card = None  # the soft card, held in RAM while the PC/SC mode is on
        self.pcsc_until = None  # ticks_ms of the last PC/SC activity while the mode is on
        self.last_code_ms = -1  # PIN accepted -> code on screen, for the benchmark
        self._hold = None  # the ondemand use that keeps the card's modules loaded in PC/SC mode
        self._timer = None

    # -- PC/SC mode: the switch and its timer -----------------------------------------------
    def pcsc_on(self):
        t = self.pcsc_until
        if t is None:
            return False
        if ticks_diff(ticks_ms(), t) > PCSC_IDLE_MS:
            self.pcsc_stop()
            return False
        return True

    def pcsc_start(self, card, module):
        """Called by `module` (flows.cap) while it is loaded: the mode goes on, with the card
        kept."""
        self.pcsc_stop()
        self.pcsc_keep(card, module)
        self.pcsc_until = ticks_ms()
        self._timer = asyncio.create_task(self._expire())

    def pcsc_keep(self, card, module):
        """Called by `module` (flows.cap or commands.cap) while it is loaded: keeps it, what came
        with it and `card` in RAM until the mode goes off, or until another use needs the memory
        (_pcsc_evict)."""
        if self._hold is None:
            hold = ondemand.use(module, evict=self._pcsc_evict)
            hold.__enter__()  # already loaded: nothing to import, never waits
            hold.task = None  # a hold nobody waits on
            self._hold = hold
        self.card = card

    def _pcsc_evict(self):
        # Another app's flow needs the heap: the card goes (the mode stays on). The next APDU
        # loads it again from the store, like a card that was reset: a transaction in progress
        # has to start over, no counter or PIN try is affected (they are on flash).
        self.card = None
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    def pcsc_touch(self):
        self.pcsc_until = ticks_ms()

    def pcsc_stop(self):
        self.pcsc_until = None
        self.card = None
        t, self._timer = self._timer, None
        if t is not None and t is not asyncio.current_task():
            t.cancel()
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    async def _expire(self):
        # switches the mode off PCSC_IDLE_MS after the last APDU, giving the card's RAM back
        while self.pcsc_until is not None:
            left = PCSC_IDLE_MS - ticks_diff(ticks_ms(), self.pcsc_until)
            if left <= 0:
                self._timer = None
                self.pcsc_stop()
                return
            await asyncio.sleep_ms(left)

    # -- keypad flows ------------------------------------------------------------------------
    def code_screen(self, text):
        """(lines, title) of the screen that shows a code: drawn by commands/cap_code.py as soon as
        the card gives the code, then kept on by _show_code, the same pixels."""
        return ("", text, "", i18n.HINT_OK), _YOUR_CODE

    async def _show_code(self, ui, text):
        if text is not None:
            lines, title = self.code_screen(text)
            await ui.message(lines, title=title, timeout_ms=CODE_SHOW_MS)
            ui.cancelled = False  # leaving the code with ANNULER is not a cancelled operation

    async def code_flow(self, ui):
        await self._keypad_code(ui, "code_flow")

    async def sign_flow(self, ui):
        await self._keypad_code(ui, "sign_flow")

    async def _keypad_code(self, ui, flow):
        # the flow's questions, then the PIN and the code once the flow's module is gone: the
        # reader takes its place in the heap
        async with ondemand.use(CODE) as cc:
            async with ondemand.use(FLOWS) as f:
                job = await getattr(f, flow)(self, ui)
            text = None if job is None else await cc.pin_and_code(self, ui, job)
        await self._show_code(ui, text)  # the card and the reader are gone by now

    async def card_menu(self, ui):
        async with ondemand.use(FLOWS) as f:
            lines, title = f.card_lines(self, ui)
        await ui.message(lines, title=title or _CARD_MENU)

    async def pcsc_menu(self, ui):
        async with ondemand.use(FLOWS) as f:
            await f.pcsc_menu(self, ui)

    # -- link commands -----------------------------------------------------------------------
    async def _now(self, name, req, module=CARD_COMMANDS):
        # a command that does not need the person: load, run, drop
        try:
            async with ondemand.use(module) as c:
                return getattr(c, name)(self, req)
        except MemoryError:
            raise LinkError(ERR_BUSY)

    async def command(self, req):
        """The link handler of every CAP command (one function for all, as in apps/key.py)."""
        cmd = req.cmd
        if cmd == CMD_CARD_STATUS:
            return await self._now("status", req)
        if cmd == CMD_PERSONALISE:
            return await self._now("personalise", req)
        if cmd == CMD_APDU:
            return await self._now("apdu", req)
        if cmd == CMD_CARD_RESET:
            return await self._now("card_reset", req)
        if cmd == CMD_WIPE:
            return await self._wipe(req)
        if cmd == CMD_GET_CODE:
            return await self._get_code(req)
        raise LinkError(ERR_UNKNOWN_COMMAND)

    async def _wipe(self, req):
        await self._now("wipe_check", req)
        ui = self.ui
        async with ui.foreground():
            try:
                async with ondemand.use(CARD_COMMANDS) as c:
                    return await c.wipe(self, ui, req)
            except MemoryError:
                raise LinkError(ERR_BUSY)

    async def _get_code(self, req):
        args = await self._now("get_code_check", req, COMMANDS)
        ui = self.ui
        async with ui.foreground():
            try:
                async with ondemand.use(CODE) as cc:
                    async with ondemand.use(COMMANDS) as c:  # what the host asks, approved
                        job = await c.get_code(self, ui, req, args)
                    text = await cc.pin_and_code(self, ui, job, req)
            except MemoryError:
                raise LinkError(ERR_BUSY)
            # the reply leaves now; the code stays on screen until OK or CODE_SHOW_MS
            asyncio.create_task(self._linger(text))
        return text.encode()

    async def _linger(self, text):
        async with self.ui.foreground():
            await self._show_code(self.ui, text)


def install(ctx):
    global _app
    app = CapApp(ctx)
    _app = app
    # Each loaded once and dropped at boot: the names these modules intern (qstrs, never freed)
    # find room now, at the bottom of a young heap, instead of in the middle of a fragmented one
    # at the first CODE; and ondemand learns what a load of each takes.
    for name in (CODE, COMMANDS, CARD_COMMANDS, FLOWS):
        with ondemand.use(name):
            pass
    ui = ctx.ui
    ui.add_function("A", _CODE, app.code_flow)
    ui.add_function("B", _SIGN, app.sign_flow)
    ui.add_menu_item(_CARD_MENU, app.card_menu)
    ui.add_menu_item(_PCSC_MENU, app.pcsc_menu)
    handler = app.command
    for cmd in range(CMD_CARD_STATUS, CMD_CARD_RESET + 1):
        ctx.link.register(cmd, handler)
    return app


def reset():
    """After an unexpected error: PC/SC access is switched off (it needs the keypad again), and
    the card it kept in RAM goes."""
    if _app is not None:
        _app.pcsc_stop()
