"""Type-checks the real-board code (boards/drivers, boards/<name>/board.py) against the
MicroPython stubs of each board's port, with mypy. The boards cannot run here; this and
mpy-cross are how CI knows their code matches the port's API.

The stub packages replace the standard library's stubs, so each port gets its own folder
(installed once from PyPI under .venv/stubs/) instead of living in the host virtualenv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from capkey.catalog.boards import BOARDS
from capkey_dev.build import ROOT

STUBS_VERSION = "1.29.0.post1"
STDLIB_STUBS_VERSION = "1.29.0.post2"
PORTS: dict[str, list[str]] = {}  # port -> boards built on it (capkey.catalog.boards)
for _board in BOARDS.values():
    PORTS.setdefault(_board.port, []).append(_board.name)


def stubs_for(port: str) -> Path:
    target = Path(sys.prefix) / "stubs" / f"{port}-{STUBS_VERSION}"
    if not (target / "machine.pyi").exists():
        print(f"installing micropython-{port}-stubs into {target}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
             f"micropython-{port}-stubs=={STUBS_VERSION}",
             f"micropython-stdlib-stubs=={STDLIB_STUBS_VERSION}"],
            check=True,
        )
    return target


def check(port: str, board: str) -> int:
    """Checks the board module as the device sees it: board.py at the root, drivers/ beside it."""
    stubs = stubs_for(port)
    modules = ["board"] + [
        f"drivers.{p.stem}" for p in sorted((ROOT / "boards/drivers").glob("*.py"))
        if not p.name.startswith("test_") and p.name != "manifest.py"  # manifests are build input
    ]
    cmd = [
        sys.executable, "-m", "mypy", "--no-incremental", "--custom-typeshed-dir", str(stubs),
        "--python-version", "3.11", "--follow-imports", "silent", "--no-error-summary",
        "--disable-error-code", "import-untyped", "--check-untyped-defs",
    ]
    for module in modules:
        cmd += ["-m", module]
    path = [stubs, ROOT / "boards" / board, ROOT / "boards", ROOT / "firmware"]
    env = {"MYPYPATH": ":".join(map(str, path)), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    # The community stubs carry errors of their own; only findings in our code count.
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith(("boards/", "firmware/"))]
    failed = any(": error:" in line for line in ours)
    print(f"typecheck {board} against micropython-{port}-stubs: {'FAILED' if failed else 'ok'}")
    if failed:
        print("\n".join(ours))
    return int(failed)


def main() -> None:
    sys.exit(max(check(port, board) for port, boards in PORTS.items() for board in boards))


if __name__ == "__main__":
    main()
