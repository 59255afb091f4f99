"""`capkey deploy`: cross-compile the firmware for a board and copy it over USB with mpremote, as
an update with rollback (firmware/slots.py; docs/boards.md, "Update and rollback").

A board that already runs capkey does not let mpremote in (its link owns the USB stream and
Ctrl-C is off): deploy first asks it for maintenance mode over the link (the person confirms on
the keypad), waits for it to restart with its REPL, then copies. A board that does not answer the
link (plain MicroPython, or already in maintenance mode) gets the copy at once.

The copy goes into the app slot that does not run (the running app stays whole until the
switch), its manifest of SHA-256 digests last, and the board hashes every file where it landed.
The two files of the flash root (/main.py, /slots.mpy) are copied beside their old copies and
renamed over them. Then the board switches to the new slot (one atomic write), restarts, and the
new app confirms itself after a good start; one that does not is given up, and the board comes
back on the app it ran before. deploy watches the restart and says which one runs."""

from __future__ import annotations

import hashlib
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
from capkey_dev.build import APP, BOARD_ARCH, DEPLOY_TARGETS, MANIFEST, SIM, host_arch, stage

HELLO_WAIT = 2.0  # seconds a board has to answer the link before deploy takes it for a REPL
RESTART_WAIT = 15.0  # seconds for a board to come back after a restart
SETTLE_WAIT = 45.0  # seconds for a new app to confirm itself or be given up (slots.BOUND_MS: 30)
_POLL = 0.2
ROOT_FILES = ("main.py", "slots.mpy")  # the flash root's, outside the slots: see stage()

# Run by the board at its REPL, in its flash root ("/" on a board, the folder of a simulator).
_ROOT = "import os\nr = os.getcwd()\nr = '' if r == '/' else r\n"
# The slot an update goes into, and the slot state; "none" when no slot was ever written.
WHERE = f"""{_ROOT}try:
    import slots
    print('capkey-slots', slots.target(r), slots.status(r) or 'none')
except ImportError:
    print('capkey-slots a none')
"""


def prepare(slot: str) -> str:
    """Empties the folder of `slot` (what an earlier copy left there)."""
    return f"""import os
def rm(p):
    for e in os.ilistdir(p):
        q = p + '/' + e[0]
        if e[1] == 0x4000:
            rm(q)
            os.rmdir(q)
        else:
            os.remove(q)
try:
    rm('app_{slot}')
except OSError:
    os.mkdir('app_{slot}')
"""


def copy_commands(tree: Path, slot: str) -> list[str]:
    """One chained mpremote session: empty the slot, make its folders, copy every file of the
    app with its manifest last, then the flash root's files beside their old copies (.new).
    mpremote prints each step, which is the progress a person sees."""
    app = tree / APP
    files = sorted((p for p in app.rglob("*") if p.is_file()), key=lambda p: p.name == MANIFEST)
    dirs = sorted({p.parent.relative_to(app) for p in files} - {Path(".")})
    args = ["exec", prepare(slot)]
    for d in dirs:
        # relative to the REPL's folder: / on a board, the storage folder on a simulator
        args += ["+", "exec", f"import os\ntry: os.mkdir('app_{slot}/{d.as_posix()}')\n"
                             "except OSError: pass"]
    for f in files:
        args += ["+", "fs", "cp", str(f), f":app_{slot}/{f.relative_to(app).as_posix()}"]
    for name in ROOT_FILES:
        args += ["+", "fs", "cp", str(tree / name), f":{name}.new"]
    return args


def root_digests(tree: Path) -> dict[str, str]:
    """The SHA-256 of the staged flash-root files, which the board checks beside the slot's."""
    return {n: hashlib.sha256((tree / n).read_bytes()).hexdigest() for n in ROOT_FILES}


def verify_script(slot: str, roots: dict[str, str]) -> str:
    """Hashes every file of the slot's manifest where it landed, and the root files' new copies:
    prints "capkey-verify <files checked> <bad file>...". """
    return f"""import hashlib, json, binascii
buf = bytearray(512)
def sha(p):
    d = hashlib.sha256()
    try:
        with open(p, 'rb') as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                d.update(buf[:n])
    except OSError:
        return None
    return binascii.hexlify(d.digest()).decode()
m = json.load(open('app_{slot}/{MANIFEST}'))['files']
bad = [p for p in m if sha('app_{slot}/' + p) != m[p]]
root = {roots!r}
bad += [p for p in root if sha(p + '.new') != root[p]]
print('capkey-verify', len(m) + len(root), *bad)
"""


def switch_script(slot: str) -> str:
    """Puts the root files' new copies in place (each rename is atomic), then makes `slot` the
    app the next boot tries (slots.switch: by the slots module the board booted with, or the
    one just copied on a board from before the slots; the state's format stays readable by
    both)."""
    return f"""{_ROOT}for n in {ROOT_FILES!r}:
    os.rename(n + '.new', n)
import slots
slots.switch('{slot}', r)
print('capkey-switched', slots.status(r))
"""


class BoardRepl:
    """mpremote runs against a board at its REPL."""

    def __init__(self, port: str):
        self.port = port
        self.mpremote = shutil.which("mpremote") or str(Path(sys.executable).with_name("mpremote"))

    def argv(self, *args: str) -> list[str]:
        return [self.mpremote, "connect", self.port, *args]

    def run(self, *args: str) -> None:
        """Runs with mpremote's output on the terminal (its progress)."""
        if subprocess.run(self.argv(*args)).returncode:
            raise CliFail(f"copying to {self.port} failed (is the port in use?).", EXIT_DEVICE)

    def answer(self, code: str, marker: str) -> list[str]:
        """Runs `code` on the board; the words of the line it printed starting with `marker`."""
        proc = subprocess.run(self.argv("exec", code), capture_output=True, text=True)
        words = next((line.split() for line in proc.stdout.splitlines()
                      if line.startswith(marker)), None)
        if proc.returncode or words is None:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise CliFail(f"the board did not answer {marker} ({detail[-1] if detail else 'no output'})",
                          EXIT_DEVICE)
        return words[1:]


def verify_copy(repl: BoardRepl, slot: str, roots: dict[str, str]) -> int:
    """Has the board check every file it received against the build's digests; returns how many
    it checked. CliFail naming the files that differ or are missing (nothing was switched:
    deploy again)."""
    words = repl.answer(verify_script(slot, roots), "capkey-verify")
    if len(words) > 1:
        raise CliFail(f"the copy differs from the build on the board: {', '.join(words[1:])}; "
                      "deploy again (the board still runs its app).", EXIT_DEVICE)
    return int(words[0])


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


def settle(port: str, slot: str, timeout: float = SETTLE_WAIT) -> str:
    """After the switch: waits until the board's app confirmed itself or was given up, and
    returns its INFO slot line. CliFail when the new app was given up."""
    wait_for_port(port)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with Device.open(port, hello_timeout=HELLO_WAIT) as dev:
                info = dev.info()
        except (LinkError, OSError, serial.SerialException) as exc:
            last = str(exc)  # restarting again (a fallback), or still booting
            time.sleep(_POLL)
            continue
        running = info.slot.split()[0] if info.slot else ""
        if running == slot and "trial" not in info.slot:
            return f"{info.firmware_version} in slot {slot}"
        if running != slot:
            raise CliFail(f"the new firmware did not start and was given up: the board is back on "
                          f"{info.firmware_version} (slot {info.slot}); its console says why "
                          "(maintenance mode, mpremote).", EXIT_DEVICE)
        time.sleep(_POLL)
    raise CliFail(f"the board did not settle on the new firmware within {timeout:.0f} s "
                  f"({last}).", EXIT_DEVICE)


@click.command()
@click.option("--board", type=click.Choice(DEPLOY_TARGETS), required=True,
              help="Target board (sim: a simulator on this machine).")
@click.option("--port", required=True, help="Serial port of the board, e.g. /dev/ttyACM0.")
@click.option("--dry-run", is_flag=True, help="Stage the files and print the mpremote commands only.")
def deploy(board: str, port: str, dry_run: bool) -> None:
    """Compile the firmware for BOARD (mpy-cross) and install it on the board on PORT as an
    update with rollback.

    A board that runs capkey is asked for maintenance mode first: confirm with OK on its keypad."""
    arch = host_arch() if board == SIM else BOARD_ARCH[board]
    click.echo(f"compiling for {board} ({arch})…", err=True)
    tree = stage(board)
    install(tree, port, dry_run=dry_run)


def install(tree: Path, port: str, *, dry_run: bool = False) -> str | None:
    """Installs the staged `tree` (capkey_dev.build.stage) on the board on PORT; returns what
    the board runs then ("2.0.0 in slot b"). CliFail when it could not, or gave the update up."""
    files = [p for p in tree.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    click.echo(f"{len(files)} files, {size / 1024:.1f} KB staged in {tree}", err=True)
    repl = BoardRepl(port)
    roots = root_digests(tree)
    if dry_run:  # the mpremote runs, for the slot a board from before the slots gets
        for args in (("exec", WHERE), tuple(copy_commands(tree, "a")),
                     ("exec", verify_script("a", roots)), ("exec", switch_script("a")),
                     ("reset",)):
            click.echo(shlex.join(repl.argv(*args)))
        return None
    if not Path(port).exists() and not port.startswith(("rfc2217://", "socket://")):
        raise CliFail(f"no board on {port} (plug it in, or check the port with `capkey devices`).",
                      EXIT_DEVICE)
    if enter_maintenance(port):
        click.echo("the board is in maintenance mode.", err=True)
    slot, *words = repl.answer(WHERE, "capkey-slots")
    state = " ".join(words)  # "b failed=a"
    click.echo(f"copying into app slot {slot} (the board runs: "
               f"{'slot ' + state if state != 'none' else 'no slot yet'}).", err=True)
    repl.run(*copy_commands(tree, slot))
    checked = verify_copy(repl, slot, roots)
    click.echo(f"the board checked {checked} files against the build's SHA-256 digests.", err=True)
    repl.answer(switch_script(slot), "capkey-switched")
    subprocess.run(repl.argv("reset"), capture_output=True)
    click.echo(f"switched to slot {slot}; the board restarts and the new firmware confirms itself…",
               err=True)
    runs = settle(port, slot)
    click.echo(f"board updated: it runs {runs}, on its home screen ('Choisir la fonction').",
               err=True)
    return runs


COMMANDS = [deploy]
