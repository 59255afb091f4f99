"""`capkey doctor` and `capkey udev` (issue 14): readable lines against a simulator, a missing port,
a port this user may not open or that ModemManager holds; the udev rules cover the catalogue's USB
IDs and are installed where asked."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from capkey_dev.sim import Simulator
from test_cli_hygiene import run

from capkey.catalog.boards import USB_IDS
from capkey.link import doctor
from capkey.link.device import DeviceInfo, SelfTest
from capkey.link.doctor import Status, diagnose, install_udev_rules, udev_rules
from capkey.link.errors import LinkError, ProtocolError

LINE = re.compile(r"^(OK|WARN|FAIL) +[a-z ]+: \S.*$")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Simulator(tmp_path_factory.mktemp("doctor") / "flash", register=False).start()
    yield s
    s.stop()


def test_doctor_against_a_simulator_all_ok(sim, capsys):
    status, out, err = run(capsys, "doctor", "--device", sim.url)
    lines = out.splitlines()
    assert status == 0 and not err
    assert all(LINE.match(line) for line in lines), lines
    assert [line.split()[1].rstrip(":") for line in lines] == [
        "link", "micropython", "protocol", "firmware", "apps", "heap", "flash", "display",
        "keypad", "clock"]
    assert all(line.startswith("OK") for line in lines)
    assert "no key down" in out and "wall clock within 300 s of this host" in out


def test_doctor_finds_a_stuck_key_and_a_board_clock_that_is_off(tmp_path, capsys):
    # a key held down since power-up, as a stuck or shorted key reads; the host's clock an hour on
    with Simulator(tmp_path / "flash", register=False, held_keys="5") as stuck:
        checks = diagnose(stuck.url, host_version="0.1.0",
                          now=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        status, out, _ = run(capsys, "doctor", "--device", stuck.url)
    by_name = {c.name: c for c in checks}
    assert by_name["keypad"].status is Status.FAIL and "key 5 down" in by_name["keypad"].detail
    assert "stuck" in by_name["keypad"].fix
    assert by_name["clock"].status is Status.WARN
    assert re.search(r"wall clock -360[01] s from this host", by_name["clock"].detail)
    assert by_name["display"].status is Status.OK
    assert status == 3 and "FAIL  keypad: key 5 down" in out


def test_selftest_lines_for_a_failing_panel_no_clock_and_old_firmware():
    now = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
    panel = SelfTest(False, "OSError(5,)", "", 61_000, None)
    lines = {c.name: c for c in doctor._selftest_checks(panel, now)}
    assert lines["display"].status is Status.FAIL and "OSError(5,)" in lines["display"].detail
    assert lines["clock"].status is Status.OK and "up 61 s; no wall clock set" in lines[
        "clock"].detail
    (old,) = doctor._selftest_checks(ProtocolError(LinkError.ERR.UNKNOWN_COMMAND), now)
    assert old.status is Status.WARN and old.name == "self-test" and "deploy" in old.fix


def test_doctor_names_the_app_slot_and_an_update_given_up():
    info = DeviceInfo(firmware_version="0.1.0", protocol_version=1, slot="b")
    line = doctor._firmware_check(info, "0.1.0")
    assert line.status is Status.OK and line.detail == "0.1.0, as this capkey (app slot b)"
    info = DeviceInfo(firmware_version="0.1.0", protocol_version=1, slot="a failed=b")
    line = doctor._firmware_check(info, "0.2.0")
    assert line.status is Status.WARN and "given up" in line.detail and "deploy" in line.fix


def test_doctor_on_a_missing_port_says_what_to_do(capsys):
    status, out, _ = run(capsys, "doctor", "--device", "/dev/ttyNOPE0")
    assert status == 3
    assert out.splitlines() == [out.splitlines()[0]] and out.startswith("FAIL  port: /dev/ttyNOPE0")
    assert "plug the board in" in out


def test_a_file_is_not_a_port(tmp_path):
    path = tmp_path / "ttyACM0"
    path.write_text("")
    (check,) = diagnose(str(path), host_version="0.1.0", holders=lambda p: [])
    assert check.status is Status.FAIL and "not a serial device" in check.detail


def test_a_port_this_user_may_not_open_and_one_modemmanager_holds(monkeypatch):
    # /dev/null stands for the port: a character device; the tests run as root, so the answer of
    # os.access is what a user outside its group would get
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: False)
    checks = diagnose("/dev/null", host_version="0.1.0",
                      holders=lambda p: [(4242, "ModemManager")])
    by_name = {c.name: c for c in checks}
    assert by_name["permission"].status is Status.FAIL
    assert "usermod -aG" in by_name["permission"].fix and "udev --install" in by_name["permission"].fix
    assert by_name["port holder"].status is Status.FAIL
    assert "ModemManager (pid 4242)" in by_name["port holder"].detail
    assert "link" not in by_name  # the board is not asked while its port is unusable


def test_port_holders_reads_proc(tmp_path):
    proc = tmp_path / "proc"
    (proc / "77" / "fd").mkdir(parents=True)
    (proc / "77" / "comm").write_text("brltty\n")
    (proc / "77" / "fd" / "3").symlink_to("/dev/null")
    (proc / "self").mkdir()
    assert doctor.port_holders("/dev/null", proc=proc) == [(77, "brltty")]


def test_udev_rules_cover_every_usb_id_and_install(tmp_path, monkeypatch, capsys):
    rules = udev_rules()
    for vid, pid in USB_IDS:
        assert f'ATTRS{{idVendor}}=="{vid:04x}", ATTRS{{idProduct}}=="{pid:04x}"' in rules
    assert rules.count('ENV{ID_MM_DEVICE_IGNORE}="1"') == len(USB_IDS)
    status, out, _ = run(capsys, "udev")
    assert status == 0 and out == rules
    ran = []
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/udevadm")
    target = tmp_path / "60-capkey.rules"
    done = install_udev_rules(target, run=ran.append)
    assert target.read_text() == rules and done[0] == f"wrote {target}"
    assert ran == [["/usr/bin/udevadm", "control", "--reload-rules"],
                   ["/usr/bin/udevadm", "trigger", "--subsystem-match=tty"]]
    assert doctor._udev_check(target).status is Status.OK
    target.write_text(rules.replace("0660", "0666"))
    assert doctor._udev_check(target).status is Status.WARN
    assert doctor._udev_check(tmp_path / "none.rules").status is Status.WARN


def test_udev_install_where_it_may_not_write_is_one_line(tmp_path, capsys):
    status, _, err = run(capsys, "udev", "--install", "--path", str(tmp_path / "no" / "dir.rules"))
    assert status == 2 and err.startswith("Error: cannot install the rules") and err.count("\n") == 1


def test_micropython_versions_other_than_the_tested_one_warn():
    assert doctor._micropython_check("1.29.0", "rp2").status is Status.OK
    older = doctor._micropython_check("1.22.2", "rp2")
    assert older.status is Status.WARN and "tested with 1.29" in older.detail
    assert doctor._micropython_check("", "").status is Status.WARN  # an older firmware's INFO


def test_a_board_speaking_another_protocol_is_told_to_update(monkeypatch):
    def no_common_version(url, **kw):
        raise doctor.VersionMismatch((1, 1), (2, 3))

    monkeypatch.setattr(doctor.Device, "open", no_common_version)
    (check,) = diagnose("socket://127.0.0.1:9", host_version="0.1.0")
    assert (check.status, check.name) == (Status.FAIL, "protocol")
    assert "2..3" in check.detail and "capkey deploy" in check.fix
