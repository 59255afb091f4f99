# Text screen over the board's 128x64 MONO_VLSB framebuffer: 7 rows of 16 columns with
# framebuf's built-in 8x8 font, French accented letters, inverted rows (titles, menu cursor),
# a scroll bar, and a copy of the text of every row for ui.snapshot().
#
# Rows are PITCH = 9 pixels apart: a row is a blank pixel line, then the 8x8 cell. The font uses
# the cell's row 0 (capitals, accents' marks) and row 7 (the descenders of g j p q y , ;), so at
# 8 pixels apart a descender touched the capital under it; the blank line keeps every pair of
# rows apart (7 x 9 = 63 pixels: the panel's last pixel line stays dark). An inverted row is lit
# over its 9 lines, so a title bar has a lit line above its text.
#
# framebuf.text() only knows ASCII: a UTF-8 "é" would come out as two blocks. Accented letters
# are built in an 8x8 scratch glyph: the base letter from the font plus a mark. The lowercase
# letters of the font leave rows 0-1 empty (the dot of "i" is removed for "î"/"ï"), so the mark
# goes there; an uppercase letter is squeezed from 7 rows to 5 (rows 0,2,3,4,6 of the font are
# kept) to make room; the cedilla goes under the letter in row 7.
import framebuf
from micropython import const

WIDTH = const(128)
HEIGHT = const(64)
COLS = const(16)
ROWS = const(7)
PITCH = const(9)  # pixels from one row to the next: 8 for the font, 1 blank above it

LEFT = const(0)
CENTER = const(1)
RIGHT = const(2)

# Characters drawn from a base letter + a mark. Same index in the three tables.
_ACC = const("éèêëàâäçôöûùüîïÉÈÊËÀÂÇÔ°’«»\u00a0")
_BASE = const("eeeeaaacoouuuiiEEEEAACO '\"\" ")
# mark index per character: 0 acute, 1 grave, 2 circumflex, 3 diaeresis, 4 cedilla, 5 degree,
# 255 none (plain substitute: typographic apostrophe, guillemets, no-break space)
_KIND = const(b"\x00\x01\x02\x03\x01\x02\x03\x04\x02\x03\x02\x01\x03\x02\x03\x00\x01\x02\x03\x01\x02\x04\x02\x05\xff\xff\xff\xff")
_CEDILLA = const(4)
_NONE = const(255)
# 8 column bytes (VLSB: bit n = row n) per mark.
_MARKS = const((
    b"\x00\x00\x00\x02\x03\x01\x00\x00"  # acute: row 0 cols 4-5, row 1 cols 3-4
    b"\x00\x00\x01\x03\x02\x00\x00\x00"  # grave: row 0 cols 2-3, row 1 cols 3-4
    b"\x00\x00\x02\x01\x01\x02\x00\x00"  # circumflex: row 0 cols 3-4, row 1 cols 2 and 5
    b"\x00\x02\x02\x00\x00\x02\x02\x00"  # diaeresis: row 1 cols 1-2 and 5-6
    b"\x00\x00\x00\x80\x80\x00\x00\x00"  # cedilla: row 7 cols 3-4
    b"\x00\x00\x02\x05\x02\x00\x00\x00"  # degree: a 3x3 ring in rows 0-2
))


# Where a word longer than a row (an address, an IBAN-like value) is cut when it has no space:
# after the last of these on the row, the first group preferred ("http://" / "127.0.0.1:8400/"
# / "connexion", not "http://127.0.0." / "1:8400/connexion"); a hard cut only without any.
_BREAKS = const(("/", ":?&=", ".-_,;@"))
_NO_BREAK_BEFORE = const(":;!?»")


def _cut(text, width):
    # (end of this row, start of the next) for text longer than width. French puts a space
    # before : ; ! ? », a space no row may start after ("Essais" / "restants : 2", not
    # "Essais restants" / ": 2").
    first = cut = text.rfind(" ", 0, width + 1)
    while 0 < cut < len(text) - 1 and text[cut + 1] in _NO_BREAK_BEFORE:
        cut = text.rfind(" ", 0, cut)
    if cut <= 0:
        cut = first  # no other space: there, rather than inside a word
    if cut > 0:
        return cut, cut + 1
    for group in _BREAKS:
        best = -1
        for ch in group:
            i = text.rfind(ch, 0, width)
            if i > best:
                best = i
        if best > 0:
            return best + 1, best + 1
    return width, width


def wrap(text, width, out):
    """Append the rows of `text` cut at spaces to `width` columns to the list `out` (never before
    : ; ! ? »; a word longer than a row is cut after a separator, _BREAKS, or at the row's end
    without one). Returns out."""
    while len(text) > width:
        end, start = _cut(text, width)
        out.append(text[:end])
        text = text[start:]
    out.append(text)
    return out


class Screen:
    def __init__(self, display, lab=False):
        self.fb = display
        self.lab = lab  # a lab board (docs/boards.md, "Lab mode"): every frame carries the marker
        self.rows = [""] * ROWS  # text of each row as shown (what snapshot() returns)
        self.blanked = False
        self._g = bytearray(8)
        self._gfb = framebuf.FrameBuffer(self._g, 8, 8, framebuf.MONO_VLSB)

    # --- drawing -------------------------------------------------------------------------

    def clear(self):
        self.fb.fill(0)
        rows = self.rows
        for i in range(ROWS):
            rows[i] = ""

    def row(self, i, text, inverted=False, align=LEFT):
        """Draw `text` (cut to 16 columns) in row `i`, replacing what was there."""
        if len(text) > COLS:
            text = text[:COLS]
        y = i * PITCH
        fg = 0 if inverted else 1
        self.fb.fill_rect(0, y, WIDTH, PITCH, 1 - fg)
        x = 0
        if align == CENTER:
            x = (COLS - len(text)) * 4
        elif align == RIGHT:
            x = (COLS - len(text)) * 8
        self.text(text, x, y + 1, fg)
        self.rows[i] = text

    def scrollbar(self, first, count, top, total):
        """Rows first..first+count-1 show rows top.. of a text of `total` rows: the panel's
        rightmost pixel column over those rows gets a thumb of their share, inverting what is
        under it (lit on a plain row, dark on an inverted one)."""
        if total <= count:
            return
        fb = self.fb
        h = count * PITCH
        y0 = first * PITCH + top * h // total
        y1 = first * PITCH + (top + count) * h // total
        for y in range(y0, y1):
            fb.pixel(WIDTH - 1, y, 1 - fb.pixel(WIDTH - 1, y))

    def text(self, text, x, y, color=1):
        """Draw `text` at (x, y), one 8x8 cell per character, accents included."""
        fb = self.fb
        for ch in text:
            o = ord(ch)
            if 32 <= o < 127:
                fb.text(ch, x, y, color)
            else:
                self._accented(ch, x, y, color)
            x += 8

    def _accented(self, ch, x, y, color):
        i = _ACC.find(ch)
        if i < 0:
            self.fb.text("?", x, y, color)
            return
        base = _BASE[i]
        kind = _KIND[i]
        if kind == _NONE:
            self.fb.text(base, x, y, color)
            return
        g = self._g
        self._gfb.fill(0)
        self._gfb.text(base, 0, 0, 1)
        m = kind * 8
        upper = "A" <= base <= "Z"
        for c in range(8):
            b = g[c]
            if kind != _CEDILLA:
                if upper:  # keep font rows 0,2,3,4,6 in rows 2..6
                    b = ((b & 1) << 2) | ((b & 0x1C) << 1) | ((b & 0x40) >> 0)
                else:  # clear rows 0-1 (the dot of i)
                    b &= 0xFC
            b |= _MARKS[m + c]
            g[c] = b if color else b ^ 0xFF
        # the glyph cell owns its 8x8 pixels: copy them all (background included)
        self.fb.blit(self._gfb, x, y)

    # --- panel ---------------------------------------------------------------------------

    def flush(self):
        """Push the framebuffer to the panel, powering it back on if it was blanked."""
        if self.lab:
            # the lab marker: a dashed line on the panel's last pixel row, which no text row
            # reaches (ROWS * PITCH = 63), so a lab board is told from a field unit at a glance
            for x in range(0, WIDTH, 8):
                self.fb.hline(x, HEIGHT - 1, 4, 1)
        if self.blanked:
            self.wake()
        self.fb.show()

    def blank(self):
        if not self.blanked:
            self.blanked = True
            self.fb.power(False)

    def wake(self):
        if self.blanked:
            self.blanked = False
            self.fb.power(True)
            self.fb.show()

    def lines(self):
        """The rows shown, without the empty rows at the bottom."""
        rows = self.rows
        n = ROWS
        while n and not rows[n - 1]:
            n -= 1
        return rows[:n]


def format_amount(minor, decimals=2):
    """1250 -> "12,50"; 125000 -> "1 250,00" (French grouping, decimal comma)."""
    sign = ""
    if minor < 0:
        sign = "-"
        minor = -minor
    p = 10**decimals
    units, frac = divmod(minor, p)
    s = str(units)
    i = len(s) % 3 or 3
    out = s[:i]
    while i < len(s):
        out += " " + s[i : i + 3]
        i += 3
    if decimals:
        out += "," + str(p + frac)[1:]
    return sign + out
