# capkey host link protocol v1: frame codec, request server, system commands.
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

package(
    "link",
    files=("__init__.py", "codes.py", "frame.py", "server.py", "system.py", "system_rare.py"),
    base_path="..",
    opt=3,
)
