# ondemand.py: reference counts across nested and overlapping uses, modules really leaving
# sys.modules and their package, the heap given back (gc.mem_free), cleanup after a failed or
# out-of-memory import, a load known not to fit refused before importing, and the wait for memory
# another use holds.
import asyncio
import gc
import os
import sys

import ondemand

# A throwaway package written to /tmp: pkg.big holds a large table (heap we can see come back),
# pkg.user imports pkg.shared (pkg.big counts its imports in pkg.started), pkg.bad raises while
# importing, pkg.huge cannot fit in the heap.
_BIG = "import pkg\npkg.started = getattr(pkg, 'started', 0) + 1\nT = bytes(range(256)) * 48\nL = [bytearray(64) for _ in range(64)]\ndef f():\n    return len(T)\n"
_FILES = {
    "__init__.py": "",
    "big.py": _BIG,
    "shared.py": "def twice(x):\n    return 2 * x\n",
    "user.py": "from pkg import shared\ndef four(x):\n    return shared.twice(shared.twice(x))\n",
    "bad.py": "from pkg import shared\nraise ValueError('broken module')\n",
    "huge.py": "from pkg import shared\nX = bytearray(400000)\n",
    "native.py": "ONDEMAND_RESIDENT = True\ndef f():\n    return 1\n",
}
_root = None


def _setup():
    global _root
    if _root is None:
        _root = "/tmp/capkey-ondemand-" + os.urandom(4).hex()
        os.mkdir(_root)
        os.mkdir(_root + "/pkg")
        for name, text in _FILES.items():
            with open(_root + "/pkg/" + name, "w") as f:
                f.write(text)
        sys.path.insert(0, _root)
    # the package itself resident, as firmware packages are once anything imported them
    import pkg  # noqa: F401


def _loaded(name):
    return name in sys.modules


def _free():
    gc.collect()
    return gc.mem_free()


def test_modules_are_dropped_and_the_heap_comes_back():
    _setup()
    pkg = sys.modules["pkg"]
    ondemand.use("pkg.big").release()  # first load interns the module's names (qstrs) for good
    before = _free()
    with ondemand.use("pkg.big") as big:
        if big.f() != 256 * 48 or not _loaded("pkg.big") or getattr(pkg, "big", None) is not big:
            raise AssertionError("not loaded")
        during = _free()
        if before - during < 12000:
            raise AssertionError("the module should hold ~16 KB, got %d" % (before - during))
        if ondemand.held() != ["pkg.big"]:
            raise AssertionError(ondemand.held())
    big = None
    after = _free()
    if _loaded("pkg.big") or hasattr(pkg, "big"):
        raise AssertionError("pkg.big still reachable through sys.modules or pkg")
    if before - after > 512:
        raise AssertionError("heap not given back: %d bytes missing" % (before - after))
    if ondemand.held():
        raise AssertionError(ondemand.held())


async def test_heap_comes_back_inside_a_long_running_coroutine():
    # a stale value-stack slot of this coroutine may still point at the module object: its
    # globals are cleared, so the table goes anyway
    _setup()
    ondemand.use("pkg.big").release()
    before = _free()
    for _ in range(3):
        async with ondemand.use("pkg.big") as big:
            n = big.f()
        if n != 256 * 48:
            raise AssertionError(n)
    after = _free()
    if before - after > 512:
        raise AssertionError("heap not given back: %d bytes missing" % (before - after))


def test_nested_uses_count_references():
    _setup()
    a = ondemand.use("pkg.big")
    big = a.__enter__()
    with ondemand.use("pkg.big") as again:
        if again is not big:
            raise AssertionError("second use loaded a second copy")
    if not _loaded("pkg.big"):
        raise AssertionError("inner use dropped a module the outer one holds")
    a.release()
    a.release()  # idempotent
    if _loaded("pkg.big") or ondemand.held():
        raise AssertionError("not dropped after the last use")


def test_several_names_and_shared_dependencies():
    _setup()
    with ondemand.use("pkg.user", "pkg.big") as (user, big):
        if user.four(3) != 12 or big.f() != 256 * 48:
            raise AssertionError("modules")
        if ondemand.held() != ["pkg.big", "pkg.shared", "pkg.user"]:
            raise AssertionError(ondemand.held())
    if ondemand.held() or _loaded("pkg.shared"):
        raise AssertionError("dependency left behind")
    # overlapping uses released out of order: pkg.user imports pkg.shared, which the first use
    # loaded; the second use keeps it although it did not load it
    first = ondemand.use("pkg.shared")
    first.__enter__()
    second = ondemand.use("pkg.user")
    user = second.__enter__()
    first.release()
    if not _loaded("pkg.shared") or user.four(1) != 4:
        raise AssertionError("a module still used was dropped")
    second.release()
    if _loaded("pkg.shared") or _loaded("pkg.user"):
        raise AssertionError("not dropped")


def test_resident_modules_are_never_dropped():
    _setup()
    import pkg.shared  # loaded outside any use: resident

    with ondemand.use("pkg.user", "pkg.shared") as (user, shared):
        if shared is not pkg.shared or user.four(2) != 8:
            raise AssertionError("modules")
    if not _loaded("pkg.shared") or _loaded("pkg.user") or pkg.shared.twice(2) != 4:
        raise AssertionError("a resident module was dropped")
    del sys.modules["pkg.shared"]
    delattr(pkg, "shared")


def test_a_failing_import_leaves_nothing_behind():
    _setup()
    before = sorted(sys.modules)
    for name, exc in (("pkg.bad", ValueError), ("pkg.huge", MemoryError), ("pkg.nothere", ImportError)):
        try:
            with ondemand.use(name):
                raise AssertionError("imported " + name)
        except exc:
            pass
        if sorted(sys.modules) != before or ondemand.held():
            raise AssertionError("%s left %r" % (name, sorted(set(sys.modules) - set(before))))


async def test_a_use_waits_for_memory_another_use_holds():
    _setup()
    # pkg.huge needs 400 KB: it never fits, so the waiting use gives up when the other ends
    other = ondemand.use("pkg.big")
    other.__enter__()
    t0 = ondemand.loads

    async def holder():
        await asyncio.sleep_ms(30)
        other.release()

    ended = [False]

    async def waiter():
        try:
            async with ondemand.use("pkg.huge", wait_ms=2000):
                pass
        except MemoryError:
            ended[0] = True

    task = asyncio.create_task(waiter())
    await asyncio.sleep_ms(10)
    if ended[0]:
        raise AssertionError("gave up while another use could still give memory back")
    await holder()
    await asyncio.wait_for_ms(task, 1000)
    if not ended[0] or ondemand.held() or ondemand.loads != t0:
        raise AssertionError("the waiting use did not end cleanly")
    # a task that holds a use does not wait (it would wait for itself)
    async with ondemand.use("pkg.big"):
        try:
            async with ondemand.use("pkg.huge", wait_ms=60000):
                pass
            raise AssertionError("loaded")
        except MemoryError:
            pass
    if ondemand.held():
        raise AssertionError(ondemand.held())


def test_a_load_known_not_to_fit_fails_before_importing():
    _setup()
    with ondemand.use("pkg.big"):  # the first load notes what it takes
        pass
    need = ondemand._need[("pkg.big",)]
    if need < 12000:
        raise AssertionError("noted %d bytes for a 16 KB module" % need)
    other = ondemand.use("pkg.user")
    other.__enter__()
    ballast = []  # the heap left: about half of what pkg.big takes
    while _free() > need // 2 + 512:
        ballast.append(bytearray(512))
    loads, started = ondemand.loads, sys.modules["pkg"].started
    try:
        with ondemand.use("pkg.big"):
            raise AssertionError("loaded")
    except MemoryError:
        pass
    if sys.modules["pkg"].started != started:
        raise AssertionError("the import was tried")
    if ondemand.loads != loads or _loaded("pkg.big") or ondemand.held() != ["pkg.shared", "pkg.user"]:
        raise AssertionError("it tried to import: %r" % ondemand.held())
    del ballast
    other.release()
    with ondemand.use("pkg.big") as big:  # room again: it loads
        if big.f() != 256 * 48:
            raise AssertionError("not loaded")
        ballast = []
        while _free() > need // 2 + 512:
            ballast.append(bytearray(512))
        with ondemand.use("pkg.big") as again:  # loaded already: it costs nothing
            if again is not big:
                raise AssertionError("not the loaded module")
        del ballast


def test_stats_and_peak():
    _setup()
    ondemand.stats(reset=True)
    free0, used0, peak0 = ondemand.stats()
    with ondemand.use("pkg.big"):
        pass
    free1, used1, peak1 = ondemand.stats(reset=True)
    if not (peak1 >= used0 + 12000 and abs(used1 - used0) < 512 and peak0 <= used0 + 512):
        raise AssertionError("peak %d %d used %d %d" % (peak0, peak1, used0, used1))
    _, _, peak2 = ondemand.stats()
    if peak2 > used1 + 512:
        raise AssertionError("reset did not start a new peak")


def test_a_use_of_loaded_modules_keeps_their_closure_only():
    _setup()
    a = ondemand.use("pkg.user")
    a.__enter__()
    b = ondemand.use("pkg.big")  # adds a module while pkg.user is open: keeps all three
    b.__enter__()
    c = ondemand.use("pkg.user")  # adds nothing: keeps pkg.user and what came with it
    user = c.__enter__()
    a.release()
    b.release()
    if _loaded("pkg.big") or not (_loaded("pkg.user") and _loaded("pkg.shared")):
        raise AssertionError(ondemand.held())
    if user.four(5) != 20:
        raise AssertionError("closure")
    c.release()
    if ondemand.held() or _loaded("pkg.user") or _loaded("pkg.shared"):
        raise AssertionError(ondemand.held())


def test_an_evictable_use_gives_way_to_a_load_that_does_not_fit():
    _setup()
    evicted = []
    hold = ondemand.use("pkg.big", evict=lambda: evicted.append(hold.release()))
    hold.__enter__()
    other = ondemand.use("pkg.shared")  # fits: nothing is evicted
    other.__enter__()
    other.release()
    if evicted or not _loaded("pkg.big"):
        raise AssertionError("evicted without need")
    try:
        with ondemand.use("pkg.huge"):
            raise AssertionError("loaded")
    except MemoryError:
        pass
    if evicted != [None] or _loaded("pkg.big") or ondemand.held():
        raise AssertionError("the evictable use was not ended: %r" % ondemand.held())


def test_a_resident_marked_module_stays_after_its_first_use():
    # native code cannot be reloaded without a leak (ondemand.py): such a module stays loaded
    _setup()
    with ondemand.use("pkg.native", "pkg.shared") as (native, shared):
        if native.f() != 1:
            raise AssertionError("not loaded")
    if not _loaded("pkg.native") or _loaded("pkg.shared"):
        raise AssertionError("the marked module should stay and only it")
    with ondemand.use("pkg.native") as again:
        if again is not native or ondemand.held():
            raise AssertionError("a resident module is not reloaded nor held")
