import framebuf

from ui.screen import PITCH, ROWS, Screen, format_amount, wrap
from ui.test_fakeboard import FakeDisplay


def _cell(fb, col, y=0):
    # the 8 column bytes (bit n = pixel line y + n) of the 8x8 character cell at column col
    out = bytearray(8)
    for c in range(8):
        for n in range(8):
            out[c] |= fb.pixel(col * 8 + c, y + n) << n
    return bytes(out)


def _line_lit(fb, y):
    return any(fb.pixel(x, y) for x in range(128))


def _lit(cell):
    return sum(bin(b).count("1") for b in cell)


def test_plain_ascii_matches_framebuf_text():
    d = FakeDisplay()
    Screen(d).text("Menu", 0, 0)
    ref = bytearray(1024)
    framebuf.FrameBuffer(ref, 128, 64, framebuf.MONO_VLSB).text("Menu", 0, 0, 1)
    assert d.buffer == ref


def test_accents_differ_from_base_letter_and_take_one_cell():
    d = FakeDisplay()
    s = Screen(d)
    pairs = (("e", "é"), ("e", "è"), ("e", "ê"), ("e", "ë"), ("a", "à"), ("a", "â"), ("c", "ç"),
             ("o", "ô"), ("u", "û"), ("u", "ù"), ("i", "î"), ("i", "ï"), ("E", "É"))
    for base, acc in pairs:
        d.fill(0)
        s.text(base + acc + "x", 0, 0)
        plain, marked = _cell(d, 0), _cell(d, 1)
        assert plain != marked, acc
        assert _lit(marked) > 6, acc
        assert _cell(d, 2) != b"\0" * 8  # the next character is in the next cell
    # é = e with rows 0-1 marked: the body of the e is unchanged
    d.fill(0)
    s.text("eé", 0, 0)
    for c in range(8):
        assert _cell(d, 0)[c] & 0xFC == _cell(d, 1)[c] & 0xFC
    # the marks differ from one another
    d.fill(0)
    s.text("éèêë", 0, 0)
    cells = [_cell(d, i) for i in range(4)]
    assert len(set(cells)) == 4


def test_accent_in_inverted_row_is_inverted():
    d = FakeDisplay()
    s = Screen(d)
    s.row(0, "é", inverted=False)
    normal = _cell(d, 0, 1)
    s.row(0, "é", inverted=True)
    assert bytes(b ^ 0xFF for b in normal) == _cell(d, 0, 1)
    assert _cell(d, 1, 1) == b"\xff" * 8  # the rest of a title row is a lit bar
    assert all(d.pixel(x, 0) for x in range(128))  # lit above the text too
    assert not _line_lit(d, PITCH)  # and the row under it starts dark


def test_rows_are_apart():
    # 7 rows 9 pixels apart: a descender (row 7 of the font) and the capital under it (row 0)
    # have a dark pixel line between them; the panel's last line is never lit
    d = FakeDisplay()
    s = Screen(d)
    assert ROWS * PITCH <= 64
    for i in range(ROWS):
        s.row(i, "gjpqyÉTÀÇ" if i % 2 else "ÉTgypqÀ")
    for i in range(ROWS):
        assert not _line_lit(d, i * PITCH), i  # the blank line above each row
        assert _line_lit(d, i * PITCH + 1) and _line_lit(d, i * PITCH + 8), i
    assert not _line_lit(d, 63)
    ref = bytearray(8)
    framebuf.FrameBuffer(ref, 8, 8, framebuf.MONO_VLSB).text("g", 0, 0, 1)
    assert _cell(d, 0, PITCH + 1) == bytes(ref)  # row 1's text starts one line into the row


def test_scrollbar_shows_the_share_shown():
    d = FakeDisplay()
    s = Screen(d)
    s.scrollbar(1, 6, 0, 6)  # it all fits: no bar
    assert not any(d.pixel(127, y) for y in range(64))
    s.scrollbar(1, 6, 0, 12)  # the first half of 12 rows, in rows 1-6 (pixel lines 9-62)
    lit = [y for y in range(64) if d.pixel(127, y)]
    assert lit == list(range(9, 36))
    d.fill(0)
    s.scrollbar(1, 6, 6, 12)  # the second half
    assert [y for y in range(64) if d.pixel(127, y)] == list(range(36, 63))
    d.fill(0)
    s.row(1, "x", inverted=True)  # on an inverted row the thumb is dark
    s.scrollbar(1, 6, 0, 12)
    assert not d.pixel(127, 10) and d.pixel(126, 10) and d.pixel(127, 20)


def test_unknown_character_is_a_question_mark():
    d = FakeDisplay()
    s = Screen(d)
    s.text("€", 0, 0)
    q = bytearray(8)
    framebuf.FrameBuffer(q, 8, 8, framebuf.MONO_VLSB).text("?", 0, 0, 1)
    assert _cell(d, 0) == bytes(q)


def test_rows_keep_text_and_lines_drops_trailing_empty_rows():
    d = FakeDisplay()
    s = Screen(d)
    s.row(1, "Opération annulée")  # 17 characters: cut to 16 columns
    assert s.rows[1] == "Opération annulé"
    assert s.lines() == ["", "Opération annulé"]
    s.clear()
    assert s.lines() == [] and sum(d.buffer) == 0


def test_wrap():
    assert wrap("Choisir la fonction", 16, []) == ["Choisir la", "fonction"]
    assert wrap("Sélectionnez votre certificat", 16, []) == ["Sélectionnez", "votre certificat"]
    assert wrap("0123456789abcdef0123", 16, []) == ["0123456789abcdef", "0123"]
    # an address is cut after a separator, never inside a number or a word
    assert wrap("Connexion à http://127.0.0.1:8400", 16, []) == [
        "Connexion à", "http://", "127.0.0.1:8400"]
    assert wrap("https://banque.example/connexion", 16, []) == [
        "https://", "banque.example/", "connexion"]
    assert wrap("127.0.0.1:84001234", 16, []) == ["127.0.0.1:", "84001234"]
    assert wrap("", 16, []) == [""]
    # no row starts with the colon (or ; ! ? ») that French puts after a space
    assert wrap("Essais restants : 2", 16, []) == ["Essais", "restants : 2"]
    assert wrap("Activer le lecteur ? Oui", 16, []) == ["Activer le", "lecteur ? Oui"]
    assert wrap("abcdefghijklmnop : 2", 16, []) == ["abcdefghijklmnop", ": 2"]  # no other space
    assert wrap("0123456789abcdef ", 16, []) == ["0123456789abcdef", ""]  # a space at the end


def test_blank_and_wake():
    d = FakeDisplay()
    s = Screen(d)
    s.blank()
    s.blank()
    assert not d.on and d.power_calls == 1 and s.blanked
    s.flush()  # drawing wakes the panel
    assert d.on and not s.blanked


def test_format_amount():
    assert format_amount(0) == "0,00"
    assert format_amount(5) == "0,05"
    assert format_amount(125000) == "1 250,00"
    assert format_amount(123456789) == "1 234 567,89"
    assert format_amount(-1050) == "-10,50"
    assert format_amount(7, 0) == "7"


def test_a_lab_board_marks_every_frame_on_the_row_no_text_reaches():
    for lab in (False, True):
        d = FakeDisplay()
        s = Screen(d, lab)
        s.clear()
        for i in range(ROWS):
            s.row(i, "#" * 16, inverted=bool(i % 2))  # every text row full
        s.flush()
        dashes = [d.pixel(x, 63) for x in range(128)]
        want = [1 if lab and x % 8 < 4 else 0 for x in range(128)]
        assert dashes == want, (lab, dashes)
        assert s.lines() == ["#" * 16] * ROWS  # the marker is no text
