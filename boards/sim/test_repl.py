# The simulator's maintenance REPL (boards/sim/repl.py), run inside MicroPython: the bytes
# mpremote sends and the answers it waits for (mpremote/transport_serial.py).
import repl

_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


def _session():
    s = repl.Session({})
    s.soft_reboot()
    return s


def test_raw_repl_as_mpremote_drives_it():
    s = _session()
    s.feed(b"\r\x03")  # mpremote: interrupt whatever runs
    if not s.feed(b"\r\x01").endswith(_BANNER):  # enter the raw REPL
        raise AssertionError("raw REPL banner")
    if s.feed(b"\x04") != b"\r\nMPY: soft reboot\r\n" + _BANNER:
        raise AssertionError("Ctrl-D alone: soft reboot, raw REPL again")
    out = s.feed(b"x = 6\nprint(x * 7)\nprint('a', 'b', sep='-')\x04")
    if out != b"OK42\r\na-b\r\n\x04\x04>":
        raise AssertionError(out)
    out = s.feed(b"print(x)\n1 // 0\x04")
    if not out.startswith(b"OK6\r\n\x04Traceback") or b"ZeroDivisionError" not in out:
        raise AssertionError(out)
    if not out.endswith(b"\x04>"):
        raise AssertionError(out)
    out = s.feed(b"\xca\x4b\x04")  # a link frame's bytes: an error, the REPL goes on
    if not out.startswith(b"OK\x04Traceback") or not out.endswith(b"\x04>"):
        raise AssertionError(out)
    s.feed(b"y = 1\x03")  # Ctrl-C drops the code typed so far
    if s.feed(b"\x04") != b"\r\nMPY: soft reboot\r\n" + _BANNER:
        raise AssertionError("nothing left to run after Ctrl-C")
    out = s.feed(b"print(x)\x04")
    if b"NameError" not in out:
        raise AssertionError("a soft reboot clears the namespace: %r" % out)


def test_raw_paste_mode_with_its_window():
    s = _session()
    s.feed(b"\r\x01")
    if s.feed(b"\x05A\x01") != b"R\x01" + repl.PASTE_WINDOW.to_bytes(2, "little"):
        raise AssertionError("raw-paste mode is offered with its window")
    code = b"n = 0\n" + b"n += 1\n" * (repl.PASTE_WINDOW // 7 + 10) + b"print(n)\n"
    if s.feed(code[: repl.PASTE_WINDOW - 1]) != b"":
        raise AssertionError("nothing is answered inside a window")
    if s.feed(code[repl.PASTE_WINDOW - 1 :]) != b"\x01":
        raise AssertionError("0x01 once a window is taken in")
    out = s.feed(b"\x04")
    if out != b"\x04%d\r\n\x04\x04>" % (repl.PASTE_WINDOW // 7 + 10):
        raise AssertionError(out)
    if s.feed(b"\x05A\x01")[:2] != b"R\x01" or b"ZeroDivisionError" not in s.feed(b"1 // 0\x04"):
        raise AssertionError("back in raw mode after a paste, errors as in raw mode")


def test_friendly_repl_evaluates_lines():
    s = _session()
    if s.feed(b"x = 40\r") != b"x = 40\r\n>>> ":
        raise AssertionError("a statement is executed, its line echoed")
    if s.feed(b"x + 2\r") != b"x + 2\r\n42\r\n>>> ":
        raise AssertionError("an expression's value is printed")
    if s.feed(b"x = 4\x7f5\r") != b"x = 4\x08 \x085\r\n>>> " or s.ns.get("x") != 5:
        raise AssertionError("backspace erases")
    if b"NameError" not in s.feed(b"nope\r"):
        raise AssertionError("errors are shown")
    if s.feed(b"\x02\x01") != b"\r\n" + _BANNER:  # Ctrl-B is ignored outside the raw REPL
        raise AssertionError("Ctrl-A enters the raw REPL")
    if s.feed(b"\x02") != b"\r\n>>> ":
        raise AssertionError("Ctrl-B leaves it")
