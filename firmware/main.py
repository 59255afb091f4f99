# The app: main(board) has the store, the UI, the link server and the apps built and wired
# (firmware/compose.py, loaded for that only), then runs the UI and the host link until the board
# stops it.
#
# On a device this module is /app_a/main.mpy or /app_b/main.mpy: the board's /main.py starts the
# app of the chosen slot (firmware/slots.py, update with rollback), which calls main() on
# board.BOARD (boards/<name>/board.py, in the slot too) with a ready() to confirm an update by.
# The simulator's boards/sim/main.py does the same from its flash folder once capkey deploy wrote
# one, else it imports this file from the sources and runs main() on the sim board.
#
# Memory: an app module is only its resident layer (home keys, menu entries, small link
# handlers, the state that lives between uses); its heavy modules (applets, reader, crypto,
# payload rendering) are loaded while a flow or a command runs and dropped after
# (firmware/ondemand.py), so a Pico's heap holds the core, every app's resident layer and one
# flow at a time. The HEAP command (0x07) reports the heap free now and the peak in use.
#
# Maintenance mode (firmware/maintenance.py): a boot with *# held, or after a confirmed
# MAINTENANCE request, builds none of this; main() returns and the board's REPL takes the stream.
#
# Updates: a store written by a newer firmware is not opened (store.StoreTooNew, raised by
# compose.build(): an update in trial falls back). An update is confirmed (ready()) once the app
# has run CONFIRM_MS with every app of APPS installed and no unexpected error; the store is then
# marked with this firmware's schema.
import asyncio
import gc
import sys

from micropython import const

FIRMWARE_VERSION = "0.1.0"
APPS = ("apps.cap", "apps.key")
_RESTART_MS = const(200)  # pause before the UI loop starts again after an error
CONFIRM_MS = const(2000)  # an update runs this long without error before it confirms itself
CMD_HEAP = const(0x07)  # docs/protocol.md, system commands


class Context:
    """What an app's install(ctx) gets."""

    def __init__(self, board, ui, store, link):
        self.board = board
        self.ui = ui
        self.store = store
        self.link = link
        self.apps = []  # installed app modules
        self._resets = []
        self.errors = 0  # unexpected errors recovered from since power-up

    def on_reset(self, fn):
        """fn() runs after an unexpected error: it wipes the app's transient secrets."""
        self._resets.append(fn)

    def recover(self, exc, where):
        """Log an unexpected error, wipe transient secrets, back to the first screen."""
        self.errors += 1
        print("capkey: unexpected error in", where)
        if exc is not None:
            sys.print_exception(exc)
        for fn in self._resets:
            try:
                fn()
            except Exception as e:  # one failing wipe must not stop the others
                sys.print_exception(e)
        reset = getattr(self.ui, "reset", None)
        if reset is not None:
            try:
                reset()
            except Exception as e:
                sys.print_exception(e)
        gc.collect()


async def _keep_running(ctx, run, where):
    # The UI loop must outlive any bug in a flow: log, wipe, start again on the first screen.
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            ctx.recover(e, where)
        await asyncio.sleep_ms(_RESTART_MS)


async def heap(req):
    # HEAP: payload empty, or 01 to start a new peak after answering. Answer: heap free, heap in
    # use, peak in use (u32 each, after a garbage collection), modules loaded on demand since
    # power-up (u32), modules held on demand now (u8).
    import ondemand
    from link import LinkError
    from link.codes import ERR_INVALID_PARAMETER

    p = req.payload
    if len(p) > 1 or (len(p) == 1 and p[0] != 1):
        raise LinkError(ERR_INVALID_PARAMETER)
    free, used, peak = ondemand.stats(reset=len(p) == 1)
    out = bytearray()
    for v in (free, used, peak, ondemand.loads):
        out.extend(v.to_bytes(4, "big"))
    out.append(min(len(ondemand.held()), 255))
    return out


async def _confirm(ctx, ready):
    await asyncio.sleep_ms(CONFIRM_MS)
    if ctx.errors == 0 and len(ctx.apps) == len(APPS):
        ctx.store.claim_schema()
        ready()
    else:
        print("capkey: not confirming this update:", ctx.errors, "errors,",
              len(ctx.apps), "of", len(APPS), "apps")


async def main(board, ctx=None, ready=None):
    """Runs the firmware on `board` until the host stream ends (never, on a device). Returns
    True after a maintenance boot: the board's REPL takes the stream (firmware/maintenance.py).
    ready(), when given (firmware/slots.py, an update on trial), is called once the app runs
    well."""
    ui_task = None
    try:
        if ctx is None:
            # firmware/maintenance.py's two ways in, looked at without loading it (what a normal
            # boot loads stays in the heap for good): its FLAG file, its COMBO keys held
            import os

            try:
                os.stat(board.storage + "/.maintenance")
                asked = True
            except OSError:
                keys = board.keys_held()
                asked = "*" in keys and "#" in keys
            if asked:
                import ondemand

                with ondemand.use("maintenance") as m:
                    if await m.at_boot(board):
                        return True  # nothing else is built: the REPL follows
            import ondemand

            with ondemand.use("compose") as c:  # runs once: its code goes after
                ctx = c.build(board)
        loop = asyncio.get_event_loop()
        # A task nobody awaits that dies (a link handler's helper, an app timer) lands here.
        loop.set_exception_handler(lambda _loop, c: ctx.recover(c.get("exception"), "task"))
        ui_task = asyncio.create_task(_keep_running(ctx, ctx.ui.run, "ui"))
        if ready is not None:
            asyncio.create_task(_confirm(ctx, ready))
        await board.serve_host(ctx.link.serve)
    finally:
        if ui_task is not None:
            ui_task.cancel()
        asyncio.get_event_loop().set_exception_handler(None)
        # a fresh loop, so that the simulator and the tests can start main() again
        asyncio.new_event_loop()

