"""Runs every benchmark module and prints its figures."""

from __future__ import annotations

import importlib

# Each module defines run() -> None and prints its own table.
_MODULES = ("cert", "link", "cap", "device", "rules", "commit", "http")


def main() -> None:
    for name in _MODULES:
        print(f"== {name} ==", flush=True)
        importlib.import_module(f"{__package__}.{name}").run()


if __name__ == "__main__":
    main()
