# The simulator's REPL in maintenance mode: on a board, main.py returns and MicroPython's REPL
# answers on the USB stream; the unix port has no REPL on a socket, so this one stands in for it
# on the simulator's TCP port (the same port as the link: `mpremote connect socket://127.0.0.1:P`).
#
# It speaks what mpremote uses of MicroPython's REPL (shared/runtime/pyexec.c):
#   friendly   ">>> " prompt, one line at a time (an expression's value is printed, else the line
#              is executed; no multi-line blocks), Ctrl-C clears the line, Ctrl-D on an empty line
#              soft-reboots (the namespace is cleared), Ctrl-A enters the raw REPL
#   raw        "raw REPL; CTRL-B to exit\r\n>"; the code up to Ctrl-D is answered "OK", its output,
#              0x04, the error's traceback, 0x04, ">"; Ctrl-D alone soft-reboots; Ctrl-B back to
#              friendly
#   raw-paste  Ctrl-E A Ctrl-A in raw mode: "R\x01" and a window of PASTE_WINDOW bytes (u16 LE);
#              0x01 each time a window was taken in; the code up to Ctrl-D is answered 0x04, then
#              as in raw mode (output, 0x04, traceback, 0x04, ">"). mpremote uses it when offered:
#              without it, it writes 256 bytes every 10 ms, and a copy of the firmware takes ~40 s
# The output of code is what it prints with print() (sys.stdout itself cannot be redirected on the
# unix port). The working folder is the board's storage folder: what a REPL sees of its flash.
# One connection at a time; the namespace lives until a soft reboot, as on a board. Like the link,
# it exits when its launcher is gone (CAPKEY_SIM_PARENT). machine.reset() (mpremote reset)
# restarts the simulator as a board restarts: board.reboot().
import builtins
import io
import os
import select
import socket
import sys

from micropython import const

_CTRL_A = const(1)
_CTRL_B = const(2)
_CTRL_C = const(3)
_CTRL_D = const(4)
_RAW_BANNER = const(b"raw REPL; CTRL-B to exit\r\n>")
_RAW_PASTE_ASK = const(b"\x05A")  # then Ctrl-A: raw-paste mode?
PASTE_WINDOW = 512
_PARENT_POLL_MS = const(1000)


def _cooked(text):
    return text.replace("\n", "\r\n").encode()


class Session:
    """One REPL over a connection: feed(bytes) -> what the REPL answers (bytes)."""

    def __init__(self, ns):
        self.ns = ns
        self.raw = False
        self.paste = -1  # in raw-paste mode: bytes taken in since the last window
        self.buf = bytearray()
        self.out = bytearray()

    def _print(self, *args, sep=" ", end="\n", file=None):
        if file is not None:
            builtins.print(*args, sep=sep, end=end, file=file)
            return
        self.out.extend(_cooked(sep.join([str(a) for a in args]) + end))

    def soft_reboot(self):
        self.ns.clear()
        self.ns["__name__"] = "__main__"
        self.ns["print"] = self._print

    def _run(self, raw, single):
        # -> the traceback text ("" when the code ran); bytes that are no UTF-8 are an error too
        try:
            code = raw.decode()
            if single:
                try:
                    value = eval(code, self.ns)
                except SyntaxError:
                    exec(code, self.ns)
                else:
                    if value is not None:
                        self.out.extend(_cooked(repr(value) + "\n"))
            else:
                exec(code, self.ns)
        except Exception as e:
            err = io.StringIO()
            sys.print_exception(e, err)
            return err.getvalue()
        return ""

    def feed(self, data):
        for b in data:
            if self.paste >= 0:
                self._pasted(b)
            elif self.raw:
                self._raw(b)
            else:
                self._friendly(b)
        out = bytes(self.out)
        self.out = bytearray()
        return out

    def _friendly(self, b):
        buf = self.buf
        if b == _CTRL_A:
            self.raw = True
            self.buf = bytearray()
            self.out.extend(b"\r\n" + _RAW_BANNER)
        elif b == _CTRL_C:
            self.buf = bytearray()
            self.out.extend(b"\r\n>>> ")
        elif b == _CTRL_D and not buf:
            self.soft_reboot()
            self.out.extend(b"\r\nMPY: soft reboot\r\n>>> ")
        elif b in (8, 127):
            if buf:
                self.buf = buf[:-1]
                self.out.extend(b"\x08 \x08")
        elif b in (10, 13):
            self.buf = bytearray()
            self.out.extend(b"\r\n")
            line = bytes(buf).strip()
            if line:
                self.out.extend(_cooked(self._run(line, True)))
            self.out.extend(b">>> ")
        elif b >= 32:
            buf.append(b)
            self.out.append(b)

    def _raw(self, b):
        buf = self.buf
        if b == _CTRL_A:
            self.buf = bytearray()
            if buf == _RAW_PASTE_ASK:
                self.paste = 0
                self.out.extend(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little"))
            else:
                self.out.extend(b"\r\n" + _RAW_BANNER)
        elif b == _CTRL_B:
            self.raw = False
            self.buf = bytearray()
            self.out.extend(b"\r\n>>> ")
        elif b == _CTRL_C:
            self.buf = bytearray()
        elif b == _CTRL_D:
            self.buf = bytearray()
            if not buf:
                self.soft_reboot()
                self.out.extend(b"\r\nMPY: soft reboot\r\n" + _RAW_BANNER)
                return
            self.out.extend(b"OK")
            self._run_raw(buf)
        else:
            buf.append(b)

    def _pasted(self, b):
        if b == _CTRL_D:
            buf, self.buf, self.paste = self.buf, bytearray(), -1
            self.out.extend(b"\x04")
            self._run_raw(buf)
            return
        self.buf.append(b)
        self.paste += 1
        if self.paste == PASTE_WINDOW:
            self.paste = 0
            self.out.extend(b"\x01")  # the host may send another window

    def _run_raw(self, code):
        err = self._run(bytes(code), False)
        self.out.extend(b"\x04")
        self.out.extend(_cooked(err))
        self.out.extend(b"\x04>")


def _parent_gone():
    pid = os.getenv("CAPKEY_SIM_PARENT")
    if not pid:
        return False
    try:
        os.stat("/proc/" + pid)
        return False
    except OSError:
        return True


class _Machine:
    # what the REPL's `import machine` gets: the unix port's machine has no reset()
    board = None

    @classmethod
    def reset(cls):
        cls.board.reboot()


def serve(board):
    """Serves the REPL on board.port until the process is stopped (or its launcher is gone)."""
    cwd = os.getcwd()
    for i, p in enumerate(sys.path):  # the firmware's folders stay importable from the flash
        if p.startswith("./"):  # boards/sim/main.py's (not ".frozen")
            sys.path[i] = cwd + p[1:]
    os.chdir(board.storage)
    _Machine.board = board
    sys.modules["machine"] = _Machine
    ns = {}
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(socket.getaddrinfo("127.0.0.1", board.port)[0][-1])
    srv.listen(1)
    print("capkey-sim listening on 127.0.0.1:%d (maintenance mode: REPL)" % board.port)
    waiting = select.poll()
    waiting.register(srv, select.POLLIN)
    session = Session(ns)
    session.soft_reboot()
    while True:
        if not waiting.poll(_PARENT_POLL_MS):
            if _parent_gone():
                raise SystemExit(0)
            continue
        conn = srv.accept()[0]
        # mpremote waits for each small answer: without TCP_NODELAY every one waits out the
        # host's delayed ACK (40 ms)
        conn.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (the unix port names neither)
        session.raw = False
        session.paste = -1
        session.buf = bytearray()
        reading = select.poll()
        reading.register(conn, select.POLLIN)
        try:
            while True:
                if not reading.poll(_PARENT_POLL_MS):
                    if _parent_gone():
                        raise SystemExit(0)
                    continue
                data = conn.recv(512)
                if not data:
                    break
                # the host's socket has Nagle on: its next small write waits for our ACK of the
                # last one, which Linux would delay 40 ms; QUICKACK (12) lasts until the next recv
                conn.setsockopt(6, 12, 1)
                out = session.feed(data)
                if out:
                    conn.write(out)
        except OSError:
            pass  # the host went away
        finally:
            conn.close()
