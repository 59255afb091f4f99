# crypto/devkey.py: one device secret per store, made once, keys separated by label.
import os

from applets.test_fakes import RamStore
from crypto import devkey
from crypto.hmac import hkdf


def _counting_random():
    calls = []

    def random(n):
        calls.append(n)
        return os.urandom(n)

    return random, calls


def test_secret_made_once_and_keys_are_hkdf_of_it():
    store = RamStore()
    random, calls = _counting_random()
    a = devkey.device_key(store, random, b"capkey-card-seal")
    s = store.d[devkey.RECORD]
    if len(s) != 32 or calls != [32]:
        raise AssertionError("secret")
    if a != hkdf(s, b"", b"capkey-card-seal", 32):
        raise AssertionError("not HKDF-SHA256(S, info=label)")
    if devkey.device_key(store, random, b"capkey-card-seal") != a or calls != [32]:
        raise AssertionError("secret made again")
    b = devkey.device_key(store, random, b"capkey-attest-seal")
    if len(b) != 32 or b == a:
        raise AssertionError("labels not separated")
    if devkey.device_key(RamStore(), random, b"capkey-card-seal") == a:
        raise AssertionError("two devices share a key")


def test_damaged_secret_is_refused_not_replaced():
    store = RamStore()
    store.d[devkey.RECORD] = b"\x01" * 31
    try:
        devkey.device_key(store, os.urandom, b"x")
    except ValueError:
        pass
    else:
        raise AssertionError("short secret accepted")
    if store.d[devkey.RECORD] != b"\x01" * 31:
        raise AssertionError("damaged secret replaced")
