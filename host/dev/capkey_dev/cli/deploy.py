"""`capkey deploy`: cross-compile the firmware for a board and copy it over USB with mpremote.

A board that already runs capkey does not let mpremote in (its link owns the USB stream and
Ctrl-C is off): deploy first asks it for maintenance mode over the link (the person confirms on
the keypad), waits for it to restart with its REPL, then copies. A board that does not answer the
link (plain MicroPython, or already in maintenance mode) gets the copy at once. The build's
manifest of SHA-256 digests goes last, and the board hashes every file where it landed before
it restarts (`verify_copy`)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import serial

from capkey._cli.util import EXIT_DEVICE, CliFail, exit_status, waiting_printer
from capkey.link.device import Device
from capkey.link.errors import DeviceTimeout, LinkError, ProtocolError
from capkey_dev.build import BOARD_ARCH, MANIFEST, stage

HELLO_WAIT = 2.0  # seconds a board has to answer the link before deploy takes it for a REPL
RESTART_WAIT = 15.0  # seconds for a board to come back in maintenance mode
_POLL = 0.2


def deploy_commands(tree: Path) -> list[str]:
    """One chained mpremote session: make folders, copy every file, the manifest last. mpremote
    prints each step, which is the progress a person sees."""
    args: list[str] = []
    dirs = sorted({p.parent.relative_to(tree) for p in tree.rglob("*") if p.is_file()} - {Path(".")})
    for d in dirs:
        # relative to the REPL's folder: / on a board, the storage folder on a simulator
        args += ["exec", f"import os\ntry: os.mkdir('{d.as_posix()}')\nexcept OSError: pass", "+"]
    files = sorted((p for p in tree.rglob("*") if p.is_file()), key=lambda p: p.name == MANIFEST)
    for f in files:
        args += ["fs", "cp", str(f), f":{f.relative_to(tree).as_posix()}", "+"]
    return args[:-1]


# Run by the board at its REPL after the copy: every file of the manifest, hashed where it landed.
VERIFY = f"""import hashlib, json, binascii
m = json.load(open('{MANIFEST}'))['files']
bad = []
buf = bytearray(512)
for p in m:
    d = hashlib.sha256()
    try:
        with open(p, 'rb') as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                d.update(buf[:n])
        ok = binascii.hexlify(d.digest()).decode() == m[p]
    except OSError:
        ok = False
    if not ok:
        bad.append(p)
print('capkey-verify', len(m), *bad)
"""


def verify_copy(mpremote: str, port: str) -> int:
    """Has the board check every file against the manifest it received; returns how many it
    checked. CliFail naming the files that differ or are missing (the board is not restarted:
    deploy again)."""
    proc = subprocess.run([mpremote, "connect", port, "exec", VERIFY], capture_output=True,
                          text=True)
    words = next((line.split() for line in proc.stdout.splitlines()
                  if line.startswith("capkey-verify")), None)
    if proc.returncode or words is None or len(words) < 2:
        raise CliFail(f"the board could not check the copy ({(proc.stderr or proc.stdout).strip()})",
                      EXIT_DEVICE)
    if len(words) > 2:
        raise CliFail(f"the copy differs from the build on the board: {', '.join(words[2:])}; "
                      "deploy again (the board was not restarted).", EXIT_DEVICE)
    return int(words[1])


def enter_maintenance(port: str) -> bool:
    """Brings a board that runs capkey into maintenance mode (the person confirms on its keypad)
    and waits until its REPL is reachable. False when nothing answers the link: the board is at
    its REPL already."""
    try:
        with Device.open(port, hello_timeout=HELLO_WAIT) as dev:
            click.echo("the board runs capkey: asking it for maintenance mode.", err=True)
            dev.maintenance(on_keepalive=waiting_printer("OK on its keypad for maintenance mode"))
    except DeviceTimeout:
        return False
    except ProtocolError as exc:
        if exc.code is ProtocolError.ERR.DENIED:
            raise CliFail("maintenance mode refused on the device: nothing was copied.",
                          exit_status(exc)) from None
        if exc.code is ProtocolError.ERR.TIMEOUT:
            raise CliFail("nobody confirmed maintenance mode on the device: nothing was copied.",
                          exit_status(exc)) from None
        if exc.code is ProtocolError.ERR.UNKNOWN_COMMAND:
            raise CliFail("the capkey firmware on the board has no maintenance mode: hold * and # "
                          "while plugging it in, or erase its flash.", EXIT_DEVICE) from None
        raise CliFail(f"the board refused maintenance mode: {exc}", exit_status(exc)) from None
    except LinkError as exc:
        raise CliFail(f"cannot talk to the board on {port}: {exc}", exit_status(exc)) from None
    wait_for_port(port)
    return True


def wait_for_port(port: str, timeout: float = RESTART_WAIT) -> None:
    """Waits for a restarting board's port to open again (USB re-enumerates, a simulator listens
    again)."""
    time.sleep(1.0)  # the board restarts 100 ms after its answer: let the old port go first
    deadline = time.monotonic() + timeout
    while True:
        try:
            serial.serial_for_url(port, timeout=0).close()
            return
        except (OSError, serial.SerialException):
            if time.monotonic() > deadline:
                raise CliFail(f"the board did not come back on {port} within {timeout:.0f} s.",
                              EXIT_DEVICE) from None
            time.sleep(_POLL)


@click.command()
@click.option("--board", type=click.Choice(sorted(BOARD_ARCH)), required=True, help="Target board.")
@click.option("--port", required=True, help="Serial port of the board, e.g. /dev/ttyACM0.")
@click.option("--dry-run", is_flag=True, help="Stage the files and print the mpremote commands only.")
def deploy(board: str, port: str, dry_run: bool) -> None:
    """Compile the firmware for BOARD (mpy-cross) and copy it to the board on PORT.

    A board that runs capkey is asked for maintenance mode first: confirm with OK on its keypad."""
    click.echo(f"compiling for {board} ({BOARD_ARCH[board]})…", err=True)
    tree = stage(board)
    files = [p for p in tree.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    click.echo(f"{len(files)} files, {size / 1024:.1f} KB staged in {tree}", err=True)
    mpremote = shutil.which("mpremote") or str(Path(sys.executable).with_name("mpremote"))
    cmd = [mpremote, "connect", port, *deploy_commands(tree)]
    if dry_run:  # the three mpremote runs: copy, the board's check, restart
        for argv in (cmd, [mpremote, "connect", port, "exec", VERIFY],
                     [mpremote, "connect", port, "reset"]):
            click.echo(shlex.join(argv))
        return
    if not Path(port).exists() and not port.startswith(("rfc2217://", "socket://")):
        raise CliFail(f"no board on {port} (plug it in, or check the port with `capkey devices`).",
                      EXIT_DEVICE)
    if enter_maintenance(port):
        click.echo("the board is in maintenance mode; copying.", err=True)
    if subprocess.run(cmd).returncode:
        raise CliFail(f"copying to {port} failed (is the port in use?).", EXIT_DEVICE)
    checked = verify_copy(mpremote, port)
    click.echo(f"the board checked {checked} files against the build's SHA-256 manifest.",
               err=True)
    subprocess.run([mpremote, "connect", port, "reset"])
    click.echo("board flashed; it restarts on its home screen ('Choisir la fonction').", err=True)


COMMANDS = [deploy]
