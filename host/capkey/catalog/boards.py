"""The boards capkey runs on: one declaration each (docs/boards.md).

To add a board: declare it in :data:`BOARDS`, add ``boards/<name>/`` (``board.py`` with its pins,
``manifest.py``), and run ``make catalog``; the build, deploy, simulator profiles, discovery and
the HIL suite take it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Board", "BOARDS", "SIMULATOR", "DEFAULT_PROFILE", "USB_IDS", "board"]


@dataclass(frozen=True)
class Board:
    """A board family: what the build, the simulator and discovery need to know about it."""

    name: str  #: folder under boards/, INFO's board name
    title: str  #: what a person calls it
    port: str  #: the MicroPython port it runs (its stubs type-check board.py)
    arch: str  #: mpy-cross -march of its CPU
    #: MicroPython GC heap (bytes) a fresh boot reports; the simulator runs with the same heap.
    heap: int
    #: USB (VID, PID) pairs its MicroPython port enumerates with, with what each means.
    usb_ids: tuple[tuple[int, int, str], ...]


BOARDS: dict[str, Board] = {b.name: b for b in (
    # The project's figure for the RP2040: about 190 KB free after the rp2 port's static RAM.
    Board("rpi_pico", "Raspberry Pi Pico (RP2040)", "rp2", "armv6m", 190 * 1024,
          ((0x2E8A, 0x0005, "Raspberry Pi Pico / Pico 2 (MicroPython)"),)),
    # RP2350: 520 KB of SRAM; the GC heap gets what .data/.bss and the stacks leave, 460 KB is a
    # conservative round figure of what the port reports.
    Board("rpi_pico2", "Raspberry Pi Pico 2 (RP2350)", "rp2", "armv7emsp", 460 * 1024,
          ((0x2E8A, 0x0005, "Raspberry Pi Pico / Pico 2 (MicroPython)"),)),
    # The generic build without PSRAM grows its heap from the IDF heap up to roughly 256 KB.
    Board("esp32s3", "ESP32-S3 DevKitC", "esp32", "xtensawin", 256 * 1024,
          ((0x303A, 0x4001, "ESP32-S3 (MicroPython, native USB)"),
           (0x303A, 0x1001, "ESP32-S3 (USB-Serial/JTAG)"))),
)}

#: INFO's board name of the simulator, which stands for one of BOARDS (its heap profile).
SIMULATOR = "sim"
#: The board the simulator stands for unless told otherwise: the smallest heap.
DEFAULT_PROFILE = "rpi_pico"

#: (VID, PID) -> description, for discovery of boards on USB.
USB_IDS: dict[tuple[int, int], str] = {
    (vid, pid): what for b in BOARDS.values() for vid, pid, what in b.usb_ids
}


def board(name: str) -> Board:
    """The board called `name`, or ValueError naming the known ones."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}: one of {', '.join(BOARDS)}") from None
