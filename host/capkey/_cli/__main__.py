"""Entry point of the `capkey` command line. Each command group lives in its own module and
exports `COMMANDS`, a list of click commands or groups."""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.metadata import entry_points

import click

from .util import CliFail

# One module per command group; each defines COMMANDS.
_GROUP_MODULES = ("device", "cert", "admin", "audit", "card")
# Packages that add commands (capkey-dev: sim, demo, deploy) declare an entry point in this group
# whose value is a list of click commands.
_PLUGIN_GROUP = "capkey.commands"


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-vv: frames on the wire).")
def cli(verbose: int) -> None:
    """capkey: CAP reader and certificate key devices, issuer and verifier tools."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, 5)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _name in _GROUP_MODULES:
    for _command in importlib.import_module(f"{__package__}.{_name}").COMMANDS:
        cli.add_command(_command)
for _plugin in entry_points(group=_PLUGIN_GROUP):
    for _command in _plugin.load():
        cli.add_command(_command)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except CliFail as exc:
        click.echo(f"Erreur : {exc}", err=True)
        sys.exit(exc.status)
    except click.exceptions.Abort:
        click.echo("Annulé.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
