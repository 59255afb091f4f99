"""`capkey demo`: a simulated device personalised for a test customer, the bank's authentication
service on SQLite, the web portal with the device's screen and keypad, and the signing agent."""

from __future__ import annotations

import click

from capkey._cli.util import CliFail
from capkey_dev.sim import PROFILES, exit_on_sigterm


@click.command("demo")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8400, show_default=True,
              help="Port of the web portal (and its device view) on 127.0.0.1.")
@click.option("--agent-port", type=click.IntRange(1, 65535), default=8401, show_default=True,
              help="Port of the local signing agent on 127.0.0.1.")
@click.option("--board-profile", type=click.Choice(sorted(PROFILES)), default="rpi_pico",
              show_default=True, help="Board the simulated device stands for.")
def demo(http_port: int, agent_port: int, board_profile: str) -> None:
    """A simulated device personalised for a test customer, the bank on SQLite and the web portal
    (http://127.0.0.1:8400); Ctrl-C stops."""
    from capkey_dev.demo import DemoError, run_demo

    exit_on_sigterm()
    try:
        run_demo(http_port=http_port, agent_port=agent_port, board_profile=board_profile,
                 echo=click.echo)
    except DemoError as exc:
        raise CliFail(str(exc)) from exc


COMMANDS = [demo]
