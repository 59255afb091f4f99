metadata(
    version="0.1.0",
    description="capkey apps' dialogues and link command bodies, loaded on demand (ondemand.py).",
)

require("applets")
require("reader")
require("crypto")
package("flows", files=("cap.py", "key.py"), base_path="..", opt=3)
