# Firmware composition, run once at power-up: build(board) makes the store, the UI, the link
# server and the apps of firmware/main.py's APPS and wires them. main() loads this module for
# that and drops it after (firmware/ondemand.py): code that runs once holds no heap afterwards.
#
# Apps: each module named in APPS that is present is imported and install(ctx) is called with
# ctx.board, ctx.ui, ctx.store, ctx.link. A missing module is skipped with one line on the
# console (the apps land in firmware/apps/ over time). An app that holds secrets in RAM (a PIN
# being typed, a session key) registers a wipe function with ctx.on_reset(fn), or defines a
# module-level reset(); both run after an unexpected error, before the UI goes back to the
# first screen.
import gc
import sys


def build(board, apps=None):
    """The firmware's parts, wired; main() runs them. Tests use it to inspect the wiring."""
    # imported here, not at the top: what this module imports goes with it (firmware/ondemand.py)
    import main
    from link import system
    from link.server import LinkServer
    from store import Store
    from ui.core import Ui

    store = Store(board.storage)
    store.check_schema()
    ui = Ui(board, store=store, version=main.FIRMWARE_VERSION)
    link = LinkServer(board, ui)
    system.install(link, main.FIRMWARE_VERSION)
    link.register(main.CMD_HEAP, main.heap)
    ctx = main.Context(board, ui, store, link)
    install_apps(ctx, main.APPS if apps is None else apps)
    return ctx


def install_apps(ctx, names):
    """Imports and installs every app of `names` that is present; returns the installed names."""
    import main

    installed = []
    for name in names:
        gc.collect()  # an import needs contiguous blocks (above all when it compiles a .py)
        loaded = list(sys.modules)
        try:
            mod = __import__(name)
            for part in name.split(".")[1:]:
                mod = getattr(mod, part)
        except ImportError as e:
            print("capkey: app", name, "not installed:", e)
            continue
        except MemoryError:
            # the device stays reachable (INFO lists what is installed) instead of not booting;
            # what the failed import loaded is dropped to give its memory back
            for m in list(sys.modules):
                if m not in loaded:
                    sys.modules.pop(m)
            print("capkey: app", name, "not installed: out of memory")
            gc.collect()
            continue
        mod.install(ctx)
        ctx.apps.append(mod)
        reset = getattr(mod, "reset", None)
        if reset is not None:
            ctx.on_reset(reset)
        short = name.split(".")[-1]
        if short not in [a for a, _ in ctx.link.apps]:
            ctx.link.add_app(short, getattr(mod, "__version__", main.FIRMWARE_VERSION))
        installed.append(name)
    return installed
