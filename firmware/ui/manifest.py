metadata(
    version="0.1.0",
    description="capkey UI: French screens and keypad flows on a 128x64 framebuffer.",
)

package(
    "ui",
    files=(
        "__init__.py",
        "core.py",
        "i18n.py",
        "inputs.py",
        "keyqueue.py",
        "screen.py",
        "shell.py",
    ),
    base_path="..",
    opt=3,
)
