# What every real board freezes besides its own board.py: the firmware and the pin-level drivers.
# A board's manifest.py includes its port's manifest, this file, then module("board.py").
# The P-256 comb table (firmware/crypto/p256_comb.bin) is data, not code: `capkey deploy` copies it
# to the board's filesystem.
metadata(version="0.1.0", description="capkey drivers: SSD1306 over I2C, 4x4 keypad matrix, board object.")
include("../../firmware/manifest.py")
package("drivers", files=("ssd1306.py", "keypad_matrix.py", "mcu_board.py"), base_path="..", opt=3)
