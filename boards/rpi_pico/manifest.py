# MicroPython image with capkey frozen in (code runs from flash, leaving the heap to data):
#   make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=<capkey>/boards/rpi_pico/manifest.py
include("$(PORT_DIR)/boards/manifest.py")
include("../drivers/manifest.py")
module("board.py")
