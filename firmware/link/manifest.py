metadata(
    version="1.0.0",
    description="capkey host link protocol v1: frame codec, request server, system commands.",
)

package("link", files=("__init__.py", "codes.py", "frame.py", "server.py", "system.py"), base_path="..", opt=3)
