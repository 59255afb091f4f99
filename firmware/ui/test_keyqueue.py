import asyncio

import micropython

from ui.keyqueue import KeyQueue


def test_put_get_order_and_wraparound():
    q = KeyQueue(4)
    for _ in range(3):  # several laps around the ring
        for k in "12A#":
            assert q.put_nowait(k)
        assert len(q) == 4
        assert "".join(q.get_nowait() for _ in range(4)) == "12A#"
        assert q.get_nowait() is None
        assert len(q) == 0


def test_put_nowait_allocates_nothing_and_drops_when_full():
    q = KeyQueue(3)
    keys = "5*D#"
    ok = bytearray(4)
    micropython.heap_lock()
    try:
        for i in range(4):
            ok[i] = q.put_nowait(keys[i])
    finally:
        micropython.heap_unlock()
    assert list(ok) == [1, 1, 1, 0]
    assert q.dropped == 1
    assert q.get_nowait() == "5" and q.get_nowait() == "*" and q.get_nowait() == "D"
    assert q.get_nowait() is None


def test_clear():
    q = KeyQueue()
    q.put_nowait("1")
    q.put_nowait("2")
    q.clear()
    assert len(q) == 0 and q.get_nowait() is None


async def test_async_iteration_waits_for_keys():
    q = KeyQueue()
    got = []

    async def consumer():
        async for k in q:
            got.append(k)
            if len(got) == 3:
                return

    task = asyncio.create_task(consumer())
    await asyncio.sleep_ms(10)
    assert got == []  # nothing queued yet: the consumer waits
    q.put_nowait("7")
    await asyncio.sleep_ms(10)
    assert got == ["7"]
    q.put_nowait("B")
    q.put_nowait("0")
    await asyncio.wait_for_ms(task, 500)
    assert got == ["7", "B", "0"]


async def test_cancelled_wait_loses_no_key():
    q = KeyQueue()
    try:
        await asyncio.wait_for_ms(q.__anext__(), 20)
    except asyncio.TimeoutError:
        pass
    q.put_nowait("9")
    assert await asyncio.wait_for_ms(q.__anext__(), 200) == "9"
