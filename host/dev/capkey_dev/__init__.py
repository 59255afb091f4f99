"""capkey-dev: the tools that work on a checkout of the capkey repository (firmware/, boards/)
rather than on a bank's servers. Nothing in :mod:`capkey` imports this package.

- :mod:`capkey_dev.build` — mpy-cross of every firmware file, deploy staging, the simulator's tree;
- :mod:`capkey_dev.catalog` — writes ``firmware/catalog.py`` from the host's catalogues;
- :mod:`capkey_dev.sim` — starts, stops, unplugs and plugs back the MicroPython simulator;
- :mod:`capkey_dev.demo` — ``capkey demo``: a personalised simulator, the verifier and the portal;
- :mod:`capkey_dev.devview` — a web view of a device's screen and keypad;
- :mod:`capkey_dev.bench` — ``make bench``;
- :mod:`capkey_dev.typecheck_boards` — board code type-checked against each port's stubs;
- :mod:`capkey_dev.cli` — the commands it adds to ``capkey``.
"""
