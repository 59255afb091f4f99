# Simulator board tests, run inside MicroPython (root conftest.py).
import asyncio
import os

import board
import crash
import framebuf
from catalog import BOARD_HEAP


def _tmp():
    return "/tmp/capkey-simboard-" + os.urandom(6).hex()


def _rmtree(path):
    for entry in os.ilistdir(path):
        p = path + "/" + entry[0]
        if entry[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def test_display_is_a_framebuffer_and_show_keeps_it():
    d = board.SimDisplay()
    if not isinstance(d, framebuf.FrameBuffer) or len(d.buffer) != 1024:
        raise AssertionError("128x64 MONO_VLSB framebuffer expected")
    d.fill(0)
    d.pixel(0, 9, 1)  # MONO_VLSB: page 1, column 0, bit 1
    if d.glass()[128] != 0:
        raise AssertionError("nothing reaches the glass before show()")
    d.show()
    if d.glass()[128] != 0x02:
        raise AssertionError(d.glass()[128])
    d.fill(0)  # drawing the next screen does not change what is shown
    if d.glass()[128] != 0x02:
        raise AssertionError("show() must keep the buffer")
    d.power(False)
    if any(d.glass()):
        raise AssertionError("a panel switched off is dark")
    d.pixel(1, 1, 1)
    d.show()
    if any(d.glass()):
        raise AssertionError("show() while off stays dark")
    d.power(True)
    if d.glass()[1] != 0x02:
        raise AssertionError("power(True) shows the current buffer")


def test_serial_is_stable_per_folder_and_storage_is_created():
    a = _tmp()
    b = _tmp()
    try:
        one = board.SimBoard(0, a + "/nested/")
        if one.storage != a + "/nested":
            raise AssertionError(one.storage)
        os.stat(one.storage)
        again = board.SimBoard(0, a + "/nested")
        other = board.SimBoard(0, b)
        if one.serial != again.serial:
            raise AssertionError("serial changed across boots")
        if one.serial == other.serial or len(one.serial) != 16:
            raise AssertionError((one.serial, other.serial))
        int(one.serial, 16)
        if ".sim-serial" not in os.listdir(one.storage):
            raise AssertionError(os.listdir(one.storage))
    finally:
        _rmtree(a)
        _rmtree(b)


def test_profile_heap_and_contract_attributes():
    a = _tmp()
    try:
        b = board.SimBoard(0, a, "rpi_pico")
        if b.name != "sim" or b.profile != "rpi_pico":
            raise AssertionError()
        # runs under -X heapsize=190k (root conftest.py): the board reports that heap
        if not 150 * 1024 < b.heap_total <= BOARD_HEAP["rpi_pico"]:
            raise AssertionError(b.heap_total)
        if len(b.random(32)) != 32 or b.random(16) == b.random(16):
            raise AssertionError("random")
        try:
            board.SimBoard(0, a, "atmega328")
            raise AssertionError("unknown profile accepted")
        except ValueError:
            pass
    finally:
        _rmtree(a)


async def test_inject_key_reaches_the_keypad():
    a = _tmp()
    try:
        b = board.SimBoard(0, a)
        for k in "1#*D":
            b.inject_key(k)
        got = ""
        async for key in b.keypad:
            got += key
            if len(got) == 4:
                break
        if got != "1#*D":
            raise AssertionError(got)
        for bad in ("E", "", "12", "x"):
            try:
                b.inject_key(bad)
                raise AssertionError("accepted key %r" % bad)
            except ValueError:
                pass
    finally:
        _rmtree(a)


def test_crash_counter_counts_only_the_tag_prefix():
    dead = []
    hook = crash.CrashCounter(3, "pin", dead.append)
    for tag in ("atc:begin", "pin:begin", "atc:torn", "pin:torn", "card:begin", "pin:synced"):
        hook(tag)
    if dead != ["pin:synced"]:
        raise AssertionError(dead)
    hook("pin:renamed")
    if dead != ["pin:synced"]:
        raise AssertionError("dies once")
    dead2 = []
    every = crash.CrashCounter(2, "", dead2.append)
    every("a:begin")
    every("b:begin")
    if dead2 != ["b:begin"]:
        raise AssertionError(dead2)


def test_crash_hook_is_armed_on_store_write_points():
    import store

    a = _tmp()
    dead = []
    os.putenv("CAPKEY_CRASH_AT", "2")
    os.putenv("CAPKEY_CRASH_TAG", "ctr")
    try:
        b = board.SimBoard(0, a)

        def die(tag):
            dead.append(tag)
            raise OSError(5)  # stop the save here, as the plug would

        b.install_crash_hook(die)
        s = store.Store(a)
        s.save("other", b"1")
        try:
            s.save("ctr", b"1")
            raise AssertionError("no crash")
        except OSError:
            pass
        if dead != ["ctr:torn"]:
            raise AssertionError(dead)
    finally:
        os.unsetenv("CAPKEY_CRASH_AT")
        os.unsetenv("CAPKEY_CRASH_TAG")
        store.set_hook(None)
        _rmtree(a)


async def test_serve_host_one_handler_per_connection():
    a = _tmp()
    port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000
    seen = []

    async def echo(reader, writer):
        data = await reader.readexactly(4)
        seen.append(bytes(data))
        writer.write(bytes(reversed(data)))
        await writer.drain()

    try:
        b = board.SimBoard(port, a)
        server = asyncio.create_task(b.serve_host(echo))
        for _ in range(50):
            if b.listening:
                break
            await asyncio.sleep_ms(10)
        for msg in (b"abcd", b"wxyz"):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(msg)
            await w.drain()
            back = await r.readexactly(4)
            if back != bytes(reversed(msg)):
                raise AssertionError(back)
            w.close()
            await w.wait_closed()
        if seen != [b"abcd", b"wxyz"]:
            raise AssertionError(seen)
        server.cancel()
    finally:
        _rmtree(a)


async def test_serve_host_takes_a_link_idle_timeout_from_the_environment():
    # CAPKEY_LINK_IDLE_MS reaches the link server as board.link_idle_ms; unset, the server's
    # IDLE_MS stands (the board has no such attribute)
    a = _tmp()
    port = 20000 + int.from_bytes(os.urandom(2), "big") % 20000

    async def nothing(reader, writer):
        pass

    try:
        plain = board.SimBoard(port, a)
        task = asyncio.create_task(plain.serve_host(nothing))
        await asyncio.sleep_ms(50)
        task.cancel()
        short = board.SimBoard(port + 1, a)
        os.putenv("CAPKEY_LINK_IDLE_MS", "1500")
        try:
            task = asyncio.create_task(short.serve_host(nothing))
            await asyncio.sleep_ms(50)
        finally:
            os.unsetenv("CAPKEY_LINK_IDLE_MS")
        task.cancel()
        if hasattr(plain, "link_idle_ms") or short.link_idle_ms != 1500:
            raise AssertionError(getattr(short, "link_idle_ms", None))
    finally:
        _rmtree(a)


def test_heap_stats_note_the_heap_at_screen_updates_and_write_points():
    import gc

    import ondemand
    import store

    a = _tmp()
    try:
        b = board.SimBoard(0, a)
        b.heap_stats(True)
        b.install_crash_hook()
        ondemand.stats(reset=True)
        base = ondemand.peak
        big = bytearray(20000)
        b.display.show()  # noted with the 20 KB alive
        del big
        _, used, peak = ondemand.stats(reset=True)
        if peak < base + 20000 or used > base + 1024:
            raise AssertionError("show: peak %d base %d used %d" % (peak, base, used))
        big = bytearray(12000)
        store.Store(a).save("rec", b"x")  # every write point notes the heap
        del big
        _, _, peak = ondemand.stats(reset=True)
        if peak < base + 12000:
            raise AssertionError("write point: peak %d base %d" % (peak, base))
    finally:
        store.set_hook(None)
        gc.threshold(-1)
        _rmtree(a)


def test_keys_held_at_power_up_come_from_the_environment():
    folder = _tmp()
    try:
        b = board.SimBoard(0, folder)
        os.putenv("CAPKEY_SIM_HELD_KEYS", "*#")
        if b.keys_held() != "*#":
            raise AssertionError(b.keys_held())
        os.unsetenv("CAPKEY_SIM_HELD_KEYS")
        if b.keys_held() != "":
            raise AssertionError("nothing held by default")
    finally:
        os.unsetenv("CAPKEY_SIM_HELD_KEYS")
        _rmtree(folder)
