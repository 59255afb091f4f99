"""`capkey demo`: a simulated device and a web page to see its screen and press its keys."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from ..sim import PROFILES, Simulator, SimulatorError, exit_on_sigterm
from .util import CliFail

DEFAULT_STORAGE = Path("~/.local/share/capkey/demo")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@click.command("demo")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8400, show_default=True,
              help="Port of the web view on 127.0.0.1.")
@click.option("--device", "device_url", metavar="URL", default=None,
              help="Show this device instead of starting a simulator (socket://… or a port).")
@click.option("--storage", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_STORAGE, show_default=True,
              help="Flash folder of the simulated device.")
@click.option("--board-profile", type=click.Choice(sorted(PROFILES)), default="rpi_pico",
              show_default=True)
def demo(http_port: int, device_url: str | None, storage: Path, board_profile: str) -> None:
    """Start a simulated device and its web view (http://127.0.0.1:8400); Ctrl-C stops."""
    import uvicorn

    from ..devview import create_app

    host = "127.0.0.1"
    if not _port_free(host, http_port):
        raise CliFail(f"le port {http_port} est déjà utilisé : choisissez --http-port.")
    simulator = None
    exit_on_sigterm()
    if device_url is None:
        simulator = Simulator(storage, board_profile=board_profile)
        try:
            simulator.start()
        except SimulatorError as exc:
            raise CliFail(str(exc)) from exc
        device_url = simulator.url
    try:
        web = f"http://{host}:{http_port}/"
        click.echo("capkey demo")
        click.echo(f"  appareil (lien hôte) : {device_url}")
        click.echo(f"  écran et clavier     : {web}")
        click.echo(f"  en ligne de commande : capkey info --device {device_url}")
        click.echo("Ctrl-C pour arrêter.")
        uvicorn.run(create_app(device_url), host=host, port=http_port, log_level="warning")
    finally:
        if simulator is not None:
            simulator.stop()


COMMANDS = [demo]
