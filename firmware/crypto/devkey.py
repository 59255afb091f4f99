# The device secret S and the keys derived from it: the one root every applet seals under.
#
#   S = 32 random bytes in record "dev.secret", made on first use, never overwritten
#   device_key(store, random, label) = HKDF-SHA256(ikm=S, salt="", info=label), 32 bytes
#
# Labels in use (one per purpose, so keys never repeat between applets):
#   b"capkey-attest-seal"  signer: seals the attestation key (record "sig.dev")
#   b"capkey-kek-salt"     signer: the HKDF salt of the PIN/PUK key-encryption keys
#   b"capkey-card-seal"    emv_card: seals the card key (UDK) and the card PIN block
#
# What it is worth depends on the board (docs/threat-model.md): on an RP2040 or a classic ESP32
# S sits in the same readable flash as the blobs, so sealing stops a casual read of one record
# file, not someone holding the whole flash image. Future hook (not built): on an RP2350 the
# board could hand S from OTP (read-locked after boot) instead of this record; device_key()
# is the only place that reads S, so only this function would change.
from crypto.hmac import hkdf

RECORD = "dev.secret"


def device_key(store, random, label):
    """-> 32 bytes. Makes and saves S first if the device has none; ValueError if S is damaged
    (a damaged S is never replaced: what was sealed under it must stay unreadable, not reset)."""
    s = store.load(RECORD)
    if s is None:
        s = bytes(random(32))
        if len(s) != 32:
            raise ValueError("random")
        store.save(RECORD, s)
    elif len(s) != 32:
        raise ValueError("device secret")
    return hkdf(s, b"", label, 32)
