# The system commands a host sends once per session or less (docs/protocol.md, "System commands"):
# INFO, REBOOT, MAINTENANCE, SELFTEST. link/system.py's handler loads this module for one call
# (firmware/ondemand.py) and drops it after: the resident part keeps what every connection or a
# running flow uses (HELLO, PING, SCREEN, PRESS).
import asyncio
import gc
import os
import sys

from micropython import const

from link import PROTOCOL_VERSION, LinkError
from link.codes import ERR_INVALID_PARAMETER

# INFO TLV tags (tag u8, length u8, value)
TAG_FIRMWARE = const(0x01)  # UTF-8
TAG_PROTOCOL = const(0x02)  # u8
TAG_BOARD = const(0x03)  # UTF-8
TAG_SERIAL = const(0x04)  # UTF-8 (hex string)
TAG_HEAP_FREE = const(0x05)  # u32
TAG_HEAP_TOTAL = const(0x06)  # u32
TAG_APP = const(0x07)  # UTF-8 "name/version", once per installed app
TAG_MAX_PAYLOAD = const(0x08)  # u16
TAG_MICROPYTHON = const(0x09)  # UTF-8 "1.29.0", the interpreter's version
TAG_PLATFORM = const(0x0A)  # UTF-8 sys.platform ("rp2", "esp32", "linux")
TAG_FLASH_FREE = const(0x0B)  # u32 bytes free on the store's filesystem (capped at 2^32 - 1)
TAG_FLASH_TOTAL = const(0x0C)  # u32 bytes of that filesystem (capped)
TAG_SLOT = const(0x0D)  # UTF-8 firmware/slots.py status(): "b", "b trial", "a failed=b"


async def run(s, req):
    """Runs the rare system command req.cmd for link/system.py's _System `s` -> its reply."""
    from link.system import CMD_INFO, CMD_MAINTENANCE, CMD_REBOOT

    cmd = req.cmd
    if len(req.payload):
        raise LinkError(ERR_INVALID_PARAMETER)
    if cmd == CMD_INFO:
        return _info(s)
    if cmd == CMD_REBOOT:
        asyncio.create_task(s.reboot_later())
    elif cmd == CMD_MAINTENANCE:
        # the person confirms on the keypad (maintenance.py), then the board restarts into
        # maintenance mode; the answer leaves first
        import ondemand

        async with s.ui.foreground():
            async with ondemand.use("maintenance") as m:
                await m.request(s.ui, s.board, req)
        asyncio.create_task(s.reboot_later())
    else:  # SELFTEST: the panel, the keypad, the clocks, for `capkey doctor` (firmware/selftest.py)
        import ondemand

        async with ondemand.use("selftest") as t:
            return await t.run(s.board)


def _info(s):
    b = s.board
    out = bytearray()
    # first, at a fixed place: link/system.py writes the heap free once this module is dropped
    _tlv(out, TAG_HEAP_FREE, bytes(4))
    _tlv(out, TAG_FIRMWARE, s.firmware_version.encode())
    _tlv(out, TAG_PROTOCOL, bytes((PROTOCOL_VERSION,)))
    _tlv(out, TAG_BOARD, b.name.encode())
    _tlv(out, TAG_SERIAL, b.serial.encode())
    total = getattr(b, "heap_total", 0) or gc.mem_free() + gc.mem_alloc()
    _tlv(out, TAG_HEAP_TOTAL, total.to_bytes(4, "big"))
    _tlv(out, TAG_MAX_PAYLOAD, s.link.max_payload.to_bytes(2, "big"))
    for name, version in s.link.apps:
        _tlv(out, TAG_APP, (name + "/" + version).encode())
    v = sys.implementation.version
    _tlv(out, TAG_MICROPYTHON, ("%d.%d.%d" % (v[0], v[1], v[2])).encode())
    _tlv(out, TAG_PLATFORM, sys.platform.encode())
    storage = getattr(b, "storage", None)
    if storage:
        try:
            st = os.statvfs(storage)
        except OSError:  # no filesystem to report: the tags are left out
            st = None
        if st is not None:
            _tlv(out, TAG_FLASH_FREE, _u32(st[0] * st[3]))
            _tlv(out, TAG_FLASH_TOTAL, _u32(st[0] * st[2]))
    slots = sys.modules.get("slots")  # loaded when the board booted from an app slot
    slot = slots.status() if slots is not None else None
    if slot:
        _tlv(out, TAG_SLOT, slot.encode())
    return out


def _u32(n):
    return (n if n < 0xFFFFFFFF else 0xFFFFFFFF).to_bytes(4, "big")


def _tlv(out, tag, value):
    if len(value) > 255:
        value = value[:255]
    out.append(tag)
    out.append(len(value))
    out.extend(value)
