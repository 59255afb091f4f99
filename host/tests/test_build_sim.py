"""The simulator's .mpy tree (capkey_dev.build.stage_sim): the layout of the sources, its entry
script and data files as they are, modules compiled for the host (firmware/main.py too, as in an
app slot), rebuilt only when changed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from capkey_dev.build import MICROPYTHON, stage_sim


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    files = {
        "firmware/main.py": "import pkg.mod\nprint(pkg.mod.twice(21))\n",
        "firmware/pkg/mod.py": "import micropython\n\n@micropython.viper\ndef twice(x: int) -> int:\n    return x * 2\n",
        "firmware/pkg/test_mod.py": "def test_x():\n    pass\n",
        "firmware/pkg/manifest.py": "package('pkg')\n",
        "firmware/pkg/table.bin": "\x00\x01",
        "boards/sim/main.py": "print('entry')\n",
        "boards/sim/board.py": "NAME = 'sim'\n",
        "boards/sim/mptest.py": "pass\n",
        "boards/rpi_pico/board.py": "NAME = 'pico'\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _files(tree: Path) -> dict[str, int]:
    return {p.relative_to(tree).as_posix(): p.stat().st_mtime_ns for p in tree.rglob("*") if p.is_file()}


def test_tree_layout_and_native_code_runs(tmp_path):
    root = _root(tmp_path)
    tree = stage_sim(root)
    assert set(_files(tree)) == {
        "firmware/main.mpy", "firmware/pkg/mod.mpy", "firmware/pkg/table.bin",
        "boards/sim/main.py", "boards/sim/board.mpy",
    }
    assert (tree / "boards/sim/main.py").read_text() == (root / "boards/sim/main.py").read_text()
    # the viper function was compiled for this machine: the unix port runs it
    out = subprocess.run([MICROPYTHON, "-c", "import sys; sys.path.insert(0, 'firmware'); import main"],
                         cwd=tree, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "42", out.stderr


def test_tracebacks_name_the_module_as_it_is_imported():
    from capkey_dev.build import module_name

    assert module_name(Path("firmware/commands/key.py")) == "commands.key"
    assert module_name(Path("firmware/link/__init__.py")) == "link"
    assert module_name(Path("boards/drivers/ssd1306.py")) == "drivers.ssd1306"
    assert module_name(Path("boards/rpi_pico/board.py")) == "board"


def test_only_what_changed_is_built_again(tmp_path):
    root = _root(tmp_path)
    tree = stage_sim(root)
    first = _files(tree)
    time.sleep(0.01)
    assert _files(stage_sim(root)) == first  # nothing changed: nothing written
    src = root / "firmware/pkg/mod.py"
    src.write_text(src.read_text().replace("x * 2", "x + x"))
    os.utime(src, ns=(time.time_ns(), time.time_ns()))
    second = _files(stage_sim(root))
    changed = {k for k in first if first[k] != second.get(k)}
    assert changed == {"firmware/pkg/mod.mpy"}
    src.unlink()  # a source that goes takes its .mpy with it
    assert "firmware/pkg/mod.mpy" not in _files(stage_sim(root))


def test_modules_carry_no_line_numbers_unless_asked(tmp_path, monkeypatch):
    # -O3 (capkey_dev.build.MPY_OPT): 3 KB of heap at a flow's peak; a traceback names the
    # module (its import name: capkey_dev.build.module_name) and the function. CAPKEY_MPY_LINES=1
    # (MPY_OPT "-O0") keeps the lines, and switching builds the tree again.
    from capkey_dev import build

    root = _root(tmp_path)
    (root / "firmware/main.py").write_text("def fail():\n    x = 1\n    raise ValueError(x)\n\nfail()\n")

    def traceback() -> str:
        tree = stage_sim(root)
        out = subprocess.run([MICROPYTHON, "-c", "import sys; sys.path.insert(0, 'firmware'); import main"],
                             cwd=tree, capture_output=True, text=True, timeout=30)
        return out.stdout + out.stderr

    assert build.MPY_OPT == "-O3"
    assert 'File "main", line 1, in fail' in traceback()
    monkeypatch.setattr(build, "MPY_OPT", "-O0")
    build._mpy_cross_version.cache_clear()
    try:
        assert 'File "main", line 3, in fail' in traceback()
    finally:
        build._mpy_cross_version.cache_clear()
