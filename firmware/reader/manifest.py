# Uses the sibling packages applets, crypto (all included once by firmware/manifest.py).
# capkey CAP reader state machine: drives a card through APDUs, extracts the code.
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

package("reader", files=("__init__.py", "cap.py"), base_path="..", opt=3)
