# Uses the sibling packages applets, reader, crypto (all included once by firmware/manifest.py).
metadata(
    version="0.1.0",
    description="capkey apps' dialogues and link command bodies, loaded on demand (ondemand.py).",
)

package("flows", files=("cap.py", "key.py"), base_path="..", opt=3)
