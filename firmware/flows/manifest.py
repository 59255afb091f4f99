# Uses the sibling packages commands, applets, reader, crypto (included by firmware/manifest.py).
metadata(
    version="0.1.0",
    description="capkey apps' keypad dialogues, loaded on demand (ondemand.py).",
)

package("flows", files=("cap.py", "key.py"), base_path="..", opt=3)
