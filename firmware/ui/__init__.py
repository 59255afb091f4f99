# firmware/ui: screens and keypad flows on the board's 128x64 framebuffer (see docs/ui.md).
# Import what you need: `from ui.core import Ui`, `from ui.keyqueue import KeyQueue` (boards),
# `from ui.screen import format_amount`, `from ui import i18n`. Nothing is loaded here, so a
# board that only needs the KeyQueue does not pull the whole UI into RAM.
