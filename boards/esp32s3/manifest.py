# MicroPython image with capkey frozen in (code runs from flash, leaving the heap to data):
#   make -C ports/esp32 BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=<capkey>/boards/esp32s3/manifest.py
include("$(PORT_DIR)/boards/manifest.py")
include("../drivers/manifest.py")
module("board.py")
