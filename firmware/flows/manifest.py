# Uses the sibling packages commands, applets, reader, crypto (included by firmware/manifest.py).
# capkey apps' keypad dialogues, loaded on demand (ondemand.py).
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

package("flows", files=("cap.py", "key.py"), base_path="..", opt=3)
