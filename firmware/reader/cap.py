# CAP reader state machine: drives any card object with transmit(apdu) -> response (data || SW)
# through the sequence of a CAP reader (cap.md section 2) and turns the first cryptogram into the
# code (section 3.2). Pure: no UI, no store; the app layer gives it the PIN digits and shows the
# result.
#
#   SELECT PSE 1PAY.SYS.DDF01 -> READ RECORD of its directory -> SELECT the CAP AID (or the known
#   AIDs directly when there is no PSE) -> GET PROCESSING OPTIONS -> READ RECORD per AFL ->
#   GET DATA 9F17 -> VERIFY -> GENERATE AC (ARQC) -> GENERATE AC (AAC, always sent once an ARQC
#   was given) -> [TDS MAC] -> IPB extraction.
#
# T=0 transport: 61xx is followed by GET RESPONSE, 6Cxx by the same command with Le = xx.
from applets import tlv
from catalog import CAP_PROFILES
from crypto.mac import PAD2, mac_alg1
from micropython import const

from reader import (
    MAX_FIELD_DIGITS,
    MAX_TDS_FIELDS,
    MODE_IDENTIFY,
    MODE_RESPOND,
    MODE_SIGN,
    MODE_TDS,
)

MAX_CODE_BITS = const(26)  # 2**26 < 10**8: the code fits 8 decimal digits

# The CAP applications this reader knows, in the catalogue's order (tried in this order when the
# card has no PSE), with the transaction date 9A each one's reader family sends.
_KNOWN_AIDS = tuple(CAP_PROFILES[i][1] for i in sorted(CAP_PROFILES))
_READER_DATE = {p[1]: p[8] for p in CAP_PROFILES.values()}
_PSE = const(b"1PAY.SYS.DDF01")

_TVR = const(b"\x80\x00\x00\x00\x00")  # offline data authentication not performed
_CVM_RESULTS = const(b"\x01\x00\x02")  # plaintext PIN by ICC, successful
_ARC_Z3 = const(b"Z3")  # unable to go online


class ReaderError(Exception):
    """The sequence could not produce a code; `reason` is one of the strings below."""

    NO_APPLICATION = "no_application"  # no CAP application on the card
    NOT_SUPPORTED = "not_supported"  # a CDOL tag or IPB this reader does not handle
    CARD_ERROR = "card_error"  # unexpected status word or malformed answer
    DECLINED = "declined"  # the card gave an AAC instead of an ARQC

    def __init__(self, reason, sw=0):
        super().__init__(reason)
        self.reason = reason
        self.sw = sw


class WrongPin(ReaderError):
    def __init__(self, tries_left):
        super().__init__("wrong_pin", 0x63C0 | tries_left)
        self.tries_left = tries_left


class PinBlocked(ReaderError):
    def __init__(self):
        super().__init__("pin_blocked", 0x6983)


def pin_block(digits, out):
    """ISO 9564 format 2 block of ASCII or numeric PIN digits into out (8 bytes)."""
    n = len(digits)
    if n < 4 or n > 12:
        raise ValueError("PIN length")
    for i in range(8):
        out[i] = 0xFF
    out[0] = 0x20 | n
    for i in range(n):
        d = digits[i]
        if d >= 0x30:
            d -= 0x30
        if d > 9:
            raise ValueError("PIN digit")
        j = 1 + i // 2
        if i & 1:
            out[j] = (out[j] & 0xF0) | d
        else:
            out[j] = (d << 4) | (out[j] & 0x0F)
    return out


def bcd_right(digits, nbytes):
    """Decimal digits (str or bytes), right-justified and zero-filled, packed BCD."""
    n = len(digits)
    if n > 2 * nbytes:
        raise ValueError("too many digits")
    out = bytearray(nbytes)
    for i in range(n):
        d = ord(digits[i]) if isinstance(digits, str) else digits[i]
        d -= 0x30
        if not 0 <= d <= 9:
            raise ValueError("not a digit")
        k = 2 * nbytes - n + i  # nibble index
        out[k // 2] |= d << (4 if k % 2 == 0 else 0)
    return out


def tds_block(fields):
    """cap.md 1.4: digits one per nibble, F between fields, F to an even count (unpadded)."""
    if not 1 <= len(fields) <= MAX_TDS_FIELDS:
        raise ValueError("TDS field count")
    nibbles = bytearray()
    for k, f in enumerate(fields):
        if not 1 <= len(f) <= MAX_FIELD_DIGITS:
            raise ValueError("TDS field length")
        if k:
            nibbles.append(15)
        for c in f:
            d = (ord(c) if isinstance(c, str) else c) - 0x30
            if not 0 <= d <= 9:
                raise ValueError("not a digit")
            nibbles.append(d)
    if len(nibbles) & 1:
        nibbles.append(15)
    out = bytearray(len(nibbles) // 2)
    for i in range(len(out)):
        out[i] = (nibbles[2 * i] << 4) | nibbles[2 * i + 1]
    return out


def extract(ipb, data):
    """cap.md 3.2: the data bits selected by the IPB, read as an unsigned integer."""
    if len(ipb) > len(data):
        raise ReaderError(ReaderError.NOT_SUPPORTED)  # implementations disagree: refuse
    v = 0
    nbits = 0
    for i in range(len(ipb)):
        m = ipb[i]
        if not m:
            continue
        b = data[i]
        for k in range(7, -1, -1):
            if m >> k & 1:
                v = (v << 1) | (b >> k & 1)
                nbits += 1
    if nbits == 0 or nbits > MAX_CODE_BITS:
        raise ReaderError(ReaderError.NOT_SUPPORTED)
    return v


class CapReader:
    """One card session per call of `card_info()` or `code()`.

    transmit(apdu: bytes) -> bytes (response data followed by SW1 SW2).
    """

    def __init__(self, transmit):
        self._transmit = transmit
        self._apdu = bytearray(5 + 255 + 1)

    # -- transport -----------------------------------------------------------------------
    def _send(self, n):
        """Send self._apdu[:n]; -> (data bytes, sw) after 61xx/6Cxx handling."""
        apdu = self._apdu
        r = self._transmit(bytes(memoryview(apdu)[:n]))
        sw = (r[-2] << 8) | r[-1] if len(r) >= 2 else 0
        if sw >> 8 == 0x6C and n >= 5:
            # wrong Le: resend with the exact length (case 2: Le at 4, case 4: last byte)
            apdu[n - 1 if n > 5 else 4] = sw & 0xFF
            r = self._transmit(bytes(memoryview(apdu)[:n]))
            sw = (r[-2] << 8) | r[-1] if len(r) >= 2 else 0
        if len(r) < 2:
            raise ReaderError(ReaderError.CARD_ERROR)
        data = r[:-2]
        while sw >> 8 == 0x61:
            r = self._transmit(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
            if len(r) < 2:
                raise ReaderError(ReaderError.CARD_ERROR)
            data += r[:-2]
            sw = (r[-2] << 8) | r[-1]
        return data, sw

    def _cmd(self, cla, ins, p1, p2, data=None, le=True):
        a = self._apdu
        a[0], a[1], a[2], a[3] = cla, ins, p1, p2
        n = 4
        if data is not None:
            a[4] = len(data)
            a[5 : 5 + len(data)] = data
            n = 5 + len(data)
        if le:
            a[n] = 0
            n += 1
        return self._send(n)

    def _expect_ok(self, r):
        if r[1] != 0x9000:
            raise ReaderError(ReaderError.CARD_ERROR, r[1])
        return r[0]

    # -- steps ---------------------------------------------------------------------------
    def _select(self, name):
        return self._cmd(0x00, 0xA4, 0x04, 0x00, name)

    def _select_app(self):
        candidates = []
        data, sw = self._select(_PSE)
        if sw == 0x9000:
            sfi = tlv.find(data, 0x88)
            sfi = sfi[0] if sfi is not None and len(sfi) == 1 else 1
            for rec in range(1, 16):
                rdata, rsw = self._cmd(0x00, 0xB2, rec, (sfi << 3) | 4)
                if rsw != 0x9000:
                    break
                self._collect_aids(rdata, candidates)
        if not candidates:
            candidates = list(_KNOWN_AIDS)
        for aid in _KNOWN_AIDS:  # our preference order, among what the card lists
            if aid in candidates:
                data, sw = self._select(aid)
                if sw == 0x9000:
                    return aid, data
        raise ReaderError(ReaderError.NO_APPLICATION)

    @staticmethod
    def _collect_aids(rec, out):
        mv = memoryview(rec)
        body = tlv.find(mv, 0x70, recurse=False)
        if body is None:
            return
        pos = 0
        while pos < len(body):
            t, vs, vn, pos = tlv.read(body, pos, len(body))
            if t == 0x61:
                aid = tlv.find(body, 0x4F, vs, vs + vn)
                if aid is not None:
                    out.append(bytes(aid))

    def _gpo(self, fci):
        pdol = tlv.find(fci, 0x9F38)
        data = bytearray(b"\x83\x00")
        if pdol is not None:
            filled = self._fill_dol(pdol, None)
            data = bytearray(2) + filled
            data[1] = len(filled)
        r = self._expect_ok(self._cmd(0x80, 0xA8, 0x00, 0x00, data))
        mv = memoryview(r)
        if len(r) >= 2 and r[0] == 0x80:
            t, vs, vn, _ = tlv.read(mv, 0, len(r))
            if vn < 2 or (vn - 2) % 4:
                raise ReaderError(ReaderError.CARD_ERROR)
            return bytes(mv[vs + 2 : vs + vn])
        afl = tlv.find(mv, 0x94)
        if afl is None or len(afl) % 4:
            raise ReaderError(ReaderError.CARD_ERROR)
        return bytes(afl)

    def _read_records(self, afl):
        recs = {}
        for i in range(0, len(afl), 4):
            sfi = afl[i] >> 3
            for rec in range(afl[i + 1], afl[i + 2] + 1):
                data = self._expect_ok(self._cmd(0x00, 0xB2, rec, (sfi << 3) | 4))
                body = tlv.find(data, 0x70, recurse=False)
                if body is None:
                    raise ReaderError(ReaderError.CARD_ERROR)
                for tag in (0x8C, 0x8D, 0x9F55, 0x9F56, 0x5F34, 0x5A):
                    v = tlv.find(body, tag)
                    if v is not None and tag not in recs:
                        recs[tag] = bytes(v)
        return recs

    def _get_data(self, tag):
        data, sw = self._cmd(0x80, 0xCA, tag >> 8, tag & 0xFF)
        if sw != 0x9000:
            return None
        return tlv.find(data, tag)

    def _fill_dol(self, dol, un, amount=None, date=b"\x00\x00\x00", arc=False):
        out = bytearray()
        for tag, ln in tlv.dol_items(dol):
            v = None
            if tag == 0x9F37:
                v = un
            elif tag == 0x9F02:
                v = amount
            elif tag == 0x95:
                v = _TVR
            elif tag == 0x9A:
                v = date
            elif tag == 0x9F35:
                v = b"\x34"  # cardholder-operated, online only
            elif tag == 0x9F34:
                v = _CVM_RESULTS
            elif tag == 0x8A:
                v = _ARC_Z3
            elif tag not in (0x9F03, 0x9F1A, 0x5F2A, 0x9C, 0x9F45, 0x9F4C, 0x91, 0x9F33):
                raise ReaderError(ReaderError.NOT_SUPPORTED)  # never zero-fill an unknown tag
            if v is None:
                out.extend(bytes(ln))
            elif len(v) == ln:
                out.extend(v)
            else:
                raise ReaderError(ReaderError.NOT_SUPPORTED)
        return out

    def code(self, mode, pin, challenge=None, amount=None, fields=None):
        """Run one CAP transaction -> the code (int). `pin` is a bytearray of digits that the
        caller wipes; the PIN block built from it is wiped here. Raises ValueError for bad
        input, ReaderError (WrongPin, PinBlocked) for what the card says."""
        self._check_input(mode, pin, challenge, amount, fields)
        try:
            return self._code(mode, pin, challenge, amount, fields)
        except tlv.TlvError:
            raise ReaderError(ReaderError.CARD_ERROR)

    @staticmethod
    def _check_input(mode, pin, challenge, amount, fields):
        blk = bytearray(8)
        try:
            pin_block(pin, blk)  # validates length and digits
        finally:
            for i in range(8):
                blk[i] = 0
        if mode in (MODE_RESPOND, MODE_SIGN):
            bcd_right(challenge or "", 4)
        if mode == MODE_SIGN:
            bcd_right(amount or "", 6)
        if mode == MODE_TDS:
            tds_block(fields or ())

    def _code(self, mode, pin, challenge, amount, fields):
        un = bytes(4)
        amt = None
        if mode in (MODE_RESPOND, MODE_SIGN):
            if not challenge:
                raise ValueError("challenge")
            un = bcd_right(challenge, 4)
        if mode == MODE_SIGN:
            if not amount:
                raise ValueError("amount")
            amt = bcd_right(amount, 6)
        if mode == MODE_TDS:
            tds = tds_block(fields or ())
        elif mode not in (MODE_IDENTIFY, MODE_RESPOND, MODE_SIGN):
            raise ValueError("mode")
        aid, fci = self._select_app()
        date = _READER_DATE.get(aid, b"\x00\x00\x00")
        afl = self._gpo(fci)
        recs = self._read_records(afl)
        cdol1 = recs.get(0x8C)
        cdol2 = recs.get(0x8D)
        ipb = recs.get(0x9F56)
        if cdol1 is None or cdol2 is None or ipb is None:
            raise ReaderError(ReaderError.NOT_SUPPORTED)
        t = self._get_data(0x9F17)
        if t is not None and len(t) == 1 and t[0] == 0:
            raise PinBlocked()
        self._verify(pin)
        # both GENERATE AC data built first, so nothing can stop the closing AAC
        d1 = self._fill_dol(cdol1, un, amt, date)
        d2 = self._fill_dol(cdol2, un, amt, date)
        data1, sw1 = self._cmd(0x80, 0xAE, 0x80, 0x00, d1)
        if sw1 != 0x9000:
            raise ReaderError(ReaderError.CARD_ERROR, sw1)
        try:
            cid, atc, ac, iad = self._parse_ac(data1)
        except (ReaderError, ValueError):
            cid = -1
        if cid < 0 or cid & 0xC0 == 0x80:
            # close the transaction: AAC with ARC "Z3"; its answer does not change the code
            self._cmd(0x80, 0xAE, 0x00, 0x00, d2)
        if cid < 0:
            raise ReaderError(ReaderError.CARD_ERROR)
        if cid & 0xC0 != 0x80:
            raise ReaderError(ReaderError.DECLINED)
        if mode == MODE_TDS:
            ac = mac_alg1(ac, tds, PAD2)
        iaf = recs.get(0x9F55, b"\x00")
        psn = recs.get(0x5F34, b"\x00")
        data = bytearray()
        if iaf and iaf[0] & 0x40:
            data.extend(psn[:1])
        data.append(cid)
        data.extend(atc)
        data.extend(ac)
        data.extend(iad)
        return extract(ipb, data)

    def _verify(self, pin):
        a = self._apdu
        a[0], a[1], a[2], a[3], a[4] = 0x00, 0x20, 0x00, 0x80, 8
        try:
            pin_block(pin, memoryview(a)[5:13])
            data, sw = self._send(13)  # case 3: no Le
        finally:
            for i in range(5, 13):
                a[i] = 0
        if sw == 0x9000:
            return
        if sw >> 4 == 0x63C:
            if sw & 15 == 0:
                raise PinBlocked()
            raise WrongPin(sw & 15)
        if sw in (0x6983, 0x6984):
            raise PinBlocked()
        raise ReaderError(ReaderError.CARD_ERROR, sw)

    @staticmethod
    def _parse_ac(r):
        mv = memoryview(r)
        if len(r) < 2:
            raise ReaderError(ReaderError.CARD_ERROR)
        t, vs, vn, _ = tlv.read(mv, 0, len(r))
        if t == 0x80:
            if vn < 11:
                raise ReaderError(ReaderError.CARD_ERROR)
            v = mv[vs : vs + vn]
            return v[0], bytes(v[1:3]), bytes(v[3:11]), bytes(v[11:])
        if t != 0x77:
            raise ReaderError(ReaderError.CARD_ERROR)
        cid = tlv.find(mv, 0x9F27)
        atc = tlv.find(mv, 0x9F36)
        ac = tlv.find(mv, 0x9F26)
        iad = tlv.find(mv, 0x9F10)
        if cid is None or atc is None or ac is None or len(cid) != 1 or len(atc) != 2 or len(ac) != 8:
            raise ReaderError(ReaderError.CARD_ERROR)
        return cid[0], bytes(atc), bytes(ac), bytes(iad) if iad is not None else b""
