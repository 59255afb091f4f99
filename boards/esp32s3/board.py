# ESP32-S3 DevKitC-1 on its native USB port. docs/boards.md#esp32-s3-devkitc-1
from drivers.mcu_board import McuBoard

PINS = {
    "sda": 8,  # GPIO8, default I2C SDA on the DevKitC
    "scl": 9,  # GPIO9
    "rows": (4, 5, 6, 7),
    "cols": (15, 16, 17, 18),  # GPIOs without strapping or PSRAM duties
    "lab": 1,  # GPIO1 (J3 pin 4): tied to GND (J3 pin 1) = lab board
}

BOARD = McuBoard("esp32s3", PINS, i2c_id=0)
