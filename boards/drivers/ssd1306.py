# SSD1306 128x64 monochrome OLED over I2C, written from the Solomon Systech datasheet.
# The panel memory is 8 pages of 128 columns, one byte = 8 vertical pixels: framebuf's MONO_VLSB
# layout, so the whole buffer goes out in one I2C transfer without conversion.
import framebuf
from micropython import const

_SET_CONTRAST = const(0x81)
_DISPLAY_ALL_ON_RESUME = const(0xA4)
_NORMAL = const(0xA6)
_DISPLAY_OFF = const(0xAE)
_DISPLAY_ON = const(0xAF)
_MEMORY_MODE = const(0x20)
_COLUMN_ADDR = const(0x21)
_PAGE_ADDR = const(0x22)
_START_LINE = const(0x40)
_SEGMENT_REMAP = const(0xA1)
_MULTIPLEX = const(0xA8)
_COM_SCAN_DEC = const(0xC8)
_DISPLAY_OFFSET = const(0xD3)
_COM_PINS = const(0xDA)
_CLOCK_DIV = const(0xD5)
_PRECHARGE = const(0xD9)
_VCOM_DESELECT = const(0xDB)
_CHARGE_PUMP = const(0x8D)

# Power-up sequence (datasheet "Software initialization", internal charge pump).
_INIT = const((
    _DISPLAY_OFF,
    _MEMORY_MODE, 0x00,  # horizontal addressing: one write fills the screen
    _START_LINE,
    _SEGMENT_REMAP,  # column 127 mapped to SEG0: the usual module orientation
    _MULTIPLEX, 63,
    _COM_SCAN_DEC,
    _DISPLAY_OFFSET, 0x00,
    _COM_PINS, 0x12,  # alternative COM pin layout, as 128x64 modules are wired
    _CLOCK_DIV, 0x80,
    _PRECHARGE, 0xF1,
    _VCOM_DESELECT, 0x30,
    _SET_CONTRAST, 0xCF,
    _DISPLAY_ALL_ON_RESUME,
    _NORMAL,
    _CHARGE_PUMP, 0x14,
    _DISPLAY_ON,
))


class SSD1306(framebuf.FrameBuffer):
    """The display the firmware draws on: a 128x64 MONO_VLSB FrameBuffer with show()/power().

    `i2c` is any object with writeto(addr, buf) and writevto(addr, bufs), so tests pass a fake."""

    def __init__(self, i2c, addr=0x3C, width=128, height=64):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.buffer = bytearray(width * height // 8)
        super().__init__(self.buffer, width, height, framebuf.MONO_VLSB)
        self._cmd = bytearray(2)  # control byte 0x80 (one command follows) + command
        self._cmd[0] = 0x80
        self._data_prefix = b"\x40"  # control byte: the rest is display data
        self._vector = [self._data_prefix, self.buffer]
        self._window = (_COLUMN_ADDR, 0, width - 1, _PAGE_ADDR, 0, height // 8 - 1)
        self.on = False
        for command in _INIT:
            self._command(command)
        self.on = True
        self.fill(0)
        self.show()

    def _command(self, command):
        self._cmd[1] = command
        self.i2c.writeto(self.addr, self._cmd)

    def power(self, on):
        self._command(_DISPLAY_ON if on else _DISPLAY_OFF)
        self.on = bool(on)

    def contrast(self, level):
        self._command(_SET_CONTRAST)
        self._command(level & 0xFF)

    def show(self):
        for command in self._window:
            self._command(command)
        self.i2c.writevto(self.addr, self._vector)
