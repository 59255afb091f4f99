"""Collects firmware unit tests (firmware/**/test_*.py, boards/**/test_*.py) and runs each test
function inside the MicroPython unix port with the Pico's heap size, so firmware code is tested by
the interpreter it ships to."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
PICO_HEAP = "190k"
_TEST_DEF = re.compile(r"^(?:async\s+)?def\s+(test_\w+)\s*\(", re.M)


def _is_firmware(path: Path) -> bool:
    rel = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else None
    return rel is not None and rel.parts[0] in ("firmware", "boards")


def pytest_pycollect_makemodule(module_path, parent):
    if _is_firmware(Path(module_path)):
        return MicroPythonFile.from_parent(parent, path=Path(module_path))
    return None


class MicroPythonFile(pytest.File):
    def collect(self):
        for name in _TEST_DEF.findall(self.path.read_text()):
            yield MicroPythonItem.from_parent(self, name=name)


class MicroPythonItem(pytest.Item):
    # no pytest fixtures inside MicroPython; plugins that look (labgrid's) find none
    fixturenames: tuple[str, ...] = ()

    def runtest(self):
        cmd = [
            MICROPYTHON, "-X", f"heapsize={PICO_HEAP}", str(ROOT / "boards/sim/mptest.py"),
            str(ROOT), str(self.path), self.name,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
        if proc.returncode != 0 or f"PASS {self.name}" not in proc.stdout:
            raise MicroPythonFailure(proc.stdout + proc.stderr)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonFailure):
            return f"MicroPython test failed:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"[micropython] {self.name}"


class MicroPythonFailure(Exception):
    pass
