# Simulator entry point:
#   micropython -X heapsize=190k boards/sim/main.py --port P --storage DIR
#               [--board-profile rpi_pico|rpi_pico2|esp32s3]
# Two ways to boot, like a board fresh from the factory and one flashed by capkey deploy:
#   - the storage folder (the simulator's flash) holds no slots.mpy: the firmware of the sources
#     runs. boards/sim, boards and firmware go on sys.path as on a device, the board is built,
#     then the firmware's main(board) runs.
#   - capkey deploy --board sim wrote its flash: it boots from there like a board, through the
#     deployed slots.mpy (firmware/slots.py), which picks the app slot, puts it first on sys.path
#     and runs its main(board); only the simulated hardware (boards/sim) comes from here.
# The board prints "capkey-sim listening on 127.0.0.1:P" once the host port is open;
# host/dev/capkey_dev/sim.py waits for that line. In maintenance mode (firmware/maintenance.py)
# main() returns and boards/sim/repl.py serves a REPL on that port.
import os
import sys

USAGE = "usage: main.py --port P --storage DIR [--board-profile rpi_pico|rpi_pico2|esp32s3]"


def _root():
    # sys.argv[0] is <root>/boards/sim/main.py, absolute or relative to the working directory.
    # A relative root stays relative (capkey_dev.sim runs "boards/sim/main.py" in the root): the
    # file name every module interns for good is then as short as on a board.
    path = sys.argv[0]
    absolute = path.startswith("/")
    parts = []
    for p in path.split("/"):
        if p == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not absolute:
                parts.append(p)
        elif p and p != ".":
            parts.append(p)
    root = "/".join(parts[:-3])
    if absolute:
        return "/" + root
    return root or "."


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


def _flashed(storage):
    for name in ("slots.mpy", "slots.py"):
        try:
            os.stat(storage + "/" + name)
            return True
        except OSError:
            pass
    return False


def _from_sources(root, port, storage, profile):
    # -> what the firmware's main() returned (True: maintenance mode)
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
    return asyncio.run(firmware_main.main(sim))


def _from_flash(root, port, storage, profile):
    # the flash root, then the simulated hardware; nothing of the sources' firmware
    for p in (root + "/firmware", root + "/boards"):
        if p in sys.path:
            sys.path.remove(p)
    sys.path[:0] = [storage, root + "/boards/sim"]

    import board
    import slots

    hook = board.crash_hook_from_env()  # one count over the slot switch and the store
    slots.set_hook(hook)

    def make_board():  # once the slot's firmware is on sys.path (the board uses its modules)
        sim = board.configure(port, storage, profile)
        sim.heap_stats(os.getenv("CAPKEY_HEAP_STATS") == "1")
        sim.install_crash_hook(hook=hook)
        return sim

    def restart():
        raise SystemExit(board.REBOOT_EXIT)

    return slots.start(make_board, restart, storage)


def run():
    port, storage, profile = _args(sys.argv[1:])
    if len(storage) > 1 and storage.endswith("/"):
        storage = storage[:-1]
    boot = _from_flash if _flashed(storage) else _from_sources
    try:
        maintenance = boot(_root(), port, storage, profile)
    except KeyboardInterrupt:
        return
    if maintenance:  # main() returned for maintenance mode: the REPL takes the port
        import board
        import repl

        repl.serve(board.BOARD)


if __name__ == "__main__":
    run()
