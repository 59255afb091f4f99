"""Entry point of the `capkey` command line. Each command group lives in its own module and
exports `COMMANDS`, a list of click commands or groups.

`main()` is the one place where a failure becomes a line on stderr and an exit status: a CliFail
carries its own, a device link error gets `exit_status`'s, anything else is a bug (one line, the
traceback with -v)."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from importlib.metadata import entry_points

import click

from ..link.errors import LinkError
from ..link.transport import LOG_LEVEL_TRAFFIC
from .util import (
    EXIT_CANCELLED,
    EXIT_DEVICE,
    EXIT_REFUSED,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    CliFail,
    exit_status,
)

# One module per command group; each defines COMMANDS.
_GROUP_MODULES = ("device", "doctor", "cert", "admin", "audit", "card", "serve")
# Packages that add commands (capkey-dev: sim, demo, deploy) declare an entry point in this group
# whose value is a list of click commands.
_PLUGIN_GROUP = "capkey.commands"
# -v and -vv are about capkey's own logs: another library's debug log may hold what we do not
# control (form fields, connection strings), so the others stay at WARNING.
_OWN_LOGGERS = ("capkey", "capkey_dev")

_EXIT_STATUSES = f"""\b
Exit statuses:
  0    success
  {EXIT_REFUSED}    refused, or verification failed (wrong PIN, code refused, altered audit trail)
  {EXIT_USAGE}    usage error (bad option, missing file, no terminal to ask a secret on)
  {EXIT_DEVICE}    device or link error (no device, port busy, no answer, device error)
  {EXIT_UNEXPECTED}    unexpected error (a bug: run with -v to see the traceback)
  {EXIT_CANCELLED}  cancelled (Ctrl-C, or ANNULER on the device)"""


@click.group(epilog=_EXIT_STATUSES)
@click.version_option(package_name="capkey", message="%(package)s %(version)s")
@click.option("-v", "--verbose", count=True,
              help="More logging (-vv: frames on the wire, secrets redacted).")
def cli(verbose: int) -> None:
    """capkey: CAP reader and certificate key devices, issuer and verifier tools."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    level = {0: logging.NOTSET, 1: logging.INFO}.get(verbose, LOG_LEVEL_TRAFFIC)
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)


for _name in _GROUP_MODULES:
    for _command in importlib.import_module(f"{__package__}.{_name}").COMMANDS:
        cli.add_command(_command)
for _plugin in entry_points(group=_PLUGIN_GROUP):
    for _command in _plugin.load():
        cli.add_command(_command)


def _fail(message: str, status: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(status)


def main() -> None:
    try:
        status = cli(standalone_mode=False)
    except CliFail as exc:
        _fail(str(exc), exc.status)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("cancelled.", EXIT_CANCELLED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LinkError as exc:
        _fail(str(exc), exit_status(exc))
    except Exception as exc:
        lines = str(exc).splitlines()
        what = f"unexpected {type(exc).__name__}" + (f": {lines[0]}" if lines else "")
        if logging.getLogger(_OWN_LOGGERS[0]).isEnabledFor(logging.INFO):  # -v given
            traceback.print_exc()
            _fail(what, EXIT_UNEXPECTED)
        _fail(f"{what} (run with -v for details)", EXIT_UNEXPECTED)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
