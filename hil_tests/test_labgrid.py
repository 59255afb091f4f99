"""The HIL suite's board tests on a labgrid place, as a lab rig runs them: capkey_dev.lab.Rig on
127.0.0.1 (labgrid coordinator, exporter exporting the board's serial port through ser2net, a
lab-mode simulator behind a pseudo-terminal as the board, its power through labgrid's
ExternalPowerDriver), then the same board by its rfc2217:// URL and by its /dev path with
--device (no power switch named there: the tests that need one say so and skip). The tests that
need the simulator itself (sim_only: crash injection at write points, a fresh flash, its console)
are left out; everything else must pass on each of the three.

Needs root (labgrid's exporter exports serial ports under /dev/ only) and ser2net."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from capkey_dev.lab import Rig

pytestmark = [pytest.mark.sim_only, pytest.mark.slow]  # it starts a simulator of its own

HIL = Path(__file__).resolve().parent
BOARD_TESTS = "not sim_only and not browser"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("labgrid exports serial ports under /dev/ only: needs root")
    if shutil.which("ser2net") is None and not Path("/usr/sbin/ser2net").exists():
        pytest.skip("ser2net is not installed (make system)")
    with Rig(tmp_path_factory.mktemp("lab")) as r:
        yield r


def _suite(*args: str) -> tuple[dict[str, int], str]:
    """Runs the board tests of hil_tests with `args` -> (outcome counts, output)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsp", "-p", "no:cacheprovider",
         "-W", "ignore::DeprecationWarning", "-m", BOARD_TESTS, *args, str(HIL)],
        capture_output=True, text=True, timeout=900, cwd=HIL.parent)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", out)}
    return counts, out


def test_the_board_tests_pass_on_the_labgrid_place(rig):
    counts, out = _suite("--lg-env", str(rig.env))
    assert counts.get("passed", 0) >= 25, out[-2000:]  # the key and enrolment tests included
    # the power cuts went through labgrid's power driver: the power-up test, and the key tests
    # whose board is wiped with eight wrong PUKs and power cycles (key_support.wipe_keys)
    assert "PASSED hil_tests/test_home.py::test_power_up_shows_choisir_la_fonction" in out, out
    assert "PASSED hil_tests/test_key_pin.py::test_blocked_puk_wipes_every_key_and_says_so" in out
    assert "PASSED hil_tests/test_cert_enrol.py::test_revoked_certificate_is_refused" in out
    # power cuts at a sweep of moments in a code and in a signature (test_power_cuts.py)
    assert "PASSED hil_tests/test_power_cuts.py::test_a_power_cut_during_a_code_costs" in out, out
    assert "PASSED hil_tests/test_power_cuts.py::test_a_power_cut_during_a_signature_costs" in out
    assert "needs power control" not in out, out[-2000:]


@pytest.mark.parametrize("how", ["rfc2217", "tty"])
def test_the_board_tests_pass_on_the_boards_serial_urls(rig, how):
    url = rig.serial_url() if how == "rfc2217" else str(rig.node)
    counts, out = _suite("--device", url)
    assert counts.get("passed", 0) >= 11, out[-2000:]
    assert "needs power control" in out  # no power switch named: that one test says so
