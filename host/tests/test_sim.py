"""capkey_dev.sim: starting, stopping, unplugging and plugging back the simulator, its registry file,
reboots and the power-cut injection, with the real firmware."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import pytest
from capkey_dev.sim import PROFILES, REBOOT_EXIT, Simulator, SimulatorError, running_simulators

from capkey.emv.issuer import TEST_IMK_LABEL, SoftwareIssuerBackend, personalisation_data
from capkey.emv.profiles import VISA_DPA_CVN10
from capkey.link.device import Device, scan_devices, sims_dir
from capkey.link.errors import LinkError
from capkey.link.transport import Transport


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Registry files go to a temporary home, not the developer's ~/.cache."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("CAPKEY_CRASH_AT", raising=False)
    monkeypatch.delenv("CAPKEY_CRASH_TAG", raising=False)
    return h


@pytest.fixture
def sims():
    made: list[Simulator] = []

    def make(*args, **kwargs) -> Simulator:
        s = Simulator(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def _device(url: str, timeout: float = 10.0) -> contextlib.closing[Device]:
    """A connection to the device at `url` (retried while it starts), closed by `with`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return contextlib.closing(Device(Transport.open(url)))
        except LinkError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_registry_stop(sims, tmp_path, home):
    s = sims(tmp_path / "flash")
    assert not s.running and s.pid is None
    s.start()
    assert s.running and _alive(s.pid)
    assert s.url == f"socket://127.0.0.1:{s.port}"
    assert f"capkey-sim listening on 127.0.0.1:{s.port}" in s.console
    entry = json.loads((sims_dir() / f"{s.port}.json").read_text())
    assert entry == {"url": s.url, "pid": s.pid, "storage": str(tmp_path / "flash"),
                     "board_profile": "rpi_pico"}
    assert sims_dir() == home / ".cache" / "capkey" / "sims"
    assert running_simulators() == [entry]
    assert [c.url for c in scan_devices(usb=False)] == [s.url]  # capkey devices sees it
    with _device(s.url) as dev:
        info = dev.info()
        assert info.board == "sim"
        dev.ping(b"hello")
    pid = s.pid
    s.stop()
    assert not s.running and s.exited and not _alive(pid)
    assert not (sims_dir() / f"{s.port}.json").exists()
    assert running_simulators() == []
    with pytest.raises(LinkError):
        Transport.open(s.url)


def test_kill_and_start_again_is_the_same_device(sims, tmp_path):
    s = sims(tmp_path / "flash").start()
    with _device(s.url) as dev:
        serial = dev.info().serial
    port, pid = s.port, s.pid
    s.kill()
    assert s.returncode == -9 and not _alive(pid)
    assert not s.registry_file.exists()  # unplugged: not listed any more
    s.start()
    assert s.port == port and s.pid != pid
    assert s.registry_file.exists()
    with _device(s.url) as dev:
        assert dev.info().serial == serial
    # a second folder is a second device
    other = sims(tmp_path / "other").start()
    with _device(other.url) as dev:
        assert dev.info().serial != serial


def test_start_twice_is_refused(sims, tmp_path):
    s = sims(tmp_path / "flash").start()
    with pytest.raises(SimulatorError, match="already running"):
        s.start()


def test_reboot_restarts_the_process(sims, tmp_path):
    s = sims(tmp_path / "flash").start()
    pid = s.pid
    with _device(s.url) as dev:
        dev.reboot()
    deadline = time.monotonic() + 10
    while s.reboots == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s.reboots == 1
    s.wait_ready()
    assert s.running and s.pid != pid and not s.exited
    assert json.loads(s.registry_file.read_text())["pid"] == s.pid
    with _device(s.url) as dev:
        dev.ping()
    s.stop()
    assert s.reboots == 1 and s.returncode != REBOOT_EXIT


def test_crash_injection_kills_at_the_write_point(sims, tmp_path):
    s = sims(tmp_path / "flash", crash_at=1, crash_tag="cap_state:").start()
    backend = SoftwareIssuerBackend.for_tests()
    data = personalisation_data(backend, profile=VISA_DPA_CVN10, imk_label=TEST_IMK_LABEL,
                                pan="4974000012345678", psn=1, pin="1234", pin_try_limit=3)
    with _device(s.url) as dev, pytest.raises(LinkError):
        dev.call(0x21, bytes(data))  # PERSONALISE: its first save hits write point 1, the plug goes
    assert s.wait_exit(10) == -9
    assert "plug pulled at write point cap_state:begin" in s.console
    assert s.exited and not s.registry_file.exists()
    s.crash_at = None
    s.start()
    with _device(s.url) as dev:
        dev.ping()


def test_crash_settings_do_not_leak_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPKEY_CRASH_AT", "1")
    monkeypatch.setenv("CAPKEY_CRASH_TAG", "x")
    env = Simulator(tmp_path)._env()
    assert "CAPKEY_CRASH_AT" not in env and "CAPKEY_CRASH_TAG" not in env
    assert env["CAPKEY_SIM_PARENT"] == str(os.getpid())
    env = Simulator(tmp_path, crash_at=3, crash_tag="pin")._env()
    assert (env["CAPKEY_CRASH_AT"], env["CAPKEY_CRASH_TAG"]) == ("3", "pin")
    with pytest.raises(ValueError):
        Simulator(tmp_path, crash_at=0)


def test_held_keys_reach_the_next_power_up_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPKEY_SIM_HELD_KEYS", "*#")
    assert "CAPKEY_SIM_HELD_KEYS" not in Simulator(tmp_path)._env()
    assert Simulator(tmp_path, held_keys="#*")._env()["CAPKEY_SIM_HELD_KEYS"] == "#*"
    with pytest.raises(ValueError, match="held_keys"):
        Simulator(tmp_path, held_keys="*x")


def test_profiles_set_the_heap(sims, tmp_path):
    assert PROFILES["rpi_pico"] == 190 * 1024
    cmd = Simulator(tmp_path, board_profile="rpi_pico").command()
    assert cmd[1:3] == ["-X", f"heapsize={190 * 1024}"]
    assert "--board-profile" in cmd and cmd[-1] == "rpi_pico"
    with pytest.raises(ValueError, match="unknown board profile"):
        Simulator(tmp_path, board_profile="arduino")
    pico2 = sims(tmp_path / "p2", board_profile="rpi_pico2").start()
    pico = sims(tmp_path / "p1").start()
    with _device(pico2.url) as d2, _device(pico.url) as d1:
        big, small = d2.info().heap_total, d1.info().heap_total
    assert small <= PROFILES["rpi_pico"] < big <= PROFILES["rpi_pico2"]


def test_port_in_use_is_a_clear_error(sims, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        s = sims(tmp_path / "flash", port=taken.getsockname()[1])
        with pytest.raises(SimulatorError, match="exited with code") as info:
            s.start()
    assert "EADDRINUSE" in str(info.value) or "Errno 98" in str(info.value)


def test_start_timeout_kills_and_shows_the_console(sims, tmp_path):
    # a "firmware" that prints but never opens its port
    root = tmp_path / "root"
    (root / "boards" / "sim").mkdir(parents=True)
    (root / "boards" / "sim" / "main.py").write_text(
        "import time\nprint('booting, slowly')\nwhile True:\n    time.sleep(1)\n"
    )
    s = sims(tmp_path / "flash", root=root)
    with pytest.raises(SimulatorError, match="did not open") as info:
        s.start(timeout=1.5)
    assert "booting, slowly" in str(info.value)
    assert not s.running


def test_context_manager(tmp_path):
    with Simulator(tmp_path / "flash") as s:
        assert s.running
        pid = s.pid
    assert not s.running and not _alive(pid)
