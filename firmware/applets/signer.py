# The certificate key's signing applet: APDU in, APDU out, no I/O but the injected store.
#
#   s = Signer(store, random, serial="0123abcd", firmware="0.1.0")
#   s.provision()                      # first boot: device secret + attestation key
#   rsp = s.process(apdu)              # bytes -> response data || SW1 SW2
#
# Up to 4 slots, each a P-256 key made on the device and its certificate (DER). One PIN (6-8
# digits) and one PUK (8 digits) protect them (docs/token-security.md):
#   - the try counters are decremented and saved BEFORE the value is checked and restored after a
#     correct one, so pulling the plug mid-check costs a try and never gives one;
#   - 3 consecutive failures lock until the next power-up (a counter in RAM), 8 in total block;
#   - the PUK resets the PIN (RESET RETRY COUNTER); 8 wrong PUKs wipe every key and certificate.
#
# Keys at rest (record "sig.pin", "sig.slotN", "sig.dev"):
#   device secret S: crypto/devkey.py (shared with the CAP card), device_key(label) = HKDF(S, label)
#   KEK_pin = HKDF(ikm=PBKDF2-HMAC-SHA256(PIN, salt, KDF_ITERATIONS),
#                  salt=device_key("capkey-kek-salt"), "capkey-kek-pin")
#   KEK_puk = the same with the PUK and "capkey-kek-puk"
#   DEK (32 random bytes) sealed twice: under KEK_pin and under KEK_puk (gnuk's scheme, so a PUK
#   reset does not need the old PIN); a PIN or PUK is "correct" when its KEK opens its DEK blob
#   private key of slot N sealed under the DEK, bound to the slot and its public key
#   attestation key sealed under device_key("capkey-attest-seal"); "sig.dev" = 2 | public key | blob
# Sealed blobs: crypto/sealed.py (AES-256-CTR then HMAC-SHA256).
#
# APDUs (CLA 0x80; lv(x) = length u8 || x; short or extended Lc):
#   10 SETUP        data lv(PIN) PUK(8)                       FACTORY -> ACTIVE
#   24 CHANGE PIN   data lv(old PIN) lv(new PIN)
#   2C RESET RETRY  data PUK(8) lv(new PIN)
#   47 GENERATE     P2 slot, data lv(PIN)                      -> attestation
#   DB PUT CERT     P2 slot, data DER
#   2A SIGN         P2 slot, data lv(PIN) payload              -> r || s
#   E4 DELETE       P2 slot, data lv(PIN)
#   CA STATUS                                                  -> see status()
#   CB ATTEST KEY                                              -> public key (65)
#   CC READ CERT    P2 slot                                    -> DER
#   CD READ PUBKEY  P2 slot                                    -> public key (65)
# Status words: 9000 OK; 63Cx wrong PIN/PUK, x tries possible now; 6983 blocked (PUK: the keys are
# wiped); 6985 locked until power-up; 6986 wrong state (FACTORY, slot in use); 6A80 bad data;
# 6A82 slot empty / no certificate; 6A86 bad slot; 6700 bad length; 6D00 bad INS; 6E00 bad CLA.
import hashlib

import ondemand
from micropython import const

SLOTS = const(4)
PIN_TRIES = const(8)
SESSION_TRIES = const(3)
PUK_LEN = const(8)
PIN_MIN = const(6)
PIN_MAX = const(8)
# PBKDF2 iterations for the PIN and PUK keys. Simulator (x86): ~3 us each (12 ms per PIN check);
# RP2040: estimate ~0.1-0.15 ms each (0.4-0.6 s per PIN check). Stored in the record, so a board
# may change it for new devices without breaking old records.
KDF_ITERATIONS = 4096
MAX_CERT = const(3900)

FACTORY = const(0)
ACTIVE = const(1)

SW_OK = const(0x9000)
SW_BLOCKED = const(0x6983)
SW_LOCKED = const(0x6985)
SW_STATE = const(0x6986)
SW_DATA = const(0x6A80)
SW_EMPTY = const(0x6A82)
SW_P1P2 = const(0x6A86)
SW_LENGTH = const(0x6700)
SW_INS = const(0x6D00)
SW_CLA = const(0x6E00)

CLA = const(0x80)
INS_SETUP = const(0x10)
INS_CHANGE = const(0x24)
INS_RESET = const(0x2C)
INS_GENERATE = const(0x47)
INS_PUT_CERT = const(0xDB)
INS_SIGN = const(0x2A)
INS_DELETE = const(0xE4)
INS_STATUS = const(0xCA)
INS_ATTEST_KEY = const(0xCB)
INS_READ_CERT = const(0xCC)
INS_READ_PUB = const(0xCD)

_PIN_REC = const("sig.pin")
_DEV_REC = const("sig.dev")
_DEV_FMT = const(2)  # format 1 held S itself; S now lives in crypto/devkey.py
_FMT = const(1)  # record format version
_SALT = const(16)
_DEK_BLOB = const(81)  # sealed 32 bytes
_AAD_PIN = const(b"capkey-dek-pin")
_AAD_PUK = const(b"capkey-dek-puk")
_AAD_ATT = const(b"capkey-attest")
ATTEST_MAGIC = b"CKAT"
ATTEST_VERSION = const(1)


class SwError(Exception):
    """Ends a command with status word `sw` (no data)."""

    def __init__(self, sw):
        self.sw = sw


def apdu(ins, p2=0, data=b"", p1=0):
    """A command APDU in a bytearray (the caller may wipe it: it can hold a PIN); extended Lc
    when the data needs it. Used by apps/key.py and the tests."""
    n = len(data)
    h = 4 if not n else (5 if n < 256 else 7)
    out = bytearray(h + n)
    out[0] = CLA
    out[1] = ins
    out[2] = p1
    out[3] = p2
    if h == 5:
        out[4] = n
    elif h == 7:
        out[5] = n >> 8
        out[6] = n & 0xFF
    out[h:] = data
    return out


def lv(b):
    return bytes((len(b),)) + bytes(b)


def slot_record(slot):
    return "sig.slot%d" % slot


def _sw(sw):
    return bytes((sw >> 8, sw & 0xFF))


def _digits(b, lo, hi):
    if not lo <= len(b) <= hi:
        return False
    for c in b:
        if not 48 <= c <= 57:
            return False
    return True


class _PinState:
    # Record "sig.pin": fmt state pin_left puk_left iterations(4) salt(16) dek_pin(81) dek_puk(81)
    def __init__(self):
        self.state = FACTORY
        self.pin_left = PIN_TRIES
        self.puk_left = PIN_TRIES
        self.iterations = KDF_ITERATIONS
        self.salt = b""
        self.dek_pin = b""
        self.dek_puk = b""

    @classmethod
    def decode(cls, b):
        s = cls()
        if b is None:
            return s
        if len(b) != 8 + _SALT + 2 * _DEK_BLOB or b[0] != _FMT or b[1] not in (FACTORY, ACTIVE):
            raise SwError(SW_STATE)  # unreadable: never guess counters
        s.state = b[1]
        s.pin_left = b[2]
        s.puk_left = b[3]
        s.iterations = int.from_bytes(b[4:8], "big")
        s.salt = bytes(b[8 : 8 + _SALT])
        o = 8 + _SALT
        s.dek_pin = bytes(b[o : o + _DEK_BLOB])
        s.dek_puk = bytes(b[o + _DEK_BLOB : o + 2 * _DEK_BLOB])
        if s.pin_left > PIN_TRIES or s.puk_left > PIN_TRIES:
            raise SwError(SW_STATE)
        return s

    def encode(self):
        out = bytearray(8 + _SALT + 2 * _DEK_BLOB)
        out[0] = _FMT
        out[1] = self.state
        out[2] = self.pin_left
        out[3] = self.puk_left
        out[4:8] = self.iterations.to_bytes(4, "big")
        if self.state == ACTIVE:
            o = 8 + _SALT
            out[8:o] = self.salt
            out[o : o + _DEK_BLOB] = self.dek_pin
            out[o + _DEK_BLOB :] = self.dek_puk
        return bytes(out)


# The crypto of the commands that need it: loaded by them only, so that STATUS, READ CERT and a
# SIGN's payload check run without it, and the payload parser and the crypto never share the
# heap. In two parts that never share it either: the sealing code (_Crypto: the PIN and PUK
# checks, sealed blobs, device keys) and P-256 (_P256: keys and signatures), loaded once the
# sealing code has given the secret it opened.
_SEALING = ("crypto.sealed", "crypto.devkey", "crypto.hmac")
_P256 = "crypto.p256"


class _Crypto:
    # `with signer._crypto() as c:` -> c.sealed, c.devkey, c.hmac until the outermost such block
    # ends (an inner one finds them loaded)
    def __init__(self, signer):
        self._signer = signer
        self._use = None

    def __enter__(self):
        if self._signer._c is None:
            self._use = ondemand.use(*_SEALING)
            self.sealed, self.devkey, self.hmac = self._use.__enter__()
            self._signer._c = self
        return self._signer._c

    def __exit__(self, *exc):
        if self._use is not None:
            self._signer._c = None
            self._use.release()
            self._use = None
        return False


class Signer:
    def __init__(self, store, random, serial, firmware, kdf_iterations=KDF_ITERATIONS):
        self.store = store
        self.random = random
        self.serial = serial.lower()
        self.firmware = firmware
        self.kdf_iterations = kdf_iterations
        # consecutive failures since power-up (this object lives as long as the firmware runs)
        self.pin_fails = 0
        self.puk_fails = 0
        self._salt = None
        self._att_pub = None
        self._c = None  # the crypto (_Crypto) while a command that needs it runs

    def _crypto(self):
        return _Crypto(self)

    # -- device identity -------------------------------------------------------------------

    def provision(self):
        """Makes the device secret (if none yet) and the attestation key if this device has none."""
        if self.store.load(_DEV_REC) is not None:
            return False
        with ondemand.use(_P256) as p256:
            d, pub = p256.keygen(self.random)
            secret = p256.private_to_bytes(d)
        with self._crypto() as c:
            # makes S first: a crash after it only leaves S, reused next time
            blob = c.sealed.seal(self._att_seal_key(), secret, self.random(16), _AAD_ATT)
        self.store.save(_DEV_REC, bytes((_DEV_FMT,)) + pub + blob)
        return True

    def _att_seal_key(self):
        return self._c.devkey.device_key(self.store, self.random, b"capkey-attest-seal")

    def _device(self):
        """The salt of the KEKs; SW_STATE until the device is provisioned."""
        if self._salt is None:
            rec = self.store.load(_DEV_REC)
            if rec is None or len(rec) != 1 + 65 + _DEK_BLOB or rec[0] != _DEV_FMT:
                raise SwError(SW_STATE)
            self._att_pub = bytes(rec[1:66])
            self._salt = self._c.devkey.device_key(self.store, self.random, b"capkey-kek-salt")
        return self._salt

    def attestation_public_key(self):
        with self._crypto():
            self._device()
        return self._att_pub

    def _statement(self, slot, pub):
        s = self.serial.encode()
        f = self.firmware.encode()
        return ATTEST_MAGIC + bytes((ATTEST_VERSION, slot, len(s))) + s + bytes((len(f),)) + f + pub

    # -- PIN and PUK -----------------------------------------------------------------------

    def pin_state(self):
        rec = self.store.load(_PIN_REC)
        st = _PinState.decode(rec)
        if st.state == ACTIVE and st.puk_left == 0:
            # a wipe was interrupted (the PUK counter reached 0 and was saved first): finish it
            self._wipe()
            st = _PinState()
        return st

    def _save(self, st):
        self.store.save(_PIN_REC, st.encode())

    def _kek(self, secret_digits, st, label):
        h = self._c.hmac
        stretched = h.pbkdf2_sha256(secret_digits, st.salt, st.iterations, 32)
        return h.hkdf(stretched, self._device(), b"capkey-kek-" + label, 32)

    def _wipe(self):
        # Destroys every slot, then the DEK blobs (the order makes a crash midway harmless:
        # pin_state() sees puk_left == 0 and wipes again).
        for slot in range(SLOTS):
            self.store.delete(slot_record(slot))
        self._save(_PinState())
        self.pin_fails = 0
        self.puk_fails = 0

    def _now(self, left, fails):
        return min(left, SESSION_TRIES - fails) if fails < SESSION_TRIES else 0

    def _check(self, value, puk):
        """Checks the PIN (puk False) or the PUK with pre-decrement; returns (state, DEK)."""
        st = self.pin_state()
        if st.state != ACTIVE:
            raise SwError(SW_STATE)
        left = st.puk_left if puk else st.pin_left
        fails = self.puk_fails if puk else self.pin_fails
        if not left:
            raise SwError(SW_BLOCKED)
        if fails >= SESSION_TRIES:
            raise SwError(SW_LOCKED)
        # Pre-decrement: the try is spent on flash before the value is looked at.
        left -= 1
        if puk:
            st.puk_left = left
        else:
            st.pin_left = left
        self._save(st)
        kek = self._kek(value, st, b"puk" if puk else b"pin")
        sealed = self._c.sealed
        try:
            dek = sealed.unseal(kek, st.dek_puk if puk else st.dek_pin, _AAD_PUK if puk else _AAD_PIN)
        except sealed.SealError:
            dek = None
        if dek is None:
            fails += 1
            if puk:
                self.puk_fails = fails
                if not left:
                    self._wipe()
                    raise SwError(SW_BLOCKED)
            else:
                self.pin_fails = fails
                if not left:
                    raise SwError(SW_BLOCKED)
            raise SwError(0x63C0 | self._now(left, fails))
        if puk:
            st.puk_left = PIN_TRIES
            self.puk_fails = 0
        else:
            st.pin_left = PIN_TRIES
            self.pin_fails = 0
        self._save(st)
        return st, dek

    def _wrap(self, st, pin, dek):
        # The DEK sealed under a (new) PIN. PIN and PUK share the salt; HKDF's info separates them.
        st.dek_pin = self._c.sealed.seal(self._kek(pin, st, b"pin"), dek, self.random(16), _AAD_PIN)

    def _setup(self, pin, puk):
        st = self.pin_state()
        if st.state != FACTORY:
            raise SwError(SW_STATE)
        st.state = ACTIVE
        st.pin_left = st.puk_left = PIN_TRIES
        st.iterations = self.kdf_iterations
        st.salt = self.random(_SALT)
        dek = self.random(32)
        self._wrap(st, pin, dek)
        st.dek_puk = self._c.sealed.seal(self._kek(puk, st, b"puk"), dek, self.random(16), _AAD_PUK)
        self._save(st)

    # -- slots -----------------------------------------------------------------------------

    def slot(self, slot):
        """(public key, sealed private key, certificate) of a slot, or None."""
        rec = self.store.load(slot_record(slot))
        if rec is None:
            return None
        if len(rec) < 1 + 65 + _DEK_BLOB or rec[0] != _FMT:
            raise SwError(SW_STATE)
        return bytes(rec[1:66]), bytes(rec[66 : 66 + _DEK_BLOB]), bytes(rec[66 + _DEK_BLOB :])

    def _save_slot(self, slot, pub, blob, cert):
        self.store.save(slot_record(slot), bytes((_FMT,)) + pub + blob + bytes(cert))

    def _slot_aad(self, slot, pub):
        return b"capkey-slot-key" + bytes((slot,)) + pub

    def _generate(self, slot, pin):
        # the PIN's DEK and the attestation key, then the new key and its attestation, then the
        # new key sealed and saved: the attestation is only returned for a key that is saved
        with self._crypto() as c:
            _, dek = self._check(pin, False)
            if self.slot(slot) is not None:
                raise SwError(SW_STATE)
            self._device()
            att = c.sealed.unseal(self._att_seal_key(), self.store.load(_DEV_REC)[66:], _AAD_ATT)
        with ondemand.use(_P256) as p256:
            d, pub = p256.keygen(self.random)
            secret = p256.private_to_bytes(d)
            stmt = self._statement(slot, pub)
            sig = p256.sign(p256.private_from_bytes(att), hashlib.sha256(stmt).digest(),
                            self.random(32))
        with self._crypto() as c:
            blob = c.sealed.seal(dek, secret, self.random(16), self._slot_aad(slot, pub))
        self._save_slot(slot, pub, blob, b"")
        return stmt + sig

    def _sign(self, slot, pin, raw):
        with self._crypto() as c:
            _, dek = self._check(pin, False)
            s = self.slot(slot)
            if s is None or not s[2]:
                raise SwError(SW_EMPTY)
            pub, blob, _ = s
            try:
                secret = c.sealed.unseal(dek, blob, self._slot_aad(slot, pub))
            except c.sealed.SealError:
                raise SwError(SW_STATE)
        with ondemand.use(_P256) as p256:
            try:
                d = p256.private_from_bytes(secret)
            except ValueError:
                raise SwError(SW_STATE)
            return p256.sign(d, hashlib.sha256(raw).digest(), self.random(32))

    def status(self):
        """state pin_left pin_now puk_left puk_now, then a flags byte per slot (bit 0 key,
        bit 1 certificate)."""
        st = self.pin_state()
        out = bytearray(5 + SLOTS)
        out[0] = st.state
        out[1] = st.pin_left
        out[2] = self._now(st.pin_left, self.pin_fails)
        out[3] = st.puk_left
        out[4] = self._now(st.puk_left, self.puk_fails)
        for i in range(SLOTS):
            s = self.slot(i)
            if s is not None:
                out[5 + i] = 1 | (2 if s[2] else 0)
        return bytes(out)

    # -- APDU ------------------------------------------------------------------------------

    def process(self, cmd):
        """One command APDU -> response data || SW1 SW2."""
        try:
            n = len(cmd)
            if n < 4:
                raise SwError(SW_LENGTH)
            if cmd[0] != CLA:
                raise SwError(SW_CLA)
            ins = cmd[1]
            p2 = cmd[3]
            data = b""
            if n > 4:
                lc = cmd[4]
                start = 5
                if lc == 0 and n >= 7:
                    lc = (cmd[5] << 8) | cmd[6]
                    start = 7
                if lc == 0 or start + lc != n:
                    raise SwError(SW_LENGTH)
                data = memoryview(cmd)[start:]
            return bytes(self._dispatch(ins, p2, data)) + _sw(SW_OK)
        except SwError as e:
            return _sw(e.sw)

    def _slot_arg(self, p2):
        if p2 >= SLOTS:
            raise SwError(SW_P1P2)
        return p2

    def _take_pin(self, data):
        # lv(PIN) at the start of data -> (pin, rest)
        if not data or len(data) < 1 + data[0]:
            raise SwError(SW_LENGTH)
        k = data[0]
        pin = data[1 : 1 + k]  # a view into the caller's command buffer, which it wipes
        if not _digits(pin, PIN_MIN, PIN_MAX):
            raise SwError(SW_DATA)
        return pin, data[1 + k :]

    def _dispatch(self, ins, p2, data):
        # -> response data. (Keys and DEKs are ints and bytes: MicroPython cannot zeroize them;
        # nothing keeps a reference after the command, and the PIN's bytearray is wiped by the
        # caller, apps/key.py.)
        if ins == INS_STATUS:
            return self.status()
        if ins == INS_ATTEST_KEY:
            return self.attestation_public_key()
        if ins == INS_READ_CERT or ins == INS_READ_PUB:
            s = self.slot(self._slot_arg(p2))
            if s is None or (ins == INS_READ_CERT and not s[2]):
                raise SwError(SW_EMPTY)
            return s[2] if ins == INS_READ_CERT else s[0]
        if ins == INS_PUT_CERT:
            slot = self._slot_arg(p2)
            s = self.slot(slot)
            if s is None:
                raise SwError(SW_EMPTY)
            if not 2 <= len(data) <= MAX_CERT:
                raise SwError(SW_DATA)
            with ondemand.use("applets.x509") as x509:
                if not x509.holds_key(data, s[0]):
                    raise SwError(SW_DATA)
            self._save_slot(slot, s[0], s[1], data)
            return b""
        if ins == INS_SETUP:
            pin, rest = self._take_pin(data)
            if not _digits(rest, PUK_LEN, PUK_LEN):
                raise SwError(SW_DATA)
            with self._crypto():
                self._setup(pin, rest)
            return b""
        if ins == INS_CHANGE:
            old, rest = self._take_pin(data)
            new, rest = self._take_pin(rest)
            if rest:
                raise SwError(SW_LENGTH)
            with self._crypto():
                st, dek = self._check(old, False)
                self._wrap(st, new, dek)
            self._save(st)
            return b""
        if ins == INS_RESET:
            if len(data) < PUK_LEN or not _digits(data[:PUK_LEN], PUK_LEN, PUK_LEN):
                raise SwError(SW_DATA)
            new, rest = self._take_pin(data[PUK_LEN:])
            if rest:
                raise SwError(SW_LENGTH)
            with self._crypto():
                st, dek = self._check(data[:PUK_LEN], True)
                st.pin_left = PIN_TRIES
                self.pin_fails = 0
                self._wrap(st, new, dek)
            self._save(st)
            return b""
        if ins in (INS_GENERATE, INS_SIGN, INS_DELETE):
            slot = self._slot_arg(p2)
            pin, rest = self._take_pin(data)
            if ins == INS_SIGN:
                # the parser only while it checks: the PIN check and the signature run without it
                with ondemand.use("applets.payload") as payload:
                    try:
                        payload.parse(rest)
                    except payload.PayloadError:
                        raise SwError(SW_DATA)
                s = self.slot(slot)
                if s is None or not s[2]:
                    raise SwError(SW_EMPTY)
            elif rest:
                raise SwError(SW_LENGTH)
            elif ins == INS_DELETE and self.slot(slot) is None:
                raise SwError(SW_EMPTY)
            elif ins == INS_GENERATE and self.slot(slot) is not None:
                raise SwError(SW_STATE)
            if ins == INS_GENERATE:
                return self._generate(slot, pin)
            if ins == INS_SIGN:
                return self._sign(slot, pin, rest)
            with self._crypto():
                self._check(pin, False)
            self.store.delete(slot_record(slot))
            return b""
        raise SwError(SW_INS)
