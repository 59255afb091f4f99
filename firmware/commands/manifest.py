# Uses the sibling packages applets, reader, crypto (all included once by firmware/manifest.py).
# capkey apps' link command bodies and what the keypad flows share (ondemand.py).
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

package(
    "commands",
    files=("cap.py", "cap_card.py", "cap_code.py", "key.py", "key_admin.py", "key_sign.py"),
    base_path="..",
    opt=3,
)
