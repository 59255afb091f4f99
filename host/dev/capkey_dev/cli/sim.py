"""`capkey sim`: run a simulated capkey device in the foreground."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from capkey._cli.util import EXIT_DEVICE, CliFail
from capkey.catalog.boards import DEFAULT_PROFILE
from capkey_dev.sim import PROFILES, Simulator, SimulatorError, exit_on_sigterm

DEFAULT_STORAGE = Path("~/.local/share/capkey/sim-default")

logger = logging.getLogger(__name__)


@click.command("sim")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default="a free port",
              help="TCP port of the host link on 127.0.0.1.")
@click.option("--storage", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_STORAGE, show_default=True,
              help="Folder that holds the device's flash; the same folder is the same device.")
@click.option("--board-profile", type=click.Choice(sorted(PROFILES)), default=DEFAULT_PROFILE,
              show_default=True, help="Board the simulator stands for (sets the heap size).")
@click.option("--heap", type=click.IntRange(16 * 1024), default=None,
              help="Heap size in bytes instead of the profile's.")
def sim(port: int, storage: Path, board_profile: str, heap: int | None) -> None:
    """Run a simulated device (MicroPython unix port) until Ctrl-C; its console is copied to
    stderr ([sim] lines)."""
    simulator = Simulator(storage, port=port, board_profile=board_profile, heap=heap, echo=True)
    exit_on_sigterm()
    try:
        simulator.start()
    except SimulatorError as exc:
        logger.info("the simulator printed:\n%s", exc.console)  # -v
        raise CliFail(str(exc), EXIT_DEVICE) from None
    url = simulator.url
    click.echo(f"capkey simulator ({board_profile}, heap {simulator.heap // 1024} KB): {url}")
    click.echo(f"  storage: {simulator.storage}")
    click.echo(f"  capkey info   --device {url}")
    click.echo(f"  capkey screen --device {url} --png screen.png")
    click.echo(f"  capkey press  --device {url} '#'")
    click.echo("Ctrl-C stops it.")
    try:
        while not simulator.exited:
            time.sleep(0.5)
        raise CliFail(f"the simulator stopped (exit code {simulator.returncode}).", EXIT_DEVICE)
    except KeyboardInterrupt:
        click.echo("Stopping the simulator.", err=True)
    finally:
        simulator.stop()


COMMANDS = [sim]
