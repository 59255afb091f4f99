"""`capkey devices | info | screen | press | reboot`: the device's system commands.

--device URL (or CAPKEY_DEVICE) names the device; without it, the only device that
`capkey devices` would list is used, and several are listed for the person to choose."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from ..link.device import KEYS, Device, scan_devices
from ..link.errors import LinkError, ProtocolError
from ..link.screen import to_png
from .util import EXIT_DEVICE, EXIT_USAGE, CliFail, exit_status

HELLO_TIMEOUT = 3.0  # seconds a device has to answer HELLO

# Where the CLI can say more than the link's own message (capkey.link.errors).
_SENTENCES = {
    LinkError.ERR.UNSUPPORTED: "this board cannot do that (a simulator or a lab board only: "
                               "docs/boards.md, \"Lab mode\").",
    LinkError.ERR.BUSY: "the device is busy with other requests; try again.",
    LinkError.ERR.UNKNOWN_COMMAND: "the device does not know this command (older firmware?).",
}


def device_option(f):
    return click.option(
        "-d", "--device", "url", envvar="CAPKEY_DEVICE", metavar="URL",
        help="/dev/ttyACM0, socket://127.0.0.1:PORT… (or $CAPKEY_DEVICE). "
             "Default: the only device found.",
    )(f)


def resolve_device(url: str | None) -> str:
    if url:
        return url
    found = scan_devices()
    if not found:
        raise CliFail("no capkey device found (plug one in, or start `capkey sim`).", EXIT_DEVICE)
    if len(found) > 1:
        names = "\n  ".join(f"{c.url}  ({c.description})" for c in found)
        raise CliFail(f"several devices; choose one with --device URL:\n  {names}", EXIT_USAGE)
    return found[0].url


@contextlib.contextmanager
def open_device(url: str | None,
          explain: Callable[[ProtocolError], str | None] | None = None) -> Iterator[Device]:
    """Opens the device. A device's error reply gets the sentence `explain` (a command group's
    own) or _SENTENCES has for it; every other link failure goes up to main() as it is."""
    url = resolve_device(url)
    try:
        with Device.open(url, hello_timeout=HELLO_TIMEOUT) as dev:
            yield dev
    except ProtocolError as exc:
        sentence = (explain(exc) if explain is not None else None) or _SENTENCES.get(exc.code)
        if sentence is None:
            raise
        raise CliFail(sentence, exit_status(exc)) from exc
    except ValueError as exc:  # a malformed answer (INFO that does not parse)
        raise CliFail(f"unreadable answer from the device: {exc}", EXIT_DEVICE) from exc


@click.command("devices")
def devices() -> None:
    """List capkey boards on USB and running simulators."""
    found = scan_devices()
    if not found:
        click.echo("No device found.", err=True)
        return
    for c in found:
        serial = f"  serial {c.serial_number}" if c.serial_number else ""
        click.echo(f"{c.url}\t{c.kind}\t{c.description}{serial}")


@click.command("info")
@device_option
def info(url: str | None) -> None:
    """Firmware, protocol version, board, serial number and memory of the device."""
    with open_device(url) as dev:
        i = dev.info()
        click.echo(f"Device        : {dev.url}")
        click.echo(f"Firmware      : {i.firmware_version}")
        click.echo(f"Protocol      : {i.protocol_version} (frames of {i.max_payload} bytes)")
        click.echo(f"Board         : {i.board}")
        click.echo(f"Serial number : {i.serial}")
        click.echo(f"Free memory   : {i.heap_free} / {i.heap_total} bytes")
        apps = ", ".join(f"{n} {v}".strip() for n, v in i.apps) or "none"
        click.echo(f"Applications  : {apps}")


@click.command("screen")
@device_option
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a PNG screenshot to this file.")
@click.option("--scale", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Pixels per display pixel in the PNG.")
def screen(url: str | None, png: Path | None, scale: int) -> None:
    """Print the text on the device's display; --png saves a screenshot."""
    with open_device(url) as dev:
        fb, lines = dev.screen()
    if png is not None:
        try:
            png.write_bytes(to_png(fb, scale=scale))
        except OSError as exc:
            raise CliFail(f"cannot write {png}: {exc.strerror or exc}.", EXIT_USAGE) from None
    for line in lines:
        click.echo(line)


@click.command("press")
@device_option
@click.argument("keys")
def press(url: str | None, keys: str) -> None:
    """Press KEYS on the keypad (a simulator, or a board with its lab strap): 0-9, A CODE,
    B SIGN, C CORR, D OK, * ANNULER, # MENU."""
    keys = keys.upper()
    bad = sorted({k for k in keys if k not in KEYS})
    if bad or not keys:
        raise click.BadParameter(f"keys are among {KEYS}", param_hint="KEYS")
    with open_device(url) as dev:
        dev.press(keys)


@click.command("reboot")
@device_option
def reboot(url: str | None) -> None:
    """Restart the device."""
    with open_device(url) as dev:
        dev.reboot()
    click.echo("Restart requested.")


COMMANDS = [devices, info, screen, press, reboot]
