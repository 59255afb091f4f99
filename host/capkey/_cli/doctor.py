"""`capkey doctor`: what is wrong with a board or its port, one line per check; `capkey udev`: the
udev rules for the boards' USB IDs (docs/boards.md, "Diagnosis")."""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from ..link.doctor import UDEV_RULES_PATH, Status, diagnose, install_udev_rules, udev_rules
from .device import device_option, resolve_device
from .util import EXIT_DEVICE, EXIT_USAGE, CliFail


@click.command("doctor")
@device_option
def doctor(url: str | None) -> None:
    """Diagnose a board and its port: one line per check, OK, WARN or FAIL, with the fix.

    \b
    A serial port (/dev/ttyACM0): it exists, this user may open it (dialout
    or uucp group), no ModemManager or brltty holds it, the udev rule is
    installed. Then the board: it answers, its MicroPython version and port,
    its protocol and firmware versions against this capkey's, its apps, its
    free heap and flash, and its own self-test: the display answers, no key
    stuck down, its clocks. Exit status 0 when no check failed, 3 when one
    did."""
    url = resolve_device(url)
    checks = diagnose(url, host_version=__version__)
    for check in checks:
        click.echo(check.line())
    if any(c.status is Status.FAIL for c in checks):
        raise SystemExit(EXIT_DEVICE)


@click.command("udev")
@click.option("--install", is_flag=True, help=f"Write them to {UDEV_RULES_PATH} and reload udev "
              "(needs root).")
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), default=UDEV_RULES_PATH,
              show_default=True, help="Where --install writes the rules.")
def udev(install: bool, path: Path) -> None:
    """Print the udev rules for the capkey boards' USB IDs (port access for the dialout group and
    the person at the seat; ModemManager told to leave the boards alone), or install them."""
    if not install:
        click.echo(udev_rules(), nl=False)
        return
    try:
        for done in install_udev_rules(path):
            click.echo(done)
    except PermissionError:
        raise CliFail(f"cannot write {path}: run `sudo capkey udev --install`.", EXIT_USAGE) from None
    except OSError as exc:
        raise CliFail(f"cannot install the rules: {exc}", EXIT_USAGE) from None


COMMANDS = [doctor, udev]
