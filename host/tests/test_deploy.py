"""The deploy path: what a board receives, and the mpremote session that copies it."""

from pathlib import Path

from capkey_dev.build import device_path, stage
from click.testing import CliRunner

from capkey._cli.__main__ import cli


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


def test_deploy_dry_run_prints_one_mpremote_session():
    result = CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "/dev/ttyACM9", "--dry-run"])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert "connect /dev/ttyACM9" in line and line.endswith("reset")
    assert ":board.mpy" in line and ":drivers/keypad_matrix.mpy" in line


def test_deploy_to_missing_port_is_one_clear_error():
    result = CliRunner().invoke(cli, ["deploy", "--board", "rpi_pico", "--port", "/dev/ttyACM9"])
    assert result.exit_code != 0
