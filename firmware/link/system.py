# System commands 0x01-0x1F (docs/protocol.md, "System commands").
#
#   system.install(link, firmware_version="0.1.0")   # link: a LinkServer with .board and .ui
import asyncio
import gc
import os
import sys

from micropython import const

from link import PROTOCOL_VERSION, LinkError
from link.codes import ERR_INVALID_PARAMETER, ERR_UNSUPPORTED, ERR_VERSION

CMD_HELLO = const(0x01)
CMD_INFO = const(0x02)
CMD_PING = const(0x03)
CMD_REBOOT = const(0x04)
CMD_SCREEN = const(0x05)
CMD_PRESS = const(0x06)
_CMD_MAINTENANCE = const(0x08)  # 0x07 HEAP is firmware/main.py's
_CMD_SELFTEST = const(0x09)

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

_PROTO_MIN = const(1)
_PROTO_MAX = const(1)
_REBOOT_DELAY_MS = const(100)  # lets the OK response leave before the board restarts
_PRESS_GAP_MS = const(20)  # between injected keys, so the UI consumes each one
_KEYS = const(b"0123456789ABCD*#")


class _System:
    def __init__(self, link, firmware_version):
        self.link = link
        self.board = link.board
        self.ui = link.ui
        self.firmware_version = firmware_version

    async def hello(self, req):
        p = req.payload
        if len(p) != 2 or p[0] > p[1]:
            raise LinkError(ERR_INVALID_PARAMETER)
        lo = max(p[0], _PROTO_MIN)
        hi = min(p[1], _PROTO_MAX)
        if lo > hi:
            raise LinkError(ERR_VERSION, bytes((_PROTO_MIN, _PROTO_MAX)))
        m = self.link.max_payload
        return bytes((hi, m >> 8, m & 0xFF))

    async def info(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        b = self.board
        gc.collect()
        out = bytearray()
        _tlv(out, TAG_FIRMWARE, self.firmware_version.encode())
        _tlv(out, TAG_PROTOCOL, bytes((PROTOCOL_VERSION,)))
        _tlv(out, TAG_BOARD, b.name.encode())
        _tlv(out, TAG_SERIAL, b.serial.encode())
        _tlv(out, TAG_HEAP_FREE, gc.mem_free().to_bytes(4, "big"))
        total = getattr(b, "heap_total", 0) or gc.mem_free() + gc.mem_alloc()
        _tlv(out, TAG_HEAP_TOTAL, total.to_bytes(4, "big"))
        _tlv(out, TAG_MAX_PAYLOAD, self.link.max_payload.to_bytes(2, "big"))
        for name, version in self.link.apps:
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

    async def ping(self, req):
        return req.payload  # valid until the response is written

    async def reboot(self, req):
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        asyncio.create_task(self._reboot_later())

    async def _reboot_later(self):
        await asyncio.sleep_ms(_REBOOT_DELAY_MS)
        self.board.reboot()

    async def screen(self, req):
        # b"" or b"\x00": the 1024-byte MONO_VLSB framebuffer; b"\x01": the text lines, UTF-8,
        # joined by "\n". Two parts because framebuffer + text exceed MAX_PAYLOAD.
        p = req.payload
        part = p[0] if len(p) == 1 else 0
        if len(p) > 1 or part > 1:
            raise LinkError(ERR_INVALID_PARAMETER)
        snap = getattr(self.ui, "snapshot", None)
        if snap is None:
            raise LinkError(ERR_UNSUPPORTED)
        fb, lines = snap()
        if part == 0:
            return fb
        return "\n".join(lines).encode()[: self.link.max_payload]

    async def press(self, req):
        inject = getattr(self.board, "inject_key", None)
        if inject is None:
            raise LinkError(ERR_UNSUPPORTED)
        p = req.payload
        if not len(p):
            raise LinkError(ERR_INVALID_PARAMETER)
        for k in p:
            if k not in _KEYS:
                raise LinkError(ERR_INVALID_PARAMETER)
        keys = bytes(p)
        for i in range(len(keys)):
            if i:
                await asyncio.sleep_ms(_PRESS_GAP_MS)
            r = inject(chr(keys[i]))
            if r is not None and hasattr(r, "send"):  # an async inject_key
                await r

    async def maintenance(self, req):
        # the person confirms on the keypad (maintenance.py), then the board restarts into
        # maintenance mode; the answer leaves first
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        import ondemand

        async with self.ui.foreground():
            async with ondemand.use("maintenance") as m:
                await m.request(self.ui, self.board, req)
        asyncio.create_task(self._reboot_later())


    async def selftest(self, req):
        # the panel, the keypad and the clocks, for `capkey doctor` (firmware/selftest.py)
        if len(req.payload):
            raise LinkError(ERR_INVALID_PARAMETER)
        import ondemand

        async with ondemand.use("selftest") as t:
            return await t.run(self.board)


def _u32(n):
    return (n if n < 0xFFFFFFFF else 0xFFFFFFFF).to_bytes(4, "big")


def _tlv(out, tag, value):
    if len(value) > 255:
        value = value[:255]
    out.append(tag)
    out.append(len(value))
    out.extend(value)


def install(link, firmware_version):
    s = _System(link, firmware_version)
    link.register(CMD_HELLO, s.hello)
    link.register(CMD_INFO, s.info)
    link.register(CMD_PING, s.ping)
    link.register(CMD_REBOOT, s.reboot)
    link.register(CMD_SCREEN, s.screen)
    link.register(CMD_PRESS, s.press)
    link.register(_CMD_MAINTENANCE, s.maintenance)
    link.register(_CMD_SELFTEST, s.selftest)
    return s
