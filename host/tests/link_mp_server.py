# MicroPython script (not CPython): the firmware's link server and system commands alone, on a
# TCP port, with the fake board and UI of firmware/link/test_support.py. test_link_sim.py runs it
# to test the host codec against the firmware's without the rest of the firmware.
#   micropython -X heapsize=190k link_mp_server.py ROOT PORT
import sys

sys.path[:0] = [sys.argv[1] + "/firmware"]

import asyncio  # noqa: E402

from link import server, system  # noqa: E402
from link.test_support import FakeBoard, FakeUi  # noqa: E402


async def main(port):
    link = server.LinkServer(FakeBoard(), FakeUi())
    system.install(link, "link-test")
    await asyncio.start_server(link.serve, "127.0.0.1", port)
    print("link-server listening on", port)
    while True:
        await asyncio.sleep(3600)


asyncio.run(main(int(sys.argv[2])))
