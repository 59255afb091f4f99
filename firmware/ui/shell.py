# The home loop (mixed into ui.core.Ui); the MENU is ui/menu.py, loaded while it is open.
#
# Home: "Choisir la fonction" with the keys of the bound functions ("A:CODE B:SIGN") and
# "#:MENU". A bound key runs its flow; # opens the menu; other keys do nothing (a beep where the
# board has one). After IDLE_MS without a key the panel is switched off; the next key only
# switches it back on. A flow that raises shows "Erreur", one that ended with ANNULER shows
# "Opération annulée", each for NOTICE_MS, then the home screen comes back.
import asyncio
from time import ticks_diff, ticks_ms

import ondemand

from . import i18n
from .screen import CENTER


class Shell:
    async def run(self):
        """The home loop; runs until cancelled."""
        self._ensure_pump()
        try:
            while True:
                await self._lock.acquire()
                self._owner = asyncio.current_task()
                self._depth = 1
                try:
                    await self._home()
                finally:
                    self._owner = None
                    self._depth = 0
                    self._lock.release()
                # A foreground task asked for the screen: the lock goes to it first (asyncio.Lock
                # wakes its waiters in order), and this loop gets it back when the task is done.
        finally:
            self.close()

    async def _home(self):
        # Returns when a foreground task wants the screen.
        while True:
            notice = self._notice
            if notice is not None:
                self._notice = None
                self._paint(self._layout(("", "", notice)), None, 0, CENTER)
                if await self._idle_key(self.NOTICE_MS) is None:
                    return
            self._draw_home()
            k = await self._idle_key()
            if k is None:
                return
            if k == "#":
                await self._guard(_menu)
            else:
                f = self._functions.get(k)
                if f is None:
                    self._beep()
                else:
                    await self._guard(f[1])

    def _draw_home(self):
        hints = ""
        for k in sorted(self._functions):
            if hints:
                hints += " "
            hints += k + ":" + self._functions[k][0]
        self._paint(self._layout(("", i18n.CHOOSE, "", hints, i18n.MENU_KEY)), None, 0, CENTER)
        self._activity = ticks_ms()

    async def _idle_key(self, notice_ms=0):
        # The next key at the home screen (blanking the panel after IDLE_MS), or None as soon as
        # a foreground task asks for the screen. With notice_ms: "" once that time has passed.
        start = ticks_ms()
        while True:
            if self._fg_waiting:
                return None
            k = self._inbox.get_nowait()
            if k is not None:
                return k
            if notice_ms:
                left = notice_ms - ticks_diff(ticks_ms(), start)
                if left <= 0:
                    return ""
            elif self.scr.blanked:
                left = None
            else:
                left = self.IDLE_MS - ticks_diff(ticks_ms(), self._activity)
                if left <= 0:
                    self.scr.blank()
                    continue
            await self._wait(left)

    async def _guard(self, flow):
        # Run a flow; its exceptions end it (not the loop). CancelledError is not an Exception
        # and goes through: it means the loop itself is being stopped.
        self.cancelled = False
        try:
            await flow(self)
        except Exception as e:
            self.last_error = e
            self._notice = i18n.ERROR
            return
        if self.cancelled:
            self._notice = i18n.CANCELLED


async def _menu(ui):
    async with ondemand.use("ui.menu") as m:
        await m.menu(ui)
