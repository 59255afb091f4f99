# Test support shared by the tests that run on a real Store folder (store/test_store.py,
# applets/test_signer.py); a test_ name keeps it off the device, and it has no tests of its own.
import os


class Crash(Exception):
    """Raised by a write-point hook: the save stops there, as when the power is cut."""


def rmtree(path):
    """Removes a store folder and everything in it; a folder never created is fine."""
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        p = path + "/" + entry[0]
        if entry[1] == 0x4000:
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)
