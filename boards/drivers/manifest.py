# What every real board freezes besides its own board.py: the firmware and the pin-level drivers.
# A board's manifest.py includes its port's manifest, this file, then module("board.py").
# The P-256 comb table (firmware/crypto/p256_comb.bin) is data, not code: `capkey deploy` copies it
# to the board's filesystem.
# The one metadata() of the image: MicroPython's manifest tool refuses a second one among the
# manifests included here (the firmware's say what they hold in a comment instead).
metadata(version="0.1.0", description="capkey: CAP reader and certificate key firmware, with the "
         "SSD1306, keypad matrix and board drivers.")
include("../../firmware/manifest.py")
package("drivers", files=("ssd1306.py", "keypad_matrix.py", "mcu_board.py"), base_path="..", opt=3)
