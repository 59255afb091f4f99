# Simulator entry point:
#   micropython -X heapsize=190k boards/sim/main.py --port P --storage DIR
#               [--board-profile rpi_pico|rpi_pico2|esp32s3]
# Puts boards/sim, boards and firmware on sys.path as on a device, builds the board, then runs
# the firmware's main(board). The board prints "capkey-sim listening on 127.0.0.1:P" once the
# host port is open; host/dev/capkey_dev/sim.py waits for that line. In maintenance mode
# (firmware/maintenance.py) main() returns and boards/sim/repl.py serves a REPL on that port.
import os
import sys

USAGE = "usage: main.py --port P --storage DIR [--board-profile rpi_pico|rpi_pico2|esp32s3]"


def _root():
    # sys.argv[0] is <root>/boards/sim/main.py, absolute or relative to the working directory
    path = sys.argv[0]
    if not path.startswith("/"):
        path = os.getcwd() + "/" + path
    parts = []
    for p in path.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p and p != ".":
            parts.append(p)
    return "/" + "/".join(parts[:-3])


def _args(argv):
    opts = {"--port": None, "--storage": None, "--board-profile": "rpi_pico"}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key not in opts or i + 1 >= len(argv):
            raise SystemExit(USAGE)
        opts[key] = argv[i + 1]
        i += 2
    if opts["--port"] is None or opts["--storage"] is None:
        raise SystemExit(USAGE)
    return int(opts["--port"]), opts["--storage"], opts["--board-profile"]


def run():
    port, storage, profile = _args(sys.argv[1:])
    root = _root()
    firmware = root + "/firmware"
    for p in (firmware, root + "/boards", root + "/boards/sim"):
        if p in sys.path:
            sys.path.remove(p)
    # the device's import order: board first, then shared drivers, then the firmware
    sys.path[:0] = [root + "/boards/sim", root + "/boards", firmware]

    import asyncio

    import board

    sim = board.configure(port, storage, profile)
    sim.heap_stats(os.getenv("CAPKEY_HEAP_STATS") == "1")
    sim.install_crash_hook()

    # firmware/main.py is also "main", like this file: import it with the firmware first
    sys.path.insert(0, firmware)
    try:
        import main as firmware_main
    finally:
        sys.path.pop(0)
    if firmware_main.__name__ == "__main__" or not hasattr(firmware_main, "main"):
        raise SystemExit("capkey-sim: firmware/main.py not found under " + root)
    try:
        maintenance = asyncio.run(firmware_main.main(sim))
    except KeyboardInterrupt:
        return
    if maintenance:  # main() returned for maintenance mode: the REPL takes the port
        import repl

        repl.serve(sim)


if __name__ == "__main__":
    run()
