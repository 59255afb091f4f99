# The certificate key's MENU dialogues ("Changer PIN", "Débloquer PIN", "Certificats"), loaded on
# demand.
#
# apps/key.py (resident) loads this module with ondemand.use("flows.key") while a MENU entry runs
# and drops it after; with it come commands/key.py (KeyDialogues: the applet and the PIN
# dialogues the link commands use too), commands/key_admin.py (the PIN change and unblock
# dialogues), the signing applet and the crypto. Each entry makes a KeyDialogues of its own for
# the use.
from applets import signer as sg
from commands import key, key_admin
from micropython import const
from ui import i18n

_FAIL_MS = const(5000)  # a refused PIN's notice on the keypad stays until OK or this long

_NO_PIN = const("Aucun code PIN : créez d'abord une clé")
_EMPTY = const("vide")
_KEY_ONLY = const("clé sans certificat")


async def _nobody(status):
    pass  # on the keypad, nobody waits for news of the dialogue


def _dialogues(app):
    return key.KeyDialogues(app, _nobody, _FAIL_MS)


async def _menu(app, ui, flow):
    # A refusal was already shown on screen, except "no PIN yet".
    k = _dialogues(app)
    try:
        await flow(k, ui)
    except key.NoPin:
        await ui.message((_NO_PIN,))
    except key.Fail:
        pass
    finally:
        k.close()


async def menu_change_pin(app, ui):
    await _menu(app, ui, key_admin.change_pin)


async def menu_unblock(app, ui):
    await _menu(app, ui, key_admin.unblock)


def certificate_lines(app, ui):
    """What the "Certificats" menu entry shows: one line per slot, then the PIN tries left."""
    k = _dialogues(app)
    try:
        lines = []
        for i, has_key, subject in k.slots():
            if subject:
                lines.append(k.label(i, subject))
            else:
                lines.append("%d %s" % (i + 1, _KEY_ONLY if has_key else _EMPTY))
        st = k.status()
        if st[0] == sg.ACTIVE:
            lines.append(i18n.TRIES_LEFT + " PIN : %d" % st[2])
        return lines
    finally:
        k.close()
