# Raspberry Pi Pico (RP2040). Wiring: docs/boards.md#raspberry-pi-pico
from drivers.mcu_board import McuBoard

PINS = {
    "sda": 4,  # GP4, I2C0 SDA -> OLED SDA
    "scl": 5,  # GP5, I2C0 SCL -> OLED SCL
    "rows": (6, 7, 8, 9),  # GP6..GP9 -> keypad rows 1..4 (driven)
    "cols": (10, 11, 12, 13),  # GP10..GP13 -> keypad columns 1..4 (pull-up inputs)
    "lab": 22,  # GP22 (physical pin 29): tied to GND (pin 28, next to it) = lab board
}

BOARD = McuBoard("rpi_pico", PINS, i2c_id=0)
