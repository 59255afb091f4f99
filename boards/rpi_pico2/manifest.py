# MicroPython image with capkey frozen in (code runs from flash, leaving the heap to data):
#   make -C ports/rp2 BOARD=RPI_PICO2 FROZEN_MANIFEST=<capkey>/boards/rpi_pico2/manifest.py
include("$(PORT_DIR)/boards/manifest.py")
include("../drivers/manifest.py")
module("board.py")
