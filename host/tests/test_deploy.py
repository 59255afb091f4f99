"""The deploy path: what a board receives, and the mpremote session that copies it."""

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from capkey_dev.build import MANIFEST, device_path, stage
from capkey_dev.cli import deploy as deploy_mod
from capkey_dev.sim import Simulator
from click.testing import CliRunner

from capkey._cli.__main__ import cli
from capkey._cli.util import EXIT_CANCELLED, EXIT_REFUSED, CliFail
from capkey.link.errors import DeviceTimeout, LinkError, ProtocolError


def test_device_paths_mirror_the_board_filesystem():
    assert device_path(Path("firmware/link/frame.py")) == Path("link/frame.py")
    assert device_path(Path("boards/drivers/ssd1306.py")) == Path("drivers/ssd1306.py")
    assert device_path(Path("boards/rpi_pico/board.py")) == Path("board.py")


def test_stage_has_board_and_drivers_as_mpy_and_no_tests():
    tree = stage("esp32s3")
    files = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert "board.mpy" in files and "drivers/ssd1306.mpy" in files
    assert not any(Path(f).name.startswith("test_") for f in files)
    assert not any(f.startswith("sim") or "mptest" in f for f in files)
    assert (tree / "board.mpy").read_bytes()[:2] == b"M\x06"  # .mpy format version 6


def test_deploy_dry_run_prints_the_copy_the_check_and_the_restart():
    result = CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "/dev/ttyACM9", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    destinations = re.findall(r" :(\S+)", out)
    assert "board.mpy" in destinations and "drivers/keypad_matrix.mpy" in destinations
    assert destinations[-1] == MANIFEST  # copied last: a cut copy has none, or the old one
    assert out.count("connect /dev/ttyACM9") == 3
    assert out.strip().endswith("connect /dev/ttyACM9 reset")
    assert "capkey-verify" in result.stdout


def test_deploy_to_missing_port_is_one_clear_error():
    result = CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "/dev/ttyACM9"])
    assert result.exit_code != 0


class _Board:
    """Device.open() of a board: answers the link (`runs_capkey`) and the person's answer."""

    def __init__(self, runs_capkey: bool = True, answer: LinkError.ERR = LinkError.ERR.OK):
        self.runs_capkey = runs_capkey
        self.answer = answer
        self.asked = 0

    @contextlib.contextmanager
    def open(self, url, *, hello_timeout=3.0):
        if not self.runs_capkey:
            raise DeviceTimeout("no answer to HELLO")
        yield self

    def maintenance(self, *, on_keepalive=None):
        self.asked += 1
        if on_keepalive is not None:
            on_keepalive(2)
        if self.answer != LinkError.ERR.OK:
            raise ProtocolError(self.answer)


@pytest.fixture
def board(monkeypatch):
    """A fake board on socket://127.0.0.1:9; the mpremote runs are recorded in board.copies."""
    b = _Board()
    b.copies = []
    monkeypatch.setattr(deploy_mod, "Device", b)
    monkeypatch.setattr(deploy_mod, "wait_for_port", lambda port: None)
    def run(cmd, **kw):
        if "exec" in cmd and deploy_mod.VERIFY in cmd:  # the board checks what it received
            return subprocess.CompletedProcess(cmd, 0, "capkey-verify 44\n", "")
        if cmd[-1] != "reset":
            b.copies.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(deploy_mod.subprocess, "run", run)
    return b


def _deploy():
    return CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "socket://127.0.0.1:9"])


def test_deploy_asks_a_capkey_board_for_maintenance_then_copies(board):
    result = _deploy()
    assert result.exit_code == 0, result.output
    assert board.asked == 1 and len(board.copies) == 1
    assert "OK on its keypad for maintenance mode" in result.stderr
    assert "maintenance mode; copying" in result.stderr


def test_deploy_refused_on_the_keypad_copies_nothing(board):
    board.answer = LinkError.ERR.DENIED
    fail = _deploy().exception  # main() prints a CliFail as one line with its status
    assert isinstance(fail, CliFail) and fail.status == EXIT_CANCELLED
    assert str(fail) == "maintenance mode refused on the device: nothing was copied."
    assert board.copies == []
    board.answer = LinkError.ERR.TIMEOUT
    fail = _deploy().exception
    assert isinstance(fail, CliFail) and fail.status == EXIT_REFUSED
    assert str(fail) == "nobody confirmed maintenance mode on the device: nothing was copied."
    assert board.copies == []


def test_deploy_to_a_board_at_its_repl_copies_at_once(board):
    board.runs_capkey = False  # plain MicroPython, or already in maintenance mode
    result = _deploy()
    assert result.exit_code == 0, result.output
    assert board.asked == 0 and len(board.copies) == 1


def test_deploy_makes_folders_relative_to_the_repl():
    tree = stage("rpi_pico")
    args = deploy_mod.deploy_commands(tree)
    mkdirs = [a for a in args if "os.mkdir" in a]
    assert mkdirs and all("os.mkdir('/" not in a for a in mkdirs)


def test_deploy_copies_the_manifest_last_and_the_board_checks_every_file(tmp_path):
    """A real copy: into a simulator in maintenance mode (its REPL on its port), then the board's
    own SHA-256 check of every file; a file damaged after the copy is named."""
    tree = stage("rpi_pico")
    digests = json.loads((tree / MANIFEST).read_text())["files"]
    assert len(digests) > 20 and MANIFEST not in digests
    copies = [a for a in deploy_mod.deploy_commands(tree) if a.startswith(":")]
    assert copies[-1] == f":{MANIFEST}"
    mpremote = str(Path(sys.executable).with_name("mpremote"))
    with Simulator(tmp_path / "flash", register=False, held_keys="*#") as sim:
        copy = subprocess.run([mpremote, "connect", sim.url, *deploy_mod.deploy_commands(tree)],
                              capture_output=True, text=True, timeout=300)
        assert copy.returncode == 0, copy.stderr
        assert deploy_mod.verify_copy(mpremote, sim.url) == len(digests)
        damaged = tmp_path / "flash" / "ui" / "screen.mpy"
        damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
        (tmp_path / "flash" / "catalog.mpy").unlink()
        with pytest.raises(CliFail, match=r"differs from the build.*catalog\.mpy.*ui/screen\.mpy"
                           r"|differs from the build.*ui/screen\.mpy.*catalog\.mpy"):
            deploy_mod.verify_copy(mpremote, sim.url)
