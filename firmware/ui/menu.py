# The MENU (#) of the home screen: "Infos appareil", then each app's entries (Ui.add_menu_item).
# Loaded by the home loop (ui/shell.py) while the menu is open, then dropped: a flow started from
# the home keys or the link does not hold it.
import gc

from . import i18n


async def menu(ui):
    # Browsing the menu and its device info gives way to a foreground task (the screen is left
    # at once); an app's menu entry is a flow and runs to its end.
    ui._preemptible = True
    try:
        while True:
            items = [i18n.INFO]
            for item in ui._menu_items:
                items.append(item[0])
            i = await ui.choose(i18n.MENU, items)
            if i is None:  # ANNULER here is "back", not a cancelled operation
                ui.cancelled = False
                return
            if i == 0:
                await _info(ui)
            else:
                ui._preemptible = False
                await ui._menu_items[i - 1][1](ui)
                return
            ui.cancelled = False
            if ui._fg_waiting:
                return
    finally:
        ui._preemptible = False


async def _info(ui):
    b = ui.board
    gc.collect()
    lines = (
        i18n.MODEL + " " + b.name,
        i18n.SERIAL,
        str(b.serial),
        i18n.VERSION + " " + ui.version,
        i18n.HEAP_FREE,
        "%d / %d" % (gc.mem_free(), b.heap_total),
    )
    await ui.message(lines, title=i18n.INFO)
