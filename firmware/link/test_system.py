# System commands through the whole server (bytes in, bytes out).
import asyncio

import ondemand

from link import server, system, system_rare
from link import test_support as _fakes
from link.codes import (
    ERR_INVALID_PARAMETER,
    ERR_OK,
    ERR_UNSUPPORTED,
    ERR_VERSION,
)
from link.frame import KIND_REQUEST, KIND_RESPONSE, encode


class Dev:
    def __init__(self, board=None, ui=None):
        self.board = board or _fakes.FakeBoard()
        self.link = server.LinkServer(self.board, ui or _fakes.FakeUi())
        self.link.add_app("cap", "0.1.0")
        system.install(self.link, "0.1.0")
        self.r = _fakes.FakeReader(chunk=512)
        self.w = _fakes.FakeWriter()
        self.task = asyncio.create_task(self.link.serve(self.r, self.w))
        self.rid = 0

    async def call(self, cmd, payload=b""):
        self.rid += 1
        n = len(self.w.frames())
        self.r.feed(encode(KIND_REQUEST, self.rid, cmd, payload))
        f = (await self.w.wait_frames(n + 1))[n]
        assert f[0] == KIND_RESPONSE and f[1] == self.rid, f
        return f[2], f[3]

    async def close(self):
        self.r.close()
        await asyncio.wait_for_ms(self.task, 1000)


def _tlv(data):
    out = []
    i = 0
    while i < len(data):
        t, n = data[i], data[i + 1]
        out.append((t, data[i + 2 : i + 2 + n]))
        i += 2 + n
    assert i == len(data)
    return out


async def test_hello_negotiates():
    d = Dev()
    assert await d.call(system.CMD_HELLO, b"\x01\x01") == (ERR_OK, b"\x01\x04\x00")
    assert await d.call(system.CMD_HELLO, b"\x01\x07") == (ERR_OK, b"\x01\x04\x00")
    assert await d.call(system.CMD_HELLO, b"\x02\x05") == (ERR_VERSION, b"\x01\x01")
    assert await d.call(system.CMD_HELLO, b"\x00\x00") == (ERR_VERSION, b"\x01\x01")
    assert (await d.call(system.CMD_HELLO, b"\x01"))[0] == ERR_INVALID_PARAMETER
    assert (await d.call(system.CMD_HELLO, b"\x03\x01"))[0] == ERR_INVALID_PARAMETER
    # every connection's handshake is answered by the resident part: it loads nothing, so it is
    # never refused for the heap a running flow holds
    uses = []
    real = ondemand.Use._load

    def spy(use):
        uses.append(use.names)
        return real(use)

    ondemand.Use._load = spy
    try:
        assert (await d.call(system.CMD_HELLO, b"\x01\x01"))[0] == ERR_OK
    finally:
        ondemand.Use._load = real
    assert uses == [], uses
    await d.close()


async def test_info_tlv():
    d = Dev()
    code, data = await d.call(system.CMD_INFO)
    assert code == ERR_OK
    tlv = _tlv(data)
    tags = dict(tlv)
    assert tags[system_rare.TAG_FIRMWARE] == b"0.1.0"
    assert tags[system_rare.TAG_PROTOCOL] == b"\x01"
    assert tags[system_rare.TAG_BOARD] == b"sim"
    assert tags[system_rare.TAG_SERIAL] == b"0123456789abcdef"
    free = int.from_bytes(tags[system_rare.TAG_HEAP_FREE], "big")
    assert 0 < free < 190 * 1024 + 1, free
    assert int.from_bytes(tags[system_rare.TAG_HEAP_TOTAL], "big") == 194560
    assert tags[system_rare.TAG_MAX_PAYLOAD] == b"\x04\x00"
    assert [v for t, v in tlv if t == system_rare.TAG_APP] == [b"cap/0.1.0"]
    import sys

    v = sys.implementation.version
    assert tags[system_rare.TAG_MICROPYTHON] == ("%d.%d.%d" % (v[0], v[1], v[2])).encode()
    assert tags[system_rare.TAG_PLATFORM] == sys.platform.encode()
    assert system_rare.TAG_FLASH_FREE not in tags  # this fake board has no storage folder
    assert (await d.call(system.CMD_INFO, b"x"))[0] == ERR_INVALID_PARAMETER
    await d.close()


async def test_info_reports_the_store_filesystem():
    d = Dev()
    d.board.storage = "/tmp"
    tags = dict(_tlv((await d.call(system.CMD_INFO))[1]))
    free = int.from_bytes(tags[system_rare.TAG_FLASH_FREE], "big")
    total = int.from_bytes(tags[system_rare.TAG_FLASH_TOTAL], "big")
    assert 0 < free <= total, (free, total)
    await d.close()


async def test_ping_echoes_up_to_max():
    d = Dev()
    p = bytes(i & 0xFF for i in range(1024))
    assert await d.call(system.CMD_PING, p) == (ERR_OK, p)
    assert await d.call(system.CMD_PING) == (ERR_OK, b"")
    await d.close()


async def test_screen_parts():
    ui = _fakes.FakeUi()
    d = Dev(ui=ui)
    assert await d.call(system.CMD_SCREEN) == (ERR_OK, ui.fb)
    assert await d.call(system.CMD_SCREEN, b"\x00") == (ERR_OK, ui.fb)
    code, text = await d.call(system.CMD_SCREEN, b"\x01")
    assert code == ERR_OK and text.decode().split("\n") == ui.lines
    assert (await d.call(system.CMD_SCREEN, b"\x02"))[0] == ERR_INVALID_PARAMETER
    await d.close()


async def test_press_injects_keys():
    d = Dev()
    assert await d.call(system.CMD_PRESS, b"12#D*") == (ERR_OK, b"")
    assert d.board.keys == ["1", "2", "#", "D", "*"]
    # one bad key refuses the whole string
    assert (await d.call(system.CMD_PRESS, b"12x"))[0] == ERR_INVALID_PARAMETER
    assert (await d.call(system.CMD_PRESS, b""))[0] == ERR_INVALID_PARAMETER
    assert len(d.board.keys) == 5
    await d.close()


async def test_press_unsupported_on_real_boards():
    d = Dev(board=_fakes.FakeBoard(inject=False))
    assert await d.call(system.CMD_PRESS, b"1") == (ERR_UNSUPPORTED, b"")
    await d.close()


async def test_reboot_answers_then_reboots():
    d = Dev()
    assert await d.call(system.CMD_REBOOT) == (ERR_OK, b"")
    assert d.board.rebooted == 0
    await asyncio.sleep_ms(200)
    assert d.board.rebooted == 1
    await d.close()
