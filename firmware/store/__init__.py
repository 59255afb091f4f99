# Power-loss-safe records for capkey.
#
# One record = one file `<root>/<name>`:
#
#   offset size  field
#   0      2     magic 0x434B ("CK")
#   2      1     format version (1)
#   3      1     reserved, 0
#   4      4     sequence number (grows by one on every save of this record)
#   8      4     length of the data
#   12     4     CRC32 over bytes 0..11 of this header, then the data
#   16     n     data
#
# big-endian like everything else on the link and on flash.
#
# save() writes `<name>.new`, flushes it, then renames it over `<name>`; littlefs and POSIX
# rename atomically, so `<name>` is always one complete record. A crash before the rename
# leaves `<name>.new`; load() rolls a complete one forward (its sequence number is higher, so
# the interrupted save is finished, never undone) and discards a torn one (the old record is
# then still the current one). No older copy is kept on purpose: going back to an older copy
# is exactly the rollback of a PIN-try or ATC counter that must never happen. A committed
# record that fails its CRC, with no newer complete copy, raises CorruptRecord instead of
# reading as "absent", so callers cannot mistake corruption for a fresh device.
#
# Schema: SCHEMA numbers the layout of the records this firmware reads and writes. The record
# "store-schema" holds the highest schema that wrote the store (absent: 1); a firmware that finds
# a higher one refuses the store (StoreTooNew) instead of reading records it does not understand:
# after an update fell back, or a downgrade. The number is written when an update confirms itself
# (firmware/main.py), not before: an update that is given up leaves the store to the old app.
#
# Every durable step passes through write_point(tag); the simulator board installs a hook
# there that can kill the process ("pull the plug") at the Nth point. Tags are
# "<name>:<stage>" so a test can aim at one record with a tag prefix.
import os
import struct
from binascii import crc32

try:
    from micropython import const
except ImportError:  # CPython: pytest imports a package's __init__ while collecting its tests

    def const(x):
        return x


_MAGIC = const(0x434B)
_VERSION = const(1)
_HDR = const(16)
_CRC_AT = const(12)
MAX_RECORD = const(4096)
_MAX_NAME = const(32)
_NEW = const(".new")
_HDR_FMT = const(">HBBIII")
SCHEMA = const(1)
_SCHEMA_RECORD = const("store-schema")

_hook = None


def set_hook(fn):
    """Install fn(tag), called at every durable write point (None removes it)."""
    global _hook
    _hook = fn


def write_point(tag):
    """Mark a durable write step. Firmware calls this before and after every flash write."""
    h = _hook
    if h is not None:
        h(tag)


class StoreError(Exception):
    pass


class CorruptRecord(StoreError):
    """A record exists on flash but no valid copy of it can be read."""


class StoreTooNew(StoreError):
    """The store was written by a firmware with a newer schema: it is not opened."""


def _check_name(name):
    n = len(name)
    if n == 0 or n > _MAX_NAME or name[0] == "." or name.endswith(_NEW):
        raise ValueError("bad record name")
    for c in name:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c in "_-."):
            raise ValueError("bad record name")


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    part = ""
    for piece in path.split("/"):
        if not piece:
            if not part:
                part = "/" if path.startswith("/") else ""
            continue
        part = part + piece if (not part or part.endswith("/")) else part + "/" + piece
        if not _exists(part):
            os.mkdir(part)


def _parse(raw):
    # -> (seq, data memoryview) or None when the bytes are not one complete valid record
    n = len(raw)
    if n < _HDR:
        return None
    magic, version, _, seq, length, crc = struct.unpack_from(_HDR_FMT, raw, 0)
    if magic != _MAGIC or version != _VERSION or length != n - _HDR:
        return None
    mv = memoryview(raw)
    if crc32(mv[_HDR:], crc32(mv[:_CRC_AT])) != crc:
        return None
    return seq, mv[_HDR:]


class Store:
    """Records by name under the folder `root` (created if missing)."""

    def __init__(self, root):
        if len(root) > 1 and root.endswith("/"):
            root = root[:-1]
        _makedirs(root)
        self.root = root
        self._hdr = bytearray(_HDR)
        # last sequence number read or written per record: the next save uses one more, and a
        # record that comes back with a smaller number was rolled back behind our back
        self._seq = {}

    def _path(self, name):
        _check_name(name)
        return self.root + "/" + name

    def _read(self, path):
        # None: no file; False: a file that is not a valid record; else (seq, data)
        try:
            size = os.stat(path)[6]
        except OSError:
            return None
        if size > _HDR + MAX_RECORD:
            return False
        with open(path, "rb") as f:
            raw = f.read()
        return _parse(raw) or False

    def load(self, name):
        """The record's data (bytes), or None if it was never saved or was deleted."""
        path = self._path(name)
        tmp = path + _NEW
        cur = self._read(path)
        new = self._read(tmp)
        if new and (not cur or new[0] > cur[0]):
            # a save wrote its new copy completely and died before the rename: finish it
            write_point(name + ":recover")
            os.rename(tmp, path)
            write_point(name + ":recovered")
            best = new
        else:
            if new is not None:
                # torn (or stale) new copy of a save that never completed: the current record stands
                write_point(name + ":discard")
                os.remove(tmp)
            if not cur:
                if cur is False:
                    raise CorruptRecord(name)
                return None
            best = cur
        seq = best[0]
        if seq < self._seq.get(name, 0):
            raise CorruptRecord(name)
        self._seq[name] = seq
        return bytes(best[1])

    def _last_seq(self, name, path):
        seq = self._seq.get(name)
        if seq is None:
            seq = 0
            for p in (path, path + _NEW):
                r = self._read(p)
                if r and r[0] > seq:
                    seq = r[0]
        return seq

    def save(self, name, data):
        """Replace the record atomically: after a crash, load() gives the old or the new data."""
        path = self._path(name)
        n = len(data)
        if n > MAX_RECORD:
            raise ValueError("record too large")
        seq = self._last_seq(name, path) + 1
        hdr = self._hdr
        struct.pack_into(_HDR_FMT, hdr, 0, _MAGIC, _VERSION, 0, seq, n, 0)
        mv = memoryview(data)
        struct.pack_into(">I", hdr, _CRC_AT, crc32(mv, crc32(memoryview(hdr)[:_CRC_AT])))
        tmp = path + _NEW
        write_point(name + ":begin")
        with open(tmp, "wb") as f:
            f.write(hdr)
            half = n // 2
            f.write(mv[:half])
            f.flush()
            write_point(name + ":torn")
            f.write(mv[half:])
            f.flush()
        write_point(name + ":synced")
        os.rename(tmp, path)
        self._seq[name] = seq
        write_point(name + ":renamed")

    def delete(self, name):
        """Remove the record; deleting a missing record is not an error."""
        path = self._path(name)
        write_point(name + ":delete")
        for p in (path + _NEW, path):
            try:
                os.remove(p)
            except OSError:
                pass
        self._seq.pop(name, None)
        write_point(name + ":deleted")

    def _schema(self):
        raw = self.load(_SCHEMA_RECORD)
        return raw[0] if raw else 1

    def check_schema(self):
        """Raises StoreTooNew when a newer firmware wrote this store."""
        if self._schema() > SCHEMA:
            raise StoreTooNew(_SCHEMA_RECORD)

    def claim_schema(self):
        """Marks the store as written by this firmware's schema."""
        mark = bytes((SCHEMA,))
        if self.load(_SCHEMA_RECORD) != mark:
            self.save(_SCHEMA_RECORD, mark)
