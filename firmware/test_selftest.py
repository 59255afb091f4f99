# The SELFTEST command's parts, run inside MicroPython (root conftest.py): a panel that answers
# or fails, keys down at every sample (a stuck key) against keys that come and go, the clocks.
import asyncio
import time

import selftest


class _Panel:
    def __init__(self, error=None):
        self.error = error
        self.shown = 0

    def show(self):
        self.shown += 1
        if self.error is not None:
            raise self.error


class _Board:
    def __init__(self, panel, keys):
        self.display = panel
        self._keys = keys  # what keys_held() answers, call after call (then the last)
        self.calls = 0

    def keys_held(self):
        self.calls += 1
        return self._keys[min(self.calls, len(self._keys)) - 1]


def _items(answer):
    out, i = {}, 0
    while i < len(answer):
        tag, n = answer[i], answer[i + 1]
        out[tag] = bytes(answer[i + 2:i + 2 + n])
        i += 2 + n
    return out


def test_a_panel_that_answers_and_no_key_down():
    panel = _Panel()
    b = _Board(panel, [""])
    items = _items(asyncio.run(selftest.run(b)))
    if items[selftest.TAG_DISPLAY] != b"\x00" or panel.shown != 1:
        raise AssertionError(items)
    if selftest.TAG_DISPLAY_ERROR in items or items[selftest.TAG_KEYS_DOWN] != b"":
        raise AssertionError(items)
    if b.calls != 5:
        raise AssertionError("the keypad is sampled five times")
    uptime = int.from_bytes(items[selftest.TAG_UPTIME_MS], "big")
    if abs(uptime - (time.ticks_ms() & 0xFFFFFFFF)) > 5000:
        raise AssertionError(uptime)


def test_a_failing_panel_is_reported_with_its_error():
    items = _items(asyncio.run(selftest.run(_Board(_Panel(OSError(5)), [""]))))
    if items[selftest.TAG_DISPLAY] != b"\x01" or b"OSError" not in items[
            selftest.TAG_DISPLAY_ERROR]:
        raise AssertionError(items)


def test_only_keys_down_at_every_sample_are_reported():
    stuck = _items(asyncio.run(selftest.run(_Board(_Panel(), ["5", "5", "5", "5", "5"]))))
    if stuck[selftest.TAG_KEYS_DOWN] != b"5":
        raise AssertionError(stuck)
    brushed = _items(asyncio.run(selftest.run(_Board(_Panel(), ["5D", "D", "", "D", "D"]))))
    if brushed[selftest.TAG_KEYS_DOWN] != b"":
        raise AssertionError(brushed)  # D let go once, 5 at once: neither is stuck
    both = _items(asyncio.run(selftest.run(_Board(_Panel(), ["*#", "#*", "*#"]))))
    if sorted(both[selftest.TAG_KEYS_DOWN].decode()) != ["#", "*"]:
        raise AssertionError(both)


def test_the_wall_clock_is_unix_seconds_when_set():
    items = _items(asyncio.run(selftest.run(_Board(_Panel(), [""]))))
    # the unix port's clock is the host's: set, and in Unix seconds whatever the port's epoch
    clock = int.from_bytes(items[selftest.TAG_CLOCK], "big")
    if not 1704067200 <= clock <= 4102444800:
        raise AssertionError(clock)
