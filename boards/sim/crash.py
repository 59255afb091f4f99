# Crash injection for the simulator ("pulling the USB plug"): with CAPKEY_CRASH_AT=N in the
# environment, the Nth call of store.write_point kills the process on the spot with SIGKILL (no
# finally blocks, no atexit, no flush); CAPKEY_CRASH_TAG=prefix counts only the points whose tag
# starts with it. The unix port has no os._exit and this build no ffi, so the kill goes through
# the shell: os.system("kill -KILL $PPID"), where $PPID of the shell is this process.
# boards/sim/board.py loads this module only when CAPKEY_CRASH_AT is set: a board carries none of
# it, and neither do the simulator's heap figures.
import os
import sys


def _pull_plug(tag):
    sys.stderr.write("capkey-sim: plug pulled at write point " + tag + "\n")
    os.system("kill -KILL $PPID")
    # still here: the shell could not kill us; this is not a faithful crash any more
    sys.stderr.write("capkey-sim: SIGKILL failed, exiting\n")
    raise SystemExit(70)


class CrashCounter:
    """Write-point hook: calls die(tag) at the Nth write point whose tag starts with prefix."""

    def __init__(self, at, prefix="", die=None):
        self.at = at
        self.prefix = prefix
        self.die = die or _pull_plug
        self.count = 0

    def __call__(self, tag):
        if self.prefix and not tag.startswith(self.prefix):
            return
        self.count += 1
        if self.count == self.at:
            self.die(tag)


def from_env(die=None):
    """A CrashCounter from CAPKEY_CRASH_AT (from 1) and CAPKEY_CRASH_TAG, or None when unset."""
    at = os.getenv("CAPKEY_CRASH_AT")
    if not at:
        return None
    n = int(at)
    if n < 1:
        raise ValueError("CAPKEY_CRASH_AT counts from 1")
    return CrashCounter(n, os.getenv("CAPKEY_CRASH_TAG") or "", die)
