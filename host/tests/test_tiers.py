"""The host tiers import downward only: `make lint` runs import-linter over host/importlinter.ini.
Proved both ways: the tree as it is keeps every contract, and a copy of it with one upward import
added breaks the build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
CONFIG = ROOT / "host" / "importlinter.ini"


def _lint(pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{pythonpath}{':' + str(pythonpath / 'dev')}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([LINT_IMPORTS, "--config", str(CONFIG), "--no-cache"], cwd=pythonpath,
                          env=env, capture_output=True, text=True, timeout=120)


def _copy(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    ignore = shutil.ignore_patterns("__pycache__", "tests")
    shutil.copytree(ROOT / "host" / "capkey", host / "capkey", ignore=ignore)
    shutil.copytree(ROOT / "host" / "dev" / "capkey_dev", host / "dev" / "capkey_dev", ignore=ignore)
    return host


def test_the_tree_keeps_every_contract(tmp_path):
    proc = _lint(_copy(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_an_upward_import_breaks_the_build(tmp_path):
    host = _copy(tmp_path)
    hazmat = host / "capkey" / "emv" / "hazmat.py"
    hazmat.write_text(hazmat.read_text() + "\nfrom ..rules import AuthService  # noqa: E402\n")
    proc = _lint(host)
    assert proc.returncode == 1
    assert "capkey.emv.hazmat -> capkey.rules" in proc.stdout


def test_the_library_never_imports_the_developer_tools(tmp_path):
    host = _copy(tmp_path)
    device = host / "capkey" / "link" / "device.py"
    device.write_text(device.read_text() + "\nimport capkey_dev.sim  # noqa: E402\n")
    proc = _lint(host)
    assert proc.returncode == 1
    assert "capkey is not allowed to import capkey_dev" in proc.stdout
