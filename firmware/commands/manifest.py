# Uses the sibling packages applets, reader, crypto (all included once by firmware/manifest.py).
metadata(
    version="0.1.0",
    description="capkey apps' link command bodies and what the keypad flows share (ondemand.py).",
)

package("commands", files=("cap.py", "key.py"), base_path="..", opt=3)
