# Runs firmware unit tests inside the MicroPython unix port.
# usage: micropython -X heapsize=N mptest.py ROOT TEST_FILE [TEST_NAME ...]
# ROOT is the repository; firmware/ and the sim board are put on sys.path as on a device.
# Prints one line per test: "PASS name" or "FAIL name" followed by the traceback.
import io
import sys

root = sys.argv[1]
path = sys.argv[2]
names = sys.argv[3:]
sys.path[:0] = [root + "/boards/sim", root + "/boards", root + "/firmware"]

rel = path[len(root) + 1 :] if path.startswith(root + "/") else path
for prefix in ("firmware/", "boards/"):
    if rel.startswith(prefix):
        rel = rel[len(prefix) :]
modname = rel[:-3].replace("/", ".")
mod = __import__(modname)
for part in modname.split(".")[1:]:
    mod = getattr(mod, part)

if not names:
    names = [n for n in dir(mod) if n.startswith("test_")]

failed = 0
for name in names:
    fn = getattr(mod, name)
    try:
        result = fn()
        if hasattr(result, "send"):  # a coroutine: run it on a fresh loop
            import asyncio

            asyncio.run(result)
            asyncio.new_event_loop()
        print("PASS", name)
    except Exception as exc:  # report every failure, keep going
        failed += 1
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        print("FAIL", name)
        print(buf.getvalue())
sys.exit(1 if failed else 0)
