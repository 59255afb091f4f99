# MicroPython script (not CPython): decodes each stream (one hex line each) with the firmware's
# frame decoder, reading exactly what it asks for as the device does, and prints its events as
# one JSON line per stream. test_link_codec.py compares them with the host decoder's.
#   micropython link_mp_decode.py ROOT STREAMS.txt
import sys

sys.path[:0] = [sys.argv[1] + "/firmware"]

import json  # noqa: E402

from link.test_support import parse  # noqa: E402

with open(sys.argv[2]) as f:
    for line in f:
        evs = []
        for e in parse(bytes.fromhex(line.strip())):
            if len(e) == 2:
                evs.append([e[0], e[1]])
            else:
                evs.append([e[0], e[1], e[2], e[3].hex()])
        print(json.dumps(evs))
