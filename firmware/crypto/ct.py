# Constant-time helpers. micropython-lib's hmac has no compare_digest, so secrets (MAC tags, PIN
# checks) are compared here: the time depends on the lengths only, never on where bytes differ.
# Neither function allocates (test_ct.py runs them under micropython.heap_lock()).


def eq(a, b):
    """True when the two byte strings are equal. Lengths are not secret."""
    n = len(a)
    if n != len(b):
        return False
    r = 0
    for i in range(n):
        r |= a[i] ^ b[i]
    return r == 0


def wipe(buf):
    """Overwrite a bytearray (PIN digits, key material) with zeros."""
    for i in range(len(buf)):
        buf[i] = 0
