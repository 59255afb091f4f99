import micropython
from drivers.keypad_matrix import KeypadMatrix


class Matrix:
    """A 4x4 keypad: `down` holds the (row, col) pressed, or a list of them; rows are driven,
    cols read."""

    def __init__(self):
        self.down = None
        self.levels = [1, 1, 1, 1]
        self.rows = [self._row(i) for i in range(4)]
        self.cols = [self._col(i) for i in range(4)]

    def _row(self, i):
        def drive(v):
            self.levels[i] = v

        return drive

    def _col(self, j):
        def read():
            down = self.down
            if down is None:
                return 1
            if isinstance(down, list):  # held(): several keys (allocating is fine there)
                for r, c in down:
                    if c == j and self.levels[r] == 0:
                        return 0
                return 1
            r, c = down  # scan_code(): one key, read without allocating
            return 0 if (c == j and self.levels[r] == 0) else 1

        return read


class Queue:
    def __init__(self):
        self.keys = []

    def put_nowait(self, key):
        self.keys.append(key)


def make():
    m = Matrix()
    q = Queue()
    return m, q, KeypadMatrix(m.rows, m.cols, q)


def test_held_reads_every_key_down_for_the_boot_combination():
    m, q, kp = make()
    assert kp.held() == ""
    m.down = [(3, 2), (3, 0)]  # # and *: two keys of one row
    assert kp.held() == "*#"
    m.down = [(0, 0), (3, 3), (1, 3)]
    assert kp.held() == "1BD"
    assert m.levels == [1, 1, 1, 1]  # every row left undriven
    assert q.keys == []  # held() reports keys, it does not type them


def test_scan_code_maps_row_and_column_to_layout():
    m, q, kp = make()
    m.down = (2, 1)  # third row, second column
    assert kp.scan_code() == 9
    assert kp.layout[9] == "8"
    m.down = (3, 3)
    assert kp.layout[kp.scan_code()] == "D"
    m.down = None
    assert kp.scan_code() == -1
    assert m.levels == [1, 1, 1, 1]  # every row released after a scan


def test_press_reported_once_after_debounce():
    m, q, kp = make()
    m.down = (0, 0)
    kp.poll(0)
    kp.poll(10)
    assert q.keys == []  # not yet stable
    kp.poll(25)
    kp.poll(40)
    kp.poll(400)  # held: still one key
    assert q.keys == ["1"]
    m.down = None
    kp.poll(410)
    kp.poll(440)
    m.down = (0, 0)
    kp.poll(450)
    kp.poll(480)
    assert q.keys == ["1", "1"]


def test_bounce_shorter_than_debounce_is_ignored():
    m, q, kp = make()
    for t in range(0, 60, 5):  # contact chatter: toggles every scan
        m.down = (1, 3) if (t // 5) % 2 == 0 else None
        kp.poll(t)
    assert q.keys == []


def test_scan_does_not_allocate():
    m, q, kp = make()
    m.down = (3, 0)
    kp.scan_code()
    micropython.heap_lock()
    try:
        code = kp.scan_code()
    finally:
        micropython.heap_unlock()
    assert kp.layout[code] == "*"
