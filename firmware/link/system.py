# System commands 0x01-0x1F (docs/protocol.md, "System commands").
#
#   system.install(link, firmware_version="0.1.0")   # link: a LinkServer with .board and .ui
#
# Resident: HELLO, every connection's handshake (it must never wait for heap a flow holds), and
# PING, SCREEN and PRESS, which a host or a test sends while a flow runs. INFO, REBOOT,
# MAINTENANCE and SELFTEST (once per session or less) are in link/system_rare.py, loaded for one
# call. HEAP (0x07) is firmware/main.py's.
import asyncio
import gc

from micropython import const

from link import LinkError
from link.codes import ERR_BUSY, ERR_INVALID_PARAMETER, ERR_UNSUPPORTED, ERR_VERSION

CMD_HELLO = const(0x01)
CMD_INFO = const(0x02)
CMD_PING = const(0x03)
CMD_REBOOT = const(0x04)
CMD_SCREEN = const(0x05)
CMD_PRESS = const(0x06)
CMD_MAINTENANCE = const(0x08)
CMD_SELFTEST = const(0x09)

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

    async def rare(self, req):
        import ondemand

        try:
            async with ondemand.use("link.system_rare") as m:
                out = await m.run(self, req)
        except MemoryError:  # a flow holds the heap: the host may ask again after it
            raise LinkError(ERR_BUSY)
        if req.cmd == CMD_INFO:
            # the heap free without the module that answered (its first tag, left blank)
            gc.collect()
            out[2:6] = gc.mem_free().to_bytes(4, "big")
        return out

    async def reboot_later(self):
        # a task of its own, after the rare module that starts it is gone
        await asyncio.sleep_ms(_REBOOT_DELAY_MS)
        self.board.reboot()

    async def ping(self, req):
        return req.payload  # valid until the response is written

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


def install(link, firmware_version):
    s = _System(link, firmware_version)
    rare = s.rare
    for cmd in (CMD_INFO, CMD_REBOOT, CMD_MAINTENANCE, CMD_SELFTEST):
        link.register(cmd, rare)
    link.register(CMD_HELLO, s.hello)
    link.register(CMD_PING, s.ping)
    link.register(CMD_SCREEN, s.screen)
    link.register(CMD_PRESS, s.press)
    return s
