# BER-TLV (EMV Book 3 annex B) helpers shared by the soft card and the CAP reader.
#
# Tags are handled as ints (0x9F02); one- and two-byte tags, lengths in one byte or 81/82 forms.
# Parsing works on memoryviews and never copies a value.


class TlvError(ValueError):
    pass


def read(buf, pos, end):
    """Parse one TLV at buf[pos:end] -> (tag, value_start, value_len, next_pos)."""
    if pos >= end:
        raise TlvError("empty")
    tag = buf[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # multi-byte tag (EMV uses at most two bytes)
        if pos >= end:
            raise TlvError("tag")
        b = buf[pos]
        pos += 1
        if b & 0x80:
            raise TlvError("tag too long")
        tag = (tag << 8) | b
    if pos >= end:
        raise TlvError("length")
    n = buf[pos]
    pos += 1
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 2 or pos + k > end:
            raise TlvError("length")
        n = 0
        for _ in range(k):
            n = (n << 8) | buf[pos]
            pos += 1
    if pos + n > end:
        raise TlvError("value")
    return tag, pos, n, pos + n


def constructed(tag):
    first = tag >> 8 if tag > 0xFF else tag
    return bool(first & 0x20)


def find(buf, tag, start=0, end=None, recurse=True):
    """The value of the first `tag` in buf (a memoryview slice), searching inside constructed
    objects when recurse is set, or None."""
    if end is None:
        end = len(buf)
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    pos = start
    while pos < end:
        if mv[pos] in (0x00, 0xFF):  # padding between objects
            pos += 1
            continue
        t, vs, vn, pos = read(mv, pos, end)
        if t == tag:
            return mv[vs : vs + vn]
        if recurse and constructed(t):
            r = find(mv, tag, vs, vs + vn, True)
            if r is not None:
                return r
    return None


def put_tag(buf, pos, tag):
    if tag > 0xFF:
        buf[pos] = tag >> 8
        pos += 1
    buf[pos] = tag & 0xFF
    return pos + 1


def put_len(buf, pos, n):
    if n < 0x80:
        buf[pos] = n
        return pos + 1
    if n > 0xFF:
        raise TlvError("length")
    buf[pos] = 0x81
    buf[pos + 1] = n
    return pos + 2


def put(buf, pos, tag, value):
    """Write tag, length, value at buf[pos]; return the position after it."""
    pos = put_tag(buf, pos, tag)
    n = len(value)
    pos = put_len(buf, pos, n)
    buf[pos : pos + n] = value
    return pos + n


def dol_items(dol):
    """Iterate a Data Object List: yields (tag, length) pairs."""
    pos = 0
    end = len(dol)
    while pos < end:
        tag = dol[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            if pos >= end:
                raise TlvError("DOL tag")
            tag = (tag << 8) | dol[pos]
            pos += 1
        if pos >= end:
            raise TlvError("DOL length")
        yield tag, dol[pos]
        pos += 1


def dol_length(dol):
    n = 0
    for _, ln in dol_items(dol):
        n += ln
    return n
