# Soft EMV CAP card: APDU in, APDU out, no I/O except the store it is given.
#
# It answers what a CAP reader (or a PC/SC CAP tool) sends: SELECT of the PSE and of the CAP AIDs,
# GET PROCESSING OPTIONS, READ RECORD, GET DATA (9F17, 9F36, 9F13), VERIFY (plaintext PIN, ISO 9564
# format 2), GENERATE AC (ARQC or AAC, then the closing AAC). The profiles' constants (AID, label,
# CDOL1, IAF, IPB) come from catalog.py, generated from the host's profile catalogue; the two
# cryptogram families are code here (docs/cap.md, "Firmware card and reader"):
#
#   1 "visa-dpa-cvn10": Visa DPA, VIS CVN 10: AC = retail MAC under the UDK, padding method 1,
#     MAC input = minimum set || AIP || ATC || CVR (4, with its length byte); GPO/GAC format 1.
#   2 "mc-cap-cvn16":   MasterCard CAP, M/Chip 4 CVN 16: MasterCard session key (R = ATC||0000||UN),
#     padding method 2, MAC input = minimum set || AIP || ATC || CVR (6); GPO/GAC format 2.
#
# Durable state and power loss (records "cap_card", "cap_state" in the store):
#   - the ATC is incremented and saved before the GPO answer leaves the card;
#   - the PIN try counter is decremented and saved before the PIN is compared, and restored
#     (saved again) only after a match, so pulling the plug never gives a free try;
#   - the "ARQC outstanding" flag is saved before the ARQC answer and cleared by the closing AAC,
#     which is what the next transaction's CVR reports as "last online transaction not completed".
#
# Secrets at rest: "cap_card" = DF20 sealed || public TLVs (DF01 profile, 5A PAN, 5F34 PSN,
# DF04 PIN try limit, DF05 initial ATC). sealed = crypto/sealed.py of UDK (16) || PIN block (8)
# under device_key("capkey-card-seal") (crypto/devkey.py), aad = "capkey-card" || the public TLVs,
# so the blob opens only with this device's secret and only next to this profile and PAN. A
# record that does not parse makes load() raise: the card is unreadable (WIPE only),
# never a factory card; a blob that does not unseal answers 6984 to VERIFY and GENERATE AC. The
# counters stay in "cap_state", a separate record. The sealing modules (about 8 KB of heap) are
# loaded only while the record is sealed or opened (ondemand.py), at personalisation and at the
# first VERIFY or GENERATE AC, never for STATUS or SELECT; a MemoryError there propagates.
import os

import ondemand
from applets import tlv
from catalog import CAP_PROFILES
from crypto import ct, des
from crypto.mac import PAD1, PAD2, mac_alg3
from micropython import const

CARD_RECORD = "cap_card"
STATE_RECORD = "cap_state"

ATR = b"\x3b\x06capkey"  # direct convention, T=0 implied, historical bytes "capkey"

_PSE = const(b"1PAY.SYS.DDF01")
_AIP = const(b"\x10\x00")
_AFL = const(b"\x08\x01\x01\x00")  # SFI 1, record 1 to 1, no offline-authentication record
_CVM_LIST = const(b"\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00")  # X, Y = 0; plaintext PIN by ICC, always
_MIN_SET = const((0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37))  # MAC input order
_Z3 = const(b"Z3")
_CVN_VISA_10 = const(10)  # VIS CVN 10: retail MAC under the UDK, CVR of 4; else M/Chip CVN 16

# status words
SW_OK = const(0x9000)
_SW_WRONG_LENGTH = const(0x6700)
_SW_DATA_INVALID = const(0x6A80)
_SW_CONDITIONS = const(0x6985)
_SW_FILE_NOT_FOUND = const(0x6A82)
_SW_RECORD_NOT_FOUND = const(0x6A83)
_SW_WRONG_P1P2 = const(0x6A86)
_SW_DATA_NOT_FOUND = const(0x6A88)
_SW_PIN_BLOCKED = const(0x6983)
_SW_INVALIDATED = const(0x6984)  # referenced data invalidated: the sealed card record
_SW_INS = const(0x6D00)
_SW_CLA = const(0x6E00)

# state flags (persisted)
_F_ARQC_OPEN = const(1)  # an ARQC was given and no second GENERATE AC closed it
_F_NOT_ONLINE = const(2)  # an ARQC was given and never completed online (sticky: CAP never is)

# transaction phase (RAM)
_P_NONE = const(0)
_P_PSE = const(1)
_P_SELECTED = const(2)
_P_GPO = const(3)
_P_GAC1 = const(4)
_P_DONE = const(5)

_STATE_VERSION = const(1)
_SEALED = const(0xDF20)  # record tag of the sealed UDK || PIN block
_PUBLIC = const((0xDF01, 0x5A, 0x5F34, 0xDF04, 0xDF05))  # record order of the clear fields
_SEAL_LABEL = const(b"capkey-card-seal")
_AAD = const(b"capkey-card")


class CardStateError(Exception):
    """Personalise on a personalised card, or a card operation on a factory card."""


def check_pin_block(block):
    """True when block is a valid ISO 9564 format 2 block (PIN of 4 to 12 digits)."""
    if len(block) != 8 or block[0] >> 4 != 2:
        return False
    n = block[0] & 15
    if n < 4 or n > 12:
        return False
    for i in range(14):
        d = (block[1 + i // 2] >> (4 - 4 * (i & 1))) & 15
        if (i < n and d > 9) or (i >= n and d != 15):
            return False
    return True


def session_key(udk, r, out=None):
    """EMV / MasterCard session key: 3DES(UDK) of R with byte 3 set to F0 and 0F, odd parity."""
    if out is None:
        out = bytearray(16)
    c = des.DES(udk)
    try:
        blk = bytearray(r)
        blk[2] = 0xF0
        c.encrypt_block(blk, memoryview(out)[:8])
        blk[2] = 0x0F
        c.encrypt_block(blk, memoryview(out)[8:])
    finally:
        c.wipe()
    return des.odd_parity(out)


def _odd_parity(key):
    for b in key:
        b ^= b >> 4
        b ^= b >> 2
        b ^= b >> 1
        if not b & 1:
            return False
    return True


def _pan_digits_ok(pan):
    n = 0
    end = False
    for b in pan:
        for d in (b >> 4, b & 15):
            if d == 15:
                end = True
            elif end or d > 9:
                return 0
            else:
                n += 1
    return n


def _fields(mv, pos, tags):
    # TLVs of mv[pos:] -> dict; the secret tags (DF02, DF03) stay views into mv (no copy to wipe)
    f = {}
    end = len(mv)
    while pos < end:
        tag, vs, vn, pos = tlv.read(mv, pos, end)
        if tag in f:
            raise ValueError("duplicate tag")
        if tag not in tags:
            raise ValueError("unknown tag")
        v = mv[vs : vs + vn]
        f[tag] = v if tag in (0xDF02, 0xDF03) else bytes(v)
    return f


def parse_personalisation(data):
    """Validate the PERSONALISE TLVs -> dict of fields; ValueError on anything wrong."""
    return _check(_fields(memoryview(data), 0, (0xDF01, 0x5A, 0x5F34, 0xDF02, 0xDF03, 0xDF04, 0xDF05)))


def _check_secrets(udk, pin_block):
    if not _odd_parity(udk):
        raise ValueError("key parity")
    if not check_pin_block(pin_block):
        raise ValueError("PIN block")


def _check(f, secrets=True):
    for tag, n in ((0xDF01, 1), (0x5F34, 1), (0xDF02, 16), (0xDF03, 8), (0xDF04, 1)):
        if (secrets or tag not in (0xDF02, 0xDF03)) and len(f.get(tag, b"")) != n:
            raise ValueError("missing or bad field")
    if f[0xDF01][0] not in CAP_PROFILES:
        raise ValueError("profile")
    pan = f.get(0x5A, b"")
    if not 1 <= len(pan) <= 10 or not 12 <= _pan_digits_ok(pan) <= 19:
        raise ValueError("PAN")
    psn = f[0x5F34][0]
    if psn >> 4 > 9 or psn & 15 > 9:
        raise ValueError("PSN")
    if secrets:
        _check_secrets(f[0xDF02], f[0xDF03])
    if not 1 <= f[0xDF04][0] <= 15:
        raise ValueError("PIN try limit")
    atc = f.get(0xDF05, b"\x00\x00")
    if len(atc) != 2 or atc == b"\xff\xff":
        raise ValueError("ATC")
    f[0xDF05] = atc
    return f


class EmvCard:
    """The soft card. `process(apdu) -> response` (data || SW1 SW2)."""

    def __init__(self, store, random=None):
        self._store = store
        self._random = random or os.urandom
        self._out = bytearray(260)
        self._mac = bytearray(48)
        self._st = bytearray(7)  # version, ATC(2), PTC, flags, last online ATC(2)
        self._phase = _P_NONE
        self._pin_tried = False
        self._pin_ok = False
        self._prev_flags = 0
        self._cid1 = 0
        self.load()

    # -- personalisation and state ---------------------------------------------------------
    def load(self):
        raw = self._store.load(CARD_RECORD)
        self.personalised = False
        self._forget()
        if raw is None:
            return
        mv = memoryview(raw)
        tag, vs, vn, pos = tlv.read(mv, 0, len(mv))
        if tag != _SEALED:
            raise ValueError("card record")
        f = _check(_fields(mv, pos, _PUBLIC), secrets=False)
        # Opened at the first VERIFY or GENERATE AC (_open), not here: STATUS, SELECT and WIPE
        # then never load the sealing code, whose 8 KB the heap cannot spare beside another app.
        self._sealed = bytes(mv[vs : vs + vn])
        self._aad = _AAD + bytes(mv[pos:])
        st = self._store.load(STATE_RECORD)
        if st is None or len(st) != 7 or st[0] != _STATE_VERSION:
            raise CardStateError("card state missing")
        self._st[:] = st
        self.profile_id = f[0xDF01][0]
        self.pan = f[0x5A]
        self.psn = f[0x5F34][0]
        self.try_limit = f[0xDF04][0]
        (self.profile_name, self.aid, self.label, self._cvn, self._fmt, self._cdol1, self._iaf,
         self._ipb, _) = CAP_PROFILES[self.profile_id]
        self._cdol2 = b"\x8a\x02" + self._cdol1
        self._len1 = tlv.dol_length(self._cdol1)
        self._len2 = self._len1 + 2
        # (offset, length) in the CDOL1 data of each minimum-set element, in MAC order
        off = bytearray(2 * len(_MIN_SET))
        for i in range(len(_MIN_SET)):
            o = 0
            for tag, ln in tlv.dol_items(self._cdol1):
                if tag == _MIN_SET[i]:
                    off[2 * i] = o
                    off[2 * i + 1] = ln
                    break
                o += ln
        self._minoff = off
        self.personalised = True

    def personalise(self, data):
        if self.personalised:
            raise CardStateError("already personalised")
        f = parse_personalisation(data)
        st = bytearray(7)
        st[0] = _STATE_VERSION
        st[1:3] = f[0xDF05]
        st[3] = f[0xDF04][0]
        pub = bytearray(32)
        n = 0
        for tag in _PUBLIC:
            n = tlv.put(pub, n, tag, f[tag])
        pub = bytes(memoryview(pub)[:n])
        secret = bytearray(24)
        secret[:16] = f[0xDF02]
        secret[16:] = f[0xDF03]
        try:
            # one load of the sealing modules for the seal and the load() after it
            with ondemand.use("crypto.sealed", "crypto.devkey") as (sealed, devkey):
                key = devkey.device_key(self._store, self._random, _SEAL_LABEL)
                blob = sealed.seal(key, secret, self._random(16), _AAD + pub)
                ct.wipe(secret)
                rec = bytearray(4 + len(blob) + n)
                p = tlv.put(rec, 0, _SEALED, blob)
                rec[p : p + n] = pub
                rec = memoryview(rec)[: p + n]
                # state first: a crash before the card record leaves a factory card (state ignored)
                self._store.save(STATE_RECORD, st)
                self._store.save(CARD_RECORD, rec)
                self.load()
        finally:
            ct.wipe(secret)
        self._phase = _P_NONE

    def wipe(self):
        # card record first: once it is gone the card is in factory state whatever follows
        self._store.delete(CARD_RECORD)
        self._store.delete(STATE_RECORD)
        self._forget()
        self.personalised = False
        self._phase = _P_NONE

    def open(self):
        """Unseals the card key and PIN block now rather than at the first VERIFY: the caller
        loads its reader once the sealing code has given its heap back. A record that does not
        open is left for VERIFY and GENERATE AC to answer 6984."""
        try:
            self._open()
        except _Sw:
            pass

    def _open(self):
        """The UDK and PIN block, unsealed on first use in this power-up. A blob that was altered,
        moved next to another PAN or copied from another device answers 6984 (referenced data
        invalidated) to every VERIFY and GENERATE AC: the card can only be wiped."""
        if self._udk is not None:
            return
        try:
            with ondemand.use("crypto.sealed", "crypto.devkey") as (sealed, devkey):
                key = devkey.device_key(self._store, self._random, _SEAL_LABEL)
                secret = bytearray(sealed.unseal(key, self._sealed, self._aad))
        except ValueError:  # SealError
            raise _Sw(_SW_INVALIDATED)
        try:
            _check_secrets(memoryview(secret)[:16], memoryview(secret)[16:])
        except ValueError:
            ct.wipe(secret)
            raise _Sw(_SW_INVALIDATED)
        self._udk = secret[:16]
        self._pin = secret[16:]
        ct.wipe(secret)

    def _forget(self):
        # zeroes the card key and PIN block held in RAM (bytearrays made by load())
        for b in (getattr(self, "_udk", None), getattr(self, "_pin", None)):
            if b is not None:
                ct.wipe(b)
        self._udk = None
        self._pin = None

    @property
    def atc(self):
        return (self._st[1] << 8) | self._st[2]

    @property
    def tries(self):
        return self._st[3]

    def _save_state(self):
        self._store.save(STATE_RECORD, self._st)

    # -- APDU processing -------------------------------------------------------------------
    def power_on(self):
        """Cold or warm reset: the transaction is forgotten, the ATR returned."""
        self._phase = _P_NONE
        return ATR

    def process(self, apdu):
        n = len(apdu)
        if n < 4:
            return self._sw(_SW_WRONG_LENGTH)
        cla, ins, p1, p2 = apdu[0], apdu[1], apdu[2], apdu[3]
        if cla not in (0x00, 0x80):
            return self._sw(_SW_CLA)
        want = _CLASS.get(ins)
        if want is None:
            return self._sw(_SW_INS)
        if cla != want:
            return self._sw(_SW_CLA)
        # ISO 7816-4 short cases: 1 (header), 2 (Le), 3 (Lc data), 4 (Lc data Le)
        le = -1
        data = b""
        if n == 5:
            le = apdu[4]
        elif n > 5:
            lc = apdu[4]
            if lc == 0 or n not in (5 + lc, 6 + lc):
                return self._sw(_SW_WRONG_LENGTH)
            data = memoryview(apdu)[5 : 5 + lc]
            if n == 6 + lc:
                le = apdu[5 + lc]
        try:
            if ins == 0xA4:
                r = self._select(p1, p2, data)
            elif ins == 0xB2:
                r = self._read_record(p1, p2, data)
            elif ins == 0xCA:
                r = self._get_data(p1, p2, data)
            elif ins == 0xA8:
                r = self._gpo(p1, p2, data)
            elif ins == 0x20:
                r = self._verify(p1, p2, data)
            else:
                r = self._generate_ac(p1, p2, data)
        except _Sw as e:
            return self._sw(e.sw)
        # r = length of the response data in self._out
        if le > 0 and le < r:
            return self._sw(0x6C00 | r)  # wrong Le: resend with the exact length
        return self._finish(r, SW_OK)

    def _finish(self, n, sw):
        out = self._out
        out[n] = sw >> 8
        out[n + 1] = sw & 0xFF
        return bytes(memoryview(out)[: n + 2])

    def _sw(self, sw):
        return self._finish(0, sw)

    def _select(self, p1, p2, name):
        if p1 != 0x04 or p2 not in (0x00, 0x02):
            raise _Sw(_SW_WRONG_P1P2)
        if not name:
            raise _Sw(_SW_WRONG_LENGTH)
        self._phase = _P_NONE
        if p2 == 0x02 or not self.personalised:  # one application: no "next occurrence"
            raise _Sw(_SW_FILE_NOT_FOUND)
        out = self._out
        if bytes(name) == _PSE:
            # FCI: 6F { 84 DF name, A5 { 88 SFI of the directory = 1 } }
            inner = bytearray(3)
            tlv.put(inner, 0, 0x88, b"\x01")
            fci = bytearray(20)
            p = tlv.put(fci, 0, 0x84, _PSE)
            p = tlv.put(fci, p, 0xA5, inner)
            n = tlv.put(out, 0, 0x6F, memoryview(fci)[:p])
            self._phase = _P_PSE
            return n
        aid = self.aid
        if len(name) > len(aid) or bytes(name) != aid[: len(name)] or len(name) < 5:
            raise _Sw(_SW_FILE_NOT_FOUND)
        # FCI: 6F { 84 AID, A5 { 50 label, 87 priority } }
        prop = bytearray(32)
        p = tlv.put(prop, 0, 0x50, self.label)
        p = tlv.put(prop, p, 0x87, b"\x01")
        fci = bytearray(48)
        q = tlv.put(fci, 0, 0x84, aid)
        q = tlv.put(fci, q, 0xA5, memoryview(prop)[:p])
        self._phase = _P_SELECTED
        self._pin_tried = False
        self._pin_ok = False
        return tlv.put(out, 0, 0x6F, memoryview(fci)[:q])

    def _read_record(self, p1, p2, data):
        if data:
            raise _Sw(_SW_WRONG_LENGTH)
        if p2 & 7 != 4 or p1 == 0:
            raise _Sw(_SW_WRONG_P1P2)
        if p2 >> 3 != 1:
            raise _Sw(_SW_FILE_NOT_FOUND)
        if self._phase == _P_NONE:
            raise _Sw(_SW_CONDITIONS)
        if p1 != 1:
            raise _Sw(_SW_RECORD_NOT_FOUND)
        body = bytearray(200)
        if self._phase == _P_PSE:
            # 70 { 61 { 4F AID, 50 label, 87 priority } }
            entry = bytearray(40)
            p = tlv.put(entry, 0, 0x4F, self.aid)
            p = tlv.put(entry, p, 0x50, self.label)
            p = tlv.put(entry, p, 0x87, b"\x01")
            q = tlv.put(body, 0, 0x61, memoryview(entry)[:p])
        else:
            q = tlv.put(body, 0, 0x5A, self.pan)
            q = tlv.put(body, q, 0x5F34, bytes((self.psn,)))
            q = tlv.put(body, q, 0x8C, self._cdol1)
            q = tlv.put(body, q, 0x8D, self._cdol2)
            q = tlv.put(body, q, 0x8E, _CVM_LIST)
            q = tlv.put(body, q, 0x9F55, bytes((self._iaf,)))
            q = tlv.put(body, q, 0x9F56, self._ipb)
        return tlv.put(self._out, 0, 0x70, memoryview(body)[:q])

    def _get_data(self, p1, p2, data):
        if data:
            raise _Sw(_SW_WRONG_LENGTH)
        if self._phase < _P_SELECTED:
            raise _Sw(_SW_CONDITIONS)
        tag = (p1 << 8) | p2
        st = self._st
        if tag == 0x9F17:
            v = st[3:4]
        elif tag == 0x9F36:
            v = st[1:3]
        elif tag == 0x9F13:
            v = st[5:7]
        else:
            raise _Sw(_SW_DATA_NOT_FOUND)
        return tlv.put(self._out, 0, tag, v)

    def _gpo(self, p1, p2, data):
        if p1 or p2:
            raise _Sw(_SW_WRONG_P1P2)
        if self._phase != _P_SELECTED:
            raise _Sw(_SW_CONDITIONS)
        if len(data) != 2:
            raise _Sw(_SW_WRONG_LENGTH)
        if data[0] != 0x83 or data[1] != 0:  # no PDOL: the command template is empty
            raise _Sw(_SW_DATA_INVALID)
        atc = self.atc
        if atc >= 0xFFFF:
            raise _Sw(_SW_CONDITIONS)  # counter exhausted: the card is at end of life
        atc += 1
        st = self._st
        self._prev_flags = st[4]
        st[1] = atc >> 8
        st[2] = atc & 0xFF
        self._save_state()  # durable before the answer
        self._phase = _P_GPO
        self._pin_tried = False
        self._pin_ok = False
        out = self._out
        if self._fmt == 1:
            out[0] = 0x80
            out[1] = 6
            out[2:4] = _AIP
            out[4:8] = _AFL
            return 8
        body = bytearray(10)
        p = tlv.put(body, 0, 0x82, _AIP)
        p = tlv.put(body, p, 0x94, _AFL)
        return tlv.put(out, 0, 0x77, memoryview(body)[:p])

    def _verify(self, p1, p2, block):
        if p1 != 0 or p2 != 0x80:
            raise _Sw(_SW_WRONG_P1P2)  # only plaintext offline PIN
        if len(block) != 8:
            raise _Sw(_SW_WRONG_LENGTH)
        if self._phase < _P_SELECTED or self._phase >= _P_GAC1:
            raise _Sw(_SW_CONDITIONS)
        st = self._st
        if st[3] == 0:
            raise _Sw(_SW_PIN_BLOCKED)
        if not check_pin_block(block):
            raise _Sw(_SW_DATA_INVALID)
        self._open()  # before the try counter moves: a bad record costs no try
        self._pin_tried = True
        self._pin_ok = False
        st[3] -= 1
        self._save_state()  # pre-decrement is durable before the comparison
        if not ct.eq(self._pin, block):  # constant time
            return_sw = 0x63C0 | st[3]
            raise _Sw(return_sw)
        st[3] = self.try_limit
        self._save_state()
        self._pin_ok = True
        return 0

    def _generate_ac(self, p1, p2, data):
        kind = p1 & 0xC0  # 00 AAC, 40 TC, 80 ARQC
        if p2 != 0 or p1 & 0x3F or kind == 0xC0:
            raise _Sw(_SW_WRONG_P1P2)  # no CDA, no RFU bits
        phase = self._phase
        st = self._st
        if phase == _P_GPO:
            if len(data) != self._len1:
                raise _Sw(_SW_WRONG_LENGTH)
            self._open()  # the cryptogram needs the UDK, whatever is asked
            # card risk management: an online-only card; no cryptogram worth anything without
            # a verified PIN, so anything but a verified ARQC request gets an AAC
            cid = 0x80 if kind == 0x80 and self._pin_ok else 0x00
            self._cid1 = cid
            if cid == 0x80:
                st[4] |= _F_ARQC_OPEN | _F_NOT_ONLINE
                self._save_state()  # durable before the ARQC leaves
                self._phase = _P_GAC1
            else:
                self._phase = _P_DONE
            return self._ac_response(data, cid, -1)
        if phase == _P_GAC1:
            if len(data) != self._len2:
                raise _Sw(_SW_WRONG_LENGTH)
            if kind == 0x80:
                raise _Sw(_SW_WRONG_P1P2)  # no ARQC in a second GENERATE AC
            # offline approval is never granted: the answer is an AAC
            st[4] &= ~_F_ARQC_OPEN
            self._save_state()
            self._phase = _P_DONE
            return self._ac_response(data, 0x00, 0x00)
        raise _Sw(_SW_CONDITIONS)

    def _cvr(self, out, pos, cid1, cid2, arc):
        """Write the CVR at out[pos]; cid2 < 0 while no second GENERATE AC was requested."""
        st = self._st
        g1 = 0x20 if cid1 == 0x80 else (0x10 if cid1 == 0x40 else 0x00)
        g2 = 0x80 if cid2 < 0 else (0x40 if cid2 == 0x40 else 0x00)
        z3 = cid2 >= 0 and arc == _Z3
        if self._cvn == _CVN_VISA_10:
            b2 = g2 | g1
            if self._pin_tried:
                b2 |= 0x04
                if not self._pin_ok:
                    b2 |= 0x02
            if z3:
                b2 |= 0x01  # unable to go online
            b3 = 0x10  # new card: never completed an online transaction
            if self._prev_flags & _F_NOT_ONLINE:
                b3 |= 0x80  # last online transaction not completed
            if st[3] == 0:
                b3 |= 0x40  # PIN try limit exceeded
            out[pos : pos + 4] = bytes((0x03, b2, b3, 0x00))
            return pos + 4
        b1 = g2 | g1
        b4 = 0x02  # domestic: a CAP reader has no country of its own
        if self._pin_tried:
            b1 |= 0x04
            if self._pin_ok:
                b1 |= 0x01
            else:
                b4 |= 0x10  # offline PIN verification failed
        else:
            b4 |= 0x20  # offline PIN verification not performed
        if self._prev_flags & _F_ARQC_OPEN:
            b4 |= 0x80  # last online transaction not completed
        if z3:
            b4 |= 0x40  # unable to go online
        if st[3] == 0:
            b4 |= 0x08  # PIN try limit exceeded
        out[pos : pos + 6] = bytes((b1, 0x00, st[3] & 0x0F, b4, 0x00, 0x00))
        return pos + 6

    def _ac_response(self, data, cid, cid2):
        # MAC input: minimum set (from the CDOL data) || AIP || ATC || CVR
        m = self._mac
        base = 2 if cid2 >= 0 else 0  # CDOL2 data = ARC || CDOL1 layout
        arc = bytes(data[:2]) if cid2 >= 0 else None
        pos = 0
        for i in range(0, len(self._minoff), 2):
            off = base + self._minoff[i]
            ln = self._minoff[i + 1]
            m[pos : pos + ln] = data[off : off + ln]
            pos += ln
        un = bytes(m[pos - 4 : pos])
        m[pos : pos + 2] = _AIP
        m[pos + 2 : pos + 4] = self._st[1:3]
        pos += 4
        cvr_at = pos
        cid1 = self._cid1
        pos = self._cvr(m, pos, cid1, cid2, arc)
        cvr = bytes(m[cvr_at:pos])
        ac = bytearray(8)
        if self._cvn == _CVN_VISA_10:
            mac_alg3(self._udk, memoryview(m)[:pos], PAD1, ac)
            iad = b"\x06\x01\x0a" + cvr
        else:
            r = bytearray(8)
            r[0:2] = self._st[1:3]
            r[4:8] = un
            sk = session_key(self._udk, r)
            mac_alg3(sk, memoryview(m)[:pos], PAD2, ac)
            for i in range(16):
                sk[i] = 0
            iad = b"\x00\x10" + cvr + b"\x00\x00" + b"\x00\x00\x00\x00\x00\x00\x00\xff"
        out = self._out
        atc = self._st[1:3]
        if self._fmt == 1:
            out[0] = 0x80
            out[1] = 11 + len(iad)
            out[2] = cid
            out[3:5] = atc
            out[5:13] = ac
            out[13 : 13 + len(iad)] = iad
            return 13 + len(iad)
        body = bytearray(48)
        p = tlv.put(body, 0, 0x9F27, bytes((cid,)))
        p = tlv.put(body, p, 0x9F36, atc)
        p = tlv.put(body, p, 0x9F26, ac)
        p = tlv.put(body, p, 0x9F10, iad)
        return tlv.put(out, 0, 0x77, memoryview(body)[:p])


class _Sw(Exception):
    def __init__(self, sw):
        self.sw = sw


# class byte expected per instruction
_CLASS = {0xA4: 0x00, 0xB2: 0x00, 0x20: 0x00, 0xCA: 0x80, 0xA8: 0x80, 0xAE: 0x80}
