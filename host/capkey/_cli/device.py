"""`capkey devices | info | screen | press | reboot`: the device's system commands.

--device URL (or CAPKEY_DEVICE) names the device; without it, the only device that
`capkey devices` would list is used, and several are listed for the person to choose."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from ..link.device import KEYS, Device, scan_devices
from ..link.errors import (
    DeviceTimeout,
    LinkError,
    NoDevice,
    PortBusy,
    ProtocolError,
    TransportError,
    VersionMismatch,
)
from ..link.screen import to_png
from .util import CliFail

HELLO_TIMEOUT = 3.0  # seconds a device has to answer HELLO

_SENTENCES = {
    LinkError.ERR.UNSUPPORTED: "cette carte ne le permet pas (le simulateur seulement).",
    LinkError.ERR.BUSY: "l'appareil est occupé par d'autres requêtes ; réessayez.",
    LinkError.ERR.CANCELLED: "opération annulée.",
    LinkError.ERR.TIMEOUT: "pas de réponse de la personne sur l'appareil.",
    LinkError.ERR.DENIED: "refusé sur l'appareil.",
    LinkError.ERR.UNKNOWN_COMMAND: "l'appareil ne connaît pas cette commande (firmware ancien ?).",
}


def _device_option(f):
    return click.option(
        "-d", "--device", "url", envvar="CAPKEY_DEVICE", metavar="URL",
        help="/dev/ttyACM0, socket://127.0.0.1:PORT… (or $CAPKEY_DEVICE). "
             "Default: the only device found.",
    )(f)


def _resolve(url: str | None) -> str:
    if url:
        return url
    found = scan_devices()
    if not found:
        raise CliFail("aucun appareil capkey trouvé (branchez-en un, ou lancez `capkey sim`).")
    if len(found) > 1:
        names = "\n  ".join(f"{c.url}  ({c.description})" for c in found)
        raise CliFail(f"plusieurs appareils ; choisissez avec --device URL :\n  {names}")
    return found[0].url


@contextlib.contextmanager
def _open(url: str | None,
          explain: Callable[[ProtocolError], CliFail] | None = None) -> Iterator[Device]:
    """Opens the device and turns every link failure into one sentence; `explain` gives a command
    group's own sentences for the device's error replies."""
    url = _resolve(url)
    try:
        with Device.open(url, hello_timeout=HELLO_TIMEOUT) as dev:
            yield dev
    except NoDevice as exc:
        raise CliFail(f"aucun appareil à {url}.") from exc
    except PortBusy as exc:
        raise CliFail(f"le port {url} est utilisé par un autre programme.") from exc
    except VersionMismatch as exc:
        theirs = f"{exc.device[0]}..{exc.device[1]}" if exc.device else "inconnue"
        raise CliFail(
            f"version de protocole incompatible (hôte {exc.host[0]}..{exc.host[1]}, appareil "
            f"{theirs}) : mettez à jour capkey ou le firmware."
        ) from exc
    except DeviceTimeout as exc:
        raise CliFail(f"l'appareil à {url} ne répond pas (délai dépassé).") from exc
    except ProtocolError as exc:
        if explain is not None:
            raise explain(exc) from exc
        sentence = _SENTENCES.get(exc.code, f"l'appareil a répondu par une erreur ({exc}).")
        raise CliFail(sentence[0].upper() + sentence[1:]) from exc
    except TransportError as exc:
        raise CliFail(f"liaison avec {url} interrompue : {exc}") from exc
    except ValueError as exc:  # a malformed answer (INFO that does not parse)
        raise CliFail(f"réponse illisible de l'appareil : {exc}") from exc


@click.command("devices")
def devices() -> None:
    """List capkey boards on USB and running simulators."""
    found = scan_devices()
    if not found:
        click.echo("Aucun appareil trouvé.", err=True)
        return
    for c in found:
        serial = f"  n° {c.serial_number}" if c.serial_number else ""
        click.echo(f"{c.url}\t{c.kind}\t{c.description}{serial}")


@click.command("info")
@_device_option
def info(url: str | None) -> None:
    """Firmware, protocol version, board, serial number and memory of the device."""
    with _open(url) as dev:
        i = dev.info()
        click.echo(f"Appareil        : {dev.url}")
        click.echo(f"Firmware        : {i.firmware_version}")
        click.echo(f"Protocole       : {i.protocol_version} (trames de {i.max_payload} octets)")
        click.echo(f"Carte           : {i.board}")
        click.echo(f"Numéro de série : {i.serial}")
        click.echo(f"Mémoire libre   : {i.heap_free} / {i.heap_total} octets")
        apps = ", ".join(f"{n} {v}".strip() for n, v in i.apps) or "aucune"
        click.echo(f"Applications    : {apps}")


@click.command("screen")
@_device_option
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a PNG screenshot to this file.")
@click.option("--scale", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Pixels per display pixel in the PNG.")
def screen(url: str | None, png: Path | None, scale: int) -> None:
    """Print the text on the device's display; --png saves a screenshot."""
    with _open(url) as dev:
        fb, lines = dev.screen()
    if png is not None:
        png.write_bytes(to_png(fb, scale=scale))
    for line in lines:
        click.echo(line)


@click.command("press")
@_device_option
@click.argument("keys")
def press(url: str | None, keys: str) -> None:
    """Press KEYS on the keypad (simulator only): 0-9, A CODE, B SIGN, C CORR, D OK,
    * ANNULER, # MENU."""
    keys = keys.upper()
    bad = sorted({k for k in keys if k not in KEYS})
    if bad or not keys:
        raise click.BadParameter(f"touches possibles : {KEYS}", param_hint="KEYS")
    with _open(url) as dev:
        dev.press(keys)


@click.command("reboot")
@_device_option
def reboot(url: str | None) -> None:
    """Restart the device."""
    with _open(url) as dev:
        dev.reboot()
    click.echo("Redémarrage demandé.")


COMMANDS = [devices, info, screen, press, reboot]
