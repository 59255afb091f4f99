# Test helpers for the CAP firmware tests (not in any manifest): the store contract in RAM with
# power-cut injection, and the shared vector file docs/vectors/cap_otp.json.
import sys


class PowerCut(Exception):
    pass


class RamStore:
    """The store contract in RAM. cut_at = n makes the n-th save die before (or, with
    after=True, just after) its data becomes durable, like CAPKEY_CRASH_AT on the simulator."""

    def __init__(self):
        self.d = {}
        self.saves = 0
        self.cut_at = 0
        self.after = False

    def load(self, name):
        return self.d.get(name)

    def save(self, name, data):
        self.saves += 1
        if self.saves == self.cut_at and not self.after:
            raise PowerCut()
        self.d[name] = bytes(data)
        if self.saves == self.cut_at:
            raise PowerCut()

    def delete(self, name):
        self.d.pop(name, None)


def load_vectors():
    import json

    roots = sys.argv[1:2] + [p[: -len("/firmware")] for p in sys.path if p.endswith("/firmware")]
    for root in roots:
        try:
            with open(root + "/docs/vectors/cap_otp.json") as f:
                return json.load(f)
        except OSError:
            pass
    raise OSError("docs/vectors/cap_otp.json not found")
