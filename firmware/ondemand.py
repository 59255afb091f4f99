# Modules loaded only while they are used, then dropped to give their RAM back.
#
# A Pico has about 190 KB of heap and the apps' code alone (card, reader, DES, P-256, payloads…)
# does not fit in it next to the core. So each app installs a thin resident layer (home keys,
# menu entries, link handlers as small functions, the little state that must survive) and loads
# its heavy modules only while a flow or a command runs:
#
#     async with ondemand.use("flows.cap") as flows:        # a link handler, a keypad flow
#         return await flows.status(state, req)
#     with ondemand.use("applets.emv_card", "reader.cap") as (card, reader):   # no waiting
#         ...
#
# One module name gives the module, several give a tuple. Uses nest and overlap (reference
# counts). A use keeps the modules its import added to sys.modules plus every module another
# open use had loaded (one of them may be what the new modules import: keeping them all is
# safe, and costs nothing more than what is already in RAM). When the last use that keeps a
# module ends, the module leaves sys.modules and its parent package, and its globals are
# cleared, so the function objects, tables and bytecode become garbage even if a stale pointer
# to the module object survives somewhere (a coroutine's old stack slot); then gc.collect().
# Modules that were already loaded before a use (the resident core, a test's imports) are
# never dropped, and neither is a module that sets ONDEMAND_RESIDENT = True: MicroPython keeps
# every native (viper) code block it loads on a list that is never shrunk, so loading such a
# module again at each use would leak about 100 bytes a time; it stays after its first use.
#
# Memory: the first load of a set of names notes the heap it took (the apps load theirs once at
# boot); a later load of them while other uses are open and gc.mem_free() is below that fails at
# once, before importing anything: a failed import costs time and leaves its half-built code in
# the heap (a one-time 5 KB that stayed, in a CAP flow overlapped by a key command). A load that
# raises MemoryError drops what it had added. If an open use was made with
# evict=fn (a long-lived hold whose owner can rebuild what it drops: the CAP card of the PC/SC
# mode), fn() is called to end it and the load is tried again at once. Otherwise `async with`
# waits for another use to end and tries again (at most wait_ms in all), unless this task
# already holds a use (two tasks each holding one and waiting for the other would never wake) or
# nobody else holds any; `with` never waits. Flows that need the person take ui.foreground()
# first and load after, so a flow waiting for the screen holds no module.
#
# Heap figures: note() records the highest gc.mem_alloc() seen (the simulator calls it at every
# screen update and store write point as well; with a low gc.threshold that is the live heap
# within the threshold); stats() reports it for the HEAP link command (firmware/main.py).
import gc
import sys

from micropython import const

WAIT_MS = const(30000)  # longest wait for another use to give memory back

_refs = {}  # module name -> number of open uses that keep it (only modules loaded here)
_open = []  # open uses, in the order they were entered
_closure = {}  # name given to use() -> the modules kept by the use that loaded it
_need = {}  # names given to use() -> the heap their first load took (bytes)
_event = None  # asyncio.Event set whenever a use ends (created on the first wait)
peak = 0  # highest gc.mem_alloc() noted
loads = 0  # modules imported by uses since power-up (benchmarks, tests)


def note():
    """Records the heap in use now if it is the highest seen."""
    global peak
    a = gc.mem_alloc()
    if a > peak:
        peak = a


def stats(reset=False):
    """(heap free, heap in use, peak in use since power-up or the last reset), after a
    collection; reset starts a new peak from the heap in use now."""
    global peak
    gc.collect()
    free = gc.mem_free()
    used = gc.mem_alloc()
    p = peak if peak > used else used
    if reset:
        peak = used
    return free, used, p


def held():
    """Names of the modules loaded by open uses (sorted)."""
    return sorted(_refs)


def _all_loaded(names):
    for name in names:
        if name not in sys.modules:
            return False
    return True


def _current_task():
    try:
        import asyncio

        return asyncio.current_task()
    except Exception:  # no task running (synchronous code, tests)
        return None


def _drop(name):
    mod = sys.modules.pop(name, None)
    i = name.rfind(".")
    if i > 0:
        parent = sys.modules.get(name[:i])
        attr = name[i + 1 :]
        if parent is not None and getattr(parent, attr, None) is mod:
            try:
                delattr(parent, attr)
            except (AttributeError, TypeError):
                pass
    if mod is not None:
        try:
            mod.__dict__.clear()
        except (AttributeError, TypeError):  # a built-in module's globals are read-only
            pass


class Use:
    """The context manager returned by use(); enter it once."""

    def __init__(self, names, wait_ms=WAIT_MS, evict=None):
        if not names:
            raise ValueError("no module")
        self.names = names
        self.wait_ms = wait_ms
        self.evict = evict
        self.task = None  # the task that entered it (None: a hold no task waits on)
        self._keep = None  # module names this use keeps, while it is open

    def _load(self):
        global loads
        if self._keep is not None:
            raise RuntimeError("use already open")
        gc.collect()  # an import needs contiguous blocks: give it the best chance
        need = _need.get(self.names, 0)
        if _open and gc.mem_free() < need and not _all_loaded(self.names):
            # known not to fit next to what the open uses hold: fail before importing (a failed
            # import costs time and can leave its half-built code in the heap for good)
            raise MemoryError("ondemand: heap short")
        before = gc.mem_alloc()
        old = dict.fromkeys(sys.modules)
        try:
            mods = []
            for name in self.names:
                __import__(name)
                mods.append(sys.modules[name])
        except BaseException:
            mods = None
            for m in list(sys.modules):
                if m not in old:
                    _drop(m)
            gc.collect()
            raise
        keep = {}
        for m in sys.modules:
            if m not in old and not getattr(sys.modules[m], "ONDEMAND_RESIDENT", False):
                keep[m] = None
        if keep:
            # new code may import any module other uses loaded: keep them all while it runs
            for m in _refs:
                keep[m] = None
        for name in self.names:
            # already loaded by another use: keep what came with it
            for m in _closure.get(name, ()):
                if m in _refs:
                    keep[m] = None
        keep = list(keep)
        for name in self.names:
            if name not in old:
                _closure[name] = keep
        for m in keep:
            if m not in _refs:
                loads += 1
            _refs[m] = _refs.get(m, 0) + 1
        self._keep = keep
        self.task = _current_task()
        _open.append(self)
        note()
        if keep and not need:  # the first load of these names: what it took, live objects only
            gc.collect()
            _need[self.names] = gc.mem_alloc() - before
        return mods[0] if len(mods) == 1 else tuple(mods)

    def release(self):
        """Ends the use (idempotent): drops the modules no other open use keeps."""
        keep = self._keep
        if keep is None:
            return
        note()
        self._keep = None
        _open.remove(self)
        for m in keep:
            n = _refs[m] - 1
            if n:
                _refs[m] = n
            else:
                del _refs[m]
                _closure.pop(m, None)
                _drop(m)
        gc.collect()
        if _event is not None:
            _event.set()

    def _load_or_evict(self):
        while True:
            try:
                return self._load()
            except MemoryError:
                if not _evict():
                    raise

    def _may_wait(self, me):
        others = False
        for u in _open:
            if u.task is me and me is not None:
                return False  # holding a use while waiting for another could deadlock
            others = True
        return others

    # synchronous: never waits
    def __enter__(self):
        return self._load_or_evict()

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    # asynchronous: waits for memory another use holds
    async def __aenter__(self):
        global _event
        import asyncio
        from time import ticks_diff, ticks_ms

        start = ticks_ms()
        while True:
            try:
                return self._load_or_evict()
            except MemoryError:
                me = _current_task()
                left = self.wait_ms - ticks_diff(ticks_ms(), start)
                if left <= 0 or not self._may_wait(me):
                    raise
            if _event is None:
                _event = asyncio.Event()
            _event.clear()
            try:
                await asyncio.wait_for_ms(_event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def __aexit__(self, exc_type, exc, tb):
        self.release()
        return False


def _evict():
    # Ends one evictable use (its owner's fn releases it); False when there is none.
    for u in _open:
        fn = u.evict
        if fn is not None:
            u.evict = None
            fn()
            u.release()  # in case fn did not
            return True
    return False


def use(*names, wait_ms=WAIT_MS, evict=None):
    """`with use("a.b", "c") as (ab, c):` / `async with use("a.b") as ab:` (see above)."""
    return Use(names, wait_ms, evict)
