"""`capkey deploy`: cross-compile the firmware for a board and copy it over USB with mpremote."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from capkey._cli.util import EXIT_DEVICE, CliFail
from capkey_dev.build import BOARD_ARCH, stage


def deploy_commands(tree: Path) -> list[str]:
    """One chained mpremote session: make folders, copy every file, reset. mpremote prints each
    step, which is the progress a person sees."""
    args: list[str] = []
    dirs = sorted({p.parent.relative_to(tree) for p in tree.rglob("*") if p.is_file()} - {Path(".")})
    for d in dirs:
        args += ["exec", f"import os\ntry: os.mkdir('/{d.as_posix()}')\nexcept OSError: pass", "+"]
    for f in sorted(p for p in tree.rglob("*") if p.is_file()):
        args += ["fs", "cp", str(f), f":{f.relative_to(tree).as_posix()}", "+"]
    return args + ["reset"]


@click.command()
@click.option("--board", type=click.Choice(sorted(BOARD_ARCH)), required=True, help="Target board.")
@click.option("--port", required=True, help="Serial port of the board, e.g. /dev/ttyACM0.")
@click.option("--dry-run", is_flag=True, help="Stage the files and print the mpremote command only.")
def deploy(board: str, port: str, dry_run: bool) -> None:
    """Compile the firmware for BOARD (mpy-cross) and copy it to the board on PORT."""
    click.echo(f"compiling for {board} ({BOARD_ARCH[board]})…", err=True)
    tree = stage(board)
    files = [p for p in tree.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    click.echo(f"{len(files)} files, {size / 1024:.1f} KB staged in {tree}", err=True)
    mpremote = shutil.which("mpremote") or str(Path(sys.executable).with_name("mpremote"))
    cmd = [mpremote, "connect", port, *deploy_commands(tree)]
    if dry_run:
        click.echo(shlex.join(cmd))
        return
    if not Path(port).exists() and not port.startswith(("rfc2217://", "socket://")):
        raise CliFail(f"no board on {port} (plug it in, or check the port with `capkey devices`).",
                      EXIT_DEVICE)
    if subprocess.run(cmd).returncode:
        raise CliFail(f"copying to {port} failed (is the port in use?).", EXIT_DEVICE)
    click.echo("board flashed; it restarts on its home screen ('Choisir la fonction').", err=True)


COMMANDS = [deploy]
