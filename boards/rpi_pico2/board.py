# Raspberry Pi Pico 2 (RP2350): same header as the Pico, same wiring. docs/boards.md#raspberry-pi-pico-2
from drivers.mcu_board import McuBoard

PINS = {
    "sda": 4,  # GP4, I2C0 SDA
    "scl": 5,  # GP5, I2C0 SCL
    "rows": (6, 7, 8, 9),
    "cols": (10, 11, 12, 13),
    "lab": 22,  # GP22 (physical pin 29): tied to GND (pin 28, next to it) = lab board
}

BOARD = McuBoard("rpi_pico2", PINS, i2c_id=0)
