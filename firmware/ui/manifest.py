# capkey UI: French screens and keypad flows on a 128x64 framebuffer.
# (one metadata() for the whole image: boards/drivers/manifest.py; MicroPython's manifest
# tool refuses a second one among included manifests)

package(
    "ui",
    files=(
        "__init__.py",
        "core.py",
        "i18n.py",
        "inputs.py",
        "keyqueue.py",
        "menu.py",
        "screen.py",
        "shell.py",
    ),
    base_path="..",
    opt=3,
)
