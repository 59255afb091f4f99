"""The deploy path: what a board receives, and the mpremote session that copies it."""

import contextlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from capkey_dev.build import APP, MANIFEST, STARTER, device_path, stage
from capkey_dev.cli import deploy as deploy_mod
from capkey_dev.sim import Simulator
from click.testing import CliRunner

from capkey._cli.__main__ import cli
from capkey._cli.util import EXIT_CANCELLED, EXIT_DEVICE, EXIT_REFUSED, CliFail
from capkey.link.device import DeviceInfo
from capkey.link.errors import DeviceTimeout, LinkError, ProtocolError


def test_device_paths_mirror_the_board_filesystem():
    assert device_path(Path("firmware/link/frame.py")) == Path("link/frame.py")
    assert device_path(Path("boards/drivers/ssd1306.py")) == Path("drivers/ssd1306.py")
    assert device_path(Path("boards/rpi_pico/board.py")) == Path("board.py")


def test_stage_has_the_root_files_and_the_app_with_board_and_drivers_as_mpy():
    tree = stage("esp32s3")
    files = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert {"main.py", "slots.mpy"} <= files  # the flash root, outside the slots
    assert "app/board.mpy" in files and "app/drivers/ssd1306.mpy" in files
    assert "app/main.mpy" in files and "app/slots.mpy" not in files
    assert not any(Path(f).name.startswith("test_") for f in files)
    assert not any("sim" in Path(f).parts or "mptest" in f for f in files)
    assert (tree / "app/board.mpy").read_bytes()[:2] == b"M\x06"  # .mpy format version 6
    assert (tree / "main.py").read_text() == STARTER


def test_the_simulator_target_has_the_firmware_alone():
    tree = stage("sim")
    app = {p.relative_to(tree / APP).as_posix() for p in (tree / APP).rglob("*") if p.is_file()}
    assert "main.mpy" in app and "crypto/p256_comb.bin" in app
    assert not any(f.startswith(("drivers/", "board")) for f in app)


def test_deploy_dry_run_prints_the_copy_the_check_the_switch_and_the_restart():
    result = CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "/dev/ttyACM9", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    destinations = re.findall(r" :(\S+)", out)
    assert "app_a/board.mpy" in destinations and "app_a/drivers/keypad_matrix.mpy" in destinations
    # the manifest after the app's files; the root files beside their old copies, last
    assert destinations[-3:] == [f"app_a/{MANIFEST}", "main.py.new", "slots.mpy.new"]
    assert out.count("connect /dev/ttyACM9") == 5
    assert out.strip().endswith("connect /dev/ttyACM9 reset")
    assert "capkey-verify" in out and "slots.switch" in out


def test_deploy_to_missing_port_is_one_clear_error():
    result = CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "/dev/ttyACM9"])
    assert result.exit_code != 0


class _Board:
    """Device.open() of a board: answers the link (`runs_capkey`) and the person's answer; after
    the switch and the restart, INFO says `runs_slot`."""

    def __init__(self, runs_capkey: bool = True, answer: LinkError.ERR = LinkError.ERR.OK):
        self.runs_capkey = runs_capkey
        self.answer = answer
        self.asked = 0
        self.copies: list[list[str]] = []
        self.runs_slot = "b"

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

    def info(self):
        return DeviceInfo(firmware_version="0.1.0", slot=self.runs_slot)

    def mpremote(self, cmd, **kw):
        code = cmd[cmd.index("exec") + 1] if cmd[3:4] == ["exec"] else ""
        for marker, answer in (("capkey-slots", "a"), ("capkey-verify", "44"),
                               ("capkey-switched", "b trial")):
            if f"print('{marker}'" in code:
                out = f"{marker} b {answer}\n" if marker == "capkey-slots" else f"{marker} {answer}\n"
                return subprocess.CompletedProcess(cmd, 0, out, "")
        if cmd[-1] == "reset":
            self.runs_capkey = True
        else:
            self.copies.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)


@pytest.fixture
def board(monkeypatch):
    """A fake board on socket://127.0.0.1:9; the mpremote runs are recorded in board.copies."""
    b = _Board()
    monkeypatch.setattr(deploy_mod, "Device", b)
    monkeypatch.setattr(deploy_mod, "wait_for_port", lambda port: None)
    real_run = subprocess.run  # the module is shared: mpy-cross (the build) must still run

    def run(cmd, **kw):
        if Path(cmd[0]).name == "mpremote":
            return b.mpremote(cmd, **kw)
        return real_run(cmd, **kw)

    monkeypatch.setattr(deploy_mod.subprocess, "run", run)
    return b


def _deploy():
    return CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "socket://127.0.0.1:9"])


def test_deploy_asks_a_capkey_board_for_maintenance_then_copies_beside_the_running_app(board):
    result = _deploy()
    assert result.exit_code == 0, result.output
    assert board.asked == 1 and len(board.copies) == 1
    assert "OK on its keypad for maintenance mode" in result.stderr
    assert "copying into app slot b (the board runs: slot a)" in result.stderr
    assert ":app_b/main.mpy" in board.copies[0]
    assert "board updated: it runs 0.1.0 in slot b" in result.stderr


def test_deploy_says_when_the_board_gave_the_update_up(board):
    board.runs_slot = "a failed=b"
    fail = _deploy().exception
    assert isinstance(fail, CliFail) and fail.status == EXIT_DEVICE
    assert "did not start and was given up: the board is back on 0.1.0 (slot a failed=b)" in \
        str(fail)


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
    args = deploy_mod.copy_commands(stage("rpi_pico"), "b")
    mkdirs = [a for a in args if "os.mkdir" in a]
    assert mkdirs and all("os.mkdir('/" not in a for a in mkdirs)


def test_the_board_checks_every_file_it_received(tmp_path):
    """A real copy: into a simulator in maintenance mode (its REPL on its port), then the board's
    own SHA-256 check of every file; a file damaged after the copy is named."""
    tree = stage("rpi_pico")
    digests = json.loads((tree / APP / MANIFEST).read_text())["files"]
    assert len(digests) > 20 and MANIFEST not in digests
    roots = deploy_mod.root_digests(tree)
    with Simulator(tmp_path / "flash", register=False, held_keys="*#") as sim:
        repl = deploy_mod.BoardRepl(sim.url)
        repl.run(*deploy_mod.copy_commands(tree, "a"))
        assert deploy_mod.verify_copy(repl, "a", roots) == len(digests) + 2
        damaged = tmp_path / "flash" / "app_a" / "ui" / "screen.mpy"
        damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
        (tmp_path / "flash" / "app_a" / "catalog.mpy").unlink()
        (tmp_path / "flash" / "slots.mpy.new").write_bytes(b"")
        with pytest.raises(CliFail, match=r"differs from the build on the board: (catalog\.mpy, ui/screen\.mpy|"
                           r"ui/screen\.mpy, catalog\.mpy), slots\.mpy"):
            deploy_mod.verify_copy(repl, "a", roots)
