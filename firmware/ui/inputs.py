# Input primitives of the Ui: ui.digits(...) & co. (ui/core.py) load this module while one runs
# and call these functions with the Ui; it is dropped after (firmware/ondemand.py), so a flow's
# busiest moment (the card computing, the key signing) finds its 3 KB free. All take an
# inactivity timeout (timeout_ms, default Ui.INPUT_MS) and end on ANNULER (*) with
# ui.cancelled = True, which the
# home loop turns into "Opération annulée". A/B scroll where a list or a text is longer than
# the screen; D (OK) accepts; C (CORR) erases the last digit. A confirmation longer than the
# screen is accepted only once its end was shown: D first shows the rest (its last row is the
# "D:OK *:ANNULER" hint, so D confirms exactly when the hint is on screen).
from . import i18n
from .screen import COLS, RIGHT, ROWS, format_amount, wrap


def _limit(ui, timeout_ms):
    return ui.INPUT_MS if timeout_ms is None else timeout_ms


async def _key(ui, limit):
    # The next key, or None when the entry ends without a value: timeout, or ANNULER
    # (ui.cancelled says which).
    k = await ui.key(limit)
    ui.cancelled = k == "*"
    return None if k == "*" else k


def _head(ui, title, prompt_lines):
    # Title and prompt; returns the row where the entry goes: after an empty row when there
    # is room, never in the last row (the hint).
    rows = ui._layout(prompt_lines)
    avail = ui._paint(rows, title)
    return min(ROWS - avail + len(rows) + 1, ROWS - 2)


async def digits(ui, title, min_len, max_len, masked=False, timeout_ms=None, prompt_lines=()):
    """Digits typed on the keypad -> bytearray of ASCII digits (the caller wipes it), or None
    on ANNULER / timeout. OK accepts once min_len digits are typed. masked shows one "*" per
    digit; the digits never become a str and never reach the screen's text."""
    if min_len < 0 or max_len < 1 or min_len > max_len:
        raise ValueError("length")
    ui._check_owner()
    limit = _limit(ui, timeout_ms)
    scr = ui.scr
    row = _head(ui, title, prompt_lines)
    scr.row(ROWS - 1, i18n.HINT_DIGITS)
    buf = bytearray(max_len)
    n = 0
    try:
        while True:
            if masked:
                text = "*" * n
            else:
                text = str(buf[:n], "ascii")
            if n < max_len:
                text += "_"
            scr.row(row, text[-COLS:])
            scr.flush()
            k = await _key(ui, limit)
            if k is None:
                return None
            if "0" <= k <= "9":
                if n < max_len:
                    buf[n] = ord(k)
                    n += 1
                else:
                    ui._beep()
            elif k == "C":
                if n:
                    n -= 1
                    buf[n] = 0
            elif k == "D":
                if n >= min_len:
                    ui.cancelled = False
                    return buf[:n]
                ui._beep()
    finally:
        for i in range(max_len):
            buf[i] = 0


async def amount(
    ui, title, max_digits=9, currency="EUR", timeout_ms=None, prompt_lines=(), min_value=1
):
    """An amount typed as digits, shown with a decimal comma ("1 250,00 EUR") -> integer in
    minor units (cents), or None on ANNULER / timeout. OK accepts from min_value."""
    if max_digits < 1 or max_digits > 12:
        raise ValueError("max_digits")
    ui._check_owner()
    limit = _limit(ui, timeout_ms)
    top = 10 ** (max_digits - 1)  # a digit is refused once value >= top
    scr = ui.scr
    row = _head(ui, title, prompt_lines)
    scr.row(ROWS - 1, i18n.HINT_DIGITS)
    value = 0
    while True:
        text = format_amount(value)
        if currency:
            text += " " + currency
        scr.row(row, text, False, RIGHT)
        scr.flush()
        k = await _key(ui, limit)
        if k is None:
            return None
        if "0" <= k <= "9":
            if value < top:
                value = value * 10 + ord(k) - 48
            else:
                ui._beep()
        elif k == "C":
            value //= 10
        elif k == "D":
            if value >= min_value:
                ui.cancelled = False
                return value
            ui._beep()


async def choose(ui, title, items, timeout_ms=None, selected=0):
    """Pick one of `items` (labels) -> its index, or None on ANNULER / timeout.
    Digits 1..9 pick that item at once; A/B move the cursor up/down, D (OK) picks it."""
    n = len(items)
    if n == 0:
        raise ValueError("items")
    ui._check_owner()
    limit = _limit(ui, timeout_ms)
    rows = []
    starts = []  # first row of each item, then the end
    for i in range(n):
        first = len(rows)
        starts.append(first)
        wrap(items[i], COLS - 2, rows)
        for j in range(first, len(rows)):
            lead = "  "
            if j == first and i < 9:
                lead = str(i + 1) + " "
            rows[j] = lead + rows[j]
    starts.append(len(rows))
    sel = selected if 0 <= selected < n else 0
    top = 0
    while True:
        a = starts[sel]
        b = starts[sel + 1]
        if a < top:
            top = a
        avail = ui._paint(rows, title, top, 0, a, b)
        if b > top + avail:
            top = b - avail
            ui._paint(rows, title, top, 0, a, b)
        k = await _key(ui, limit)
        if k is None:
            return None
        if k == "D":
            ui.cancelled = False
            return sel
        if k == "A":
            sel = (sel - 1) % n
        elif k == "B":
            sel = (sel + 1) % n
        elif "1" <= k <= "9":
            i = ord(k) - 49
            if i < n:
                ui.cancelled = False
                return i
            ui._beep()


async def confirm(ui, lines, title=None, timeout_ms=None):
    """Show `lines` with "D:OK *:ANNULER" -> True on OK, False on ANNULER or timeout."""
    rows = list(lines)
    rows.append(i18n.HINT_OK)
    k = await _pager(ui, rows, title, timeout_ms, True)
    ui.cancelled = k == "*"
    return k == "D"


async def message(ui, lines, timeout_ms=None, title=None):
    """Show `lines` until OK (-> True), ANNULER or timeout (-> False)."""
    return await _pager(ui, lines, title, timeout_ms) == "D"


async def _pager(ui, lines, title, timeout_ms, to_end=False):
    # Text longer than the screen scrolls with A (up) and B (down). Returns D, * or None.
    # to_end: D returns only once the last row was shown; before that it pages down.
    ui._check_owner()
    limit = _limit(ui, timeout_ms)
    rows = ui._layout(lines)
    top = 0
    seen = not to_end
    while True:
        avail = ui._paint(rows, title, top)
        end = len(rows) - avail  # top of the last page (negative: it all fits)
        if top >= end:
            seen = True
        while True:
            k = await ui.key(limit)
            if k == "D" and not seen:
                top = min(top + avail, end)
                break
            if k is None or k == "D" or k == "*":
                return k
            if k == "A" and top > 0:
                top -= 1
                break
            if k == "B" and top < end:
                top += 1
                break
