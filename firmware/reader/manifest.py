# Uses the sibling packages applets, crypto (all included once by firmware/manifest.py).
metadata(
    version="0.1.0",
    description="capkey CAP reader state machine: drives a card through APDUs, extracts the code.",
)

package("reader", files=("cap.py",), base_path="..", opt=3)
