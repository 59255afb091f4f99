# The firmware's soft EMV card (applets/emv_card.py) on stdin/stdout, for the host's PC/SC bridge
# (host/capkey/link/pcsc.py) and tests: the card that answers is the firmware's, not a re-implementation.
#
# usage: micropython card_bridge.py ROOT STORAGE                  serve frames on stdin/stdout
#        micropython card_bridge.py ROOT STORAGE personalise      personalise a factory card with the
#                                                                  PERSONALISE data read (hex) on stdin
#
# Frames are those of vpcd (vsmartcard): 2-byte big-endian length, then the payload. A 1-byte
# payload is a control: 00 power off, 01 power on, 02 reset (no answer), 04 "send the ATR" (answer:
# the ATR). Any longer payload is a command APDU, answered with the response APDU. EOF ends.
import sys

root = sys.argv[1]
sys.path[:0] = [root + "/boards/sim", root + "/boards", root + "/firmware"]

from applets.emv_card import ATR, EmvCard  # noqa: E402
from micropython import const  # noqa: E402
from store import Store  # noqa: E402

_OFF = const(0)
_ON = const(1)
_RESET = const(2)
_ATR = const(4)
_SW_NO_POWER = const(b"\x69\x85")  # conditions of use not satisfied: the card is not powered


def _read_exactly(stream, n):
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _send(out, data):
    out.write(bytes((len(data) >> 8, len(data) & 0xFF)) + data)
    if hasattr(out, "flush"):
        out.flush()


def serve(card, inp, out):
    powered = False
    while True:
        hdr = _read_exactly(inp, 2)
        if hdr is None:
            return
        n = (hdr[0] << 8) | hdr[1]
        msg = _read_exactly(inp, n) if n else b""
        if msg is None:
            return
        if n == 1:
            c = msg[0]
            if c == _OFF:
                powered = False
            elif c in (_ON, _RESET):
                card.power_on()
                powered = True
            elif c == _ATR:
                if not powered:
                    card.power_on()
                    powered = True
                _send(out, ATR)
            continue
        if not powered:
            _send(out, _SW_NO_POWER)
            continue
        _send(out, card.process(msg))


def main():
    store = Store(sys.argv[2])
    card = EmvCard(store)
    if len(sys.argv) > 3 and sys.argv[3] == "personalise":
        from binascii import unhexlify

        # on stdin, not argv: the data holds the card key and the PIN block
        card.personalise(unhexlify(sys.stdin.buffer.read().strip()))
        print("personalised", card.atc)
        return
    serve(card, sys.stdin.buffer, sys.stdout.buffer)


main()
