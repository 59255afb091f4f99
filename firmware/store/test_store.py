# Store tests, run inside MicroPython (root conftest.py). Crashes are modelled in-process by a
# write-point hook that raises: nothing of the interrupted save runs after that point, which is
# what pulling the plug does (MicroPython's unix files are unbuffered, so the bytes written so
# far are on "flash"). The HIL suite repeats this with a real SIGKILL of the simulator.
import os
import struct
from binascii import crc32

import store
from store import CorruptRecord, Store
from store.test_support import Crash, rmtree

_STAGES = ("begin", "torn", "synced", "renamed")


class _Counter:
    """Hook that records tags and raises at the Nth call (1-based); 0 = never."""

    def __init__(self, crash_at=0):
        self.crash_at = crash_at
        self.tags = []

    def __call__(self, tag):
        self.tags.append(tag)
        if len(self.tags) == self.crash_at:
            raise Crash(tag)


def _save_cut_at(root, stage, name, data):
    """Saves `data` with the plug pulled at write point `stage`; returns the tags reached."""
    hook = _Counter(crash_at=_STAGES.index(stage) + 1)
    store.set_hook(hook)
    try:
        Store(root).save(name, data)
        raise AssertionError("hook did not fire")
    except Crash:
        pass
    finally:
        store.set_hook(None)
    return hook.tags


def _with_store(fn):
    root = "/tmp/capkey-store-" + os.urandom(6).hex()
    try:
        fn(root)
    finally:
        store.set_hook(None)
        rmtree(root)


def test_roundtrip_missing_delete():
    def body(root):
        s = Store(root + "/a/b")  # nested folders are created
        if s.load("pin") is not None:
            raise AssertionError("missing record must load as None")
        s.save("pin", b"\x03")
        s.save("card", bytearray(b"x" * 300))
        if s.load("pin") != b"\x03" or s.load("card") != b"x" * 300:
            raise AssertionError("roundtrip")
        if Store(root + "/a/b").load("card") != b"x" * 300:
            raise AssertionError("a second Store must see the same data")
        s.save("empty", b"")
        if s.load("empty") != b"":
            raise AssertionError("empty record is not missing")
        s.delete("pin")
        s.delete("pin")  # twice is fine
        if s.load("pin") is not None:
            raise AssertionError("deleted record must load as None")
        files = sorted(e[0] for e in os.ilistdir(root + "/a/b"))
        if files != ["card", "empty"]:
            raise AssertionError(repr(files))

    _with_store(body)


def test_file_layout_is_pinned():
    def body(root):
        s = Store(root)
        s.save("atc", b"\x00\x2a")
        s.save("atc", b"\x00\x2b")
        with open(root + "/atc", "rb") as f:
            raw = f.read()
        hdr = struct.pack(">HBBII", 0x434B, 1, 0, 2, 2)
        crc = crc32(b"\x00\x2b", crc32(hdr))
        if raw != hdr + struct.pack(">I", crc) + b"\x00\x2b":
            raise AssertionError(raw)
        if "atc.new" in os.listdir(root):
            raise AssertionError("no .new left after a completed save")

    _with_store(body)


def test_sequence_numbers_grow_across_instances():
    def body(root):
        for i in range(1, 6):
            Store(root).save("ctr", bytes([i]))
            with open(root + "/ctr", "rb") as f:
                seq = struct.unpack(">I", f.read()[4:8])[0]
            if seq != i:
                raise AssertionError((i, seq))

    _with_store(body)


def test_crash_at_each_write_point_gives_old_or_new():
    def body(root):
        for stage in _STAGES:
            Store(root).save("rec", b"old-value")
            tags = _save_cut_at(root, stage, "rec", b"NEW-VALUE-LONGER")
            if tags[-1] != "rec:" + stage:
                raise AssertionError(tags)
            got = Store(root).load("rec")
            # before the new copy is complete the old record stands; once it is complete the
            # save is finished on the next load (rolled forward), never undone
            want = b"old-value" if stage in ("begin", "torn") else b"NEW-VALUE-LONGER"
            if got != want:
                raise AssertionError((stage, got))
            if "rec.new" in os.listdir(root):
                raise AssertionError("load must clean up the interrupted copy")
            if Store(root).load("rec") != want:
                raise AssertionError("second load differs")

    _with_store(body)


def test_torn_new_copy_loads_previous_state():
    def body(root):
        s = Store(root)
        s.save("pin", b"\x03\x00")
        s.save("pin", b"\x02\x00")
        # a complete next copy, then cut at every possible length
        _save_cut_at(root, "synced", "pin", b"\x01\x00")  # the .new is complete
        with open(root + "/pin.new", "rb") as f:
            complete = f.read()
        for cut in range(len(complete)):
            with open(root + "/pin.new", "wb") as f:
                f.write(complete[:cut])
            if Store(root).load("pin") != b"\x02\x00":
                raise AssertionError(cut)
        # flipped bits in the new copy: also discarded
        for i in range(len(complete)):
            bad = bytearray(complete)
            bad[i] ^= 0x10
            with open(root + "/pin.new", "wb") as f:
                f.write(bad)
            if Store(root).load("pin") != b"\x02\x00":
                raise AssertionError(i)

    _with_store(body)


def test_corrupt_committed_record_is_not_absent():
    def body(root):
        s = Store(root)
        s.save("tries", b"\x03")
        with open(root + "/tries", "rb") as f:
            good = f.read()
        for i in range(len(good)):
            bad = bytearray(good)
            bad[i] ^= 0x01
            with open(root + "/tries", "wb") as f:
                f.write(bad)
            try:
                Store(root).load("tries")
                raise AssertionError("corruption at %d went unnoticed" % i)
            except CorruptRecord:
                pass
        with open(root + "/tries", "wb") as f:
            f.write(good[:-1])
        try:
            Store(root).load("tries")
            raise AssertionError("truncated record went unnoticed")
        except CorruptRecord:
            pass
        # a complete newer copy beside the corrupt record wins
        with open(root + "/tries", "wb") as f:
            f.write(b"garbage")
        _save_cut_at(root, "synced", "tries", b"\x02")
        if Store(root).load("tries") != b"\x02":
            raise AssertionError("newer complete copy must replace the corrupt record")

    _with_store(body)


def test_counter_never_rolls_back_under_crashes():
    # A try counter incremented 30 times with the plug pulled at every write point in turn:
    # after each crash the loaded value is the last acknowledged one or the one being written.
    def body(root):
        acked = 0
        Store(root).save("fails", bytes([acked]))
        crash_at = 1
        crashes = 0
        while acked < 30:
            hook = _Counter(crash_at=crash_at)
            store.set_hook(hook)
            s = Store(root)  # a fresh boot
            try:
                value = s.load("fails")[0]
                if value < acked or value > acked + 1:
                    raise AssertionError((acked, value))
                s.save("fails", bytes([value + 1]))
                acked = value + 1
                crash_at = 1  # next round: crash at the first point again
            except Crash:
                crashes += 1
                crash_at += 1
            store.set_hook(None)
            value = Store(root).load("fails")[0]
            if value < acked or value > acked + 1:
                raise AssertionError(("after crash", acked, value))
            acked = value
        if crashes < 30:
            raise AssertionError("too few crash points exercised: %d" % crashes)

    _with_store(body)


def test_rollback_behind_our_back_is_detected():
    def body(root):
        s = Store(root)
        s.save("atc", b"\x01")
        with open(root + "/atc", "rb") as f:
            old = f.read()
        s.save("atc", b"\x02")
        if s.load("atc") != b"\x02":
            raise AssertionError()
        with open(root + "/atc", "wb") as f:
            f.write(old)  # an older valid copy put back (flash rewound)
        try:
            s.load("atc")
            raise AssertionError("rollback not detected")
        except CorruptRecord:
            pass

    _with_store(body)


def test_write_points_and_tags():
    def body(root):
        hook = _Counter()
        store.set_hook(hook)
        s = Store(root)
        s.save("key", b"abc")
        s.delete("key")
        want = ["key:begin", "key:torn", "key:synced", "key:renamed", "key:delete", "key:deleted"]
        if hook.tags != want:
            raise AssertionError(hook.tags)

    _with_store(body)


def test_rejects_bad_names_and_sizes():
    def body(root):
        s = Store(root)
        for bad in ("", ".hidden", "a/b", "x.new", "UPPER", "a" * 33, "sp ace"):
            try:
                s.save(bad, b"1")
                raise AssertionError("accepted name %r" % bad)
            except ValueError:
                pass
        try:
            s.save("big", bytes(store.MAX_RECORD + 1))
            raise AssertionError("accepted oversize record")
        except ValueError:
            pass
        s.save("big", bytes(store.MAX_RECORD))
        if len(s.load("big")) != store.MAX_RECORD:
            raise AssertionError()
        # an oversize file on flash is not read into RAM: it is corrupt
        with open(root + "/huge", "wb") as f:
            f.write(bytes(store.MAX_RECORD + 17))
        try:
            s.load("huge")
            raise AssertionError("oversize file accepted")
        except CorruptRecord:
            pass

    _with_store(body)
