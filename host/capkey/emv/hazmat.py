"""EMV cryptography for CAP: 3DES, ISO/IEC 9797-1 MACs, ICC key derivation, session keys,
application cryptograms per CVN, CAP OTP extraction (IPB) and the Mode 2 + TDS MAC.

Hazardous materials: nothing here decides what to accept. Use :mod:`capkey.emv.verifier` to
check codes and :mod:`capkey.emv.issuer` to handle issuer keys; this module is their engine.

References (docs/cap.md §2, §4; the brief's cap.md §4, §7): EMV 4.3 Book 2 A1.2 (MAC), A1.4 (ICC master key
Option A/B), A1.3 (common session key); the MasterCard proprietary session key (M/Chip 4);
ISO/IEC 9797-1 MAC algorithms 1 and 3, padding methods 1 and 2.

Block ciphers come from ``cryptography`` (TripleDES always with a 24-byte key: single DES is
``K‖K‖K``, double-length 3DES is ``K1‖K2‖K1``). :class:`TdesKey` keeps its OpenSSL contexts so that
a verifier does not pay the context set-up per block; an instance must not be used by two
threads at once.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import Error
from . import tlv
from .checks import check_bytes, check_digits, check_psn, pack_bcd, pack_bcd_f
from .tdes import (
    TdesKey,
    _padded,
    adjust_parity,
    des_ecb_encrypt,
    kcv,
    mac_iso9797_1,
    mac_iso9797_3,
    pad,
    pad_method_1,
    pad_method_2,
    tdes_ecb_decrypt,
    tdes_ecb_encrypt,
)

__all__ = [
    "check_bytes",
    "check_digits",
    "check_psn",
    "Cvn",
    "CvnRule",
    "SessionKey",
    "KeyDerivation",
    "TdesKey",
    "CardKey",
    "Ipb",
    "GenerateAcResponse",
    "UnsupportedCvn",
    "adjust_parity",
    "pad",
    "pad_method_1",
    "pad_method_2",
    "des_ecb_encrypt",
    "tdes_ecb_encrypt",
    "tdes_ecb_decrypt",
    "kcv",
    "mac_iso9797_1",
    "mac_iso9797_3",
    "derive_icc_mk_a",
    "derive_icc_mk_b",
    "derive_icc_mk",
    "icc_mk_y",
    "derive_session_key",
    "csk_diversifier",
    "mastercard_diversifier",
    "minimum_data",
    "ac_mac_input",
    "generate_ac",
    "otp_data",
    "extract_otp",
    "tds_block",
    "tds_mac",
    "pin_block_format2",
    "pack_bcd",
    "pack_bcd_f",
]


# ---------------------------------------------------------------------------------------------
# ICC master key (UDK) and session keys


class KeyDerivation(enum.Enum):
    OPTION_A = "A"
    OPTION_B = "B"


def _udk_from_y(imk: bytes, y: bytes) -> bytes:
    imk = check_bytes("imk", imk, 16)
    return adjust_parity(tdes_ecb_encrypt(imk, _y_blocks(y)))


def _y_blocks(y: bytes) -> bytes:
    """Y ‖ (Y XOR FF…FF): the two blocks whose encryption under the IMK is the UDK."""
    return y + (int.from_bytes(y, "big") ^ 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")


def _check_pan(pan: str) -> str:
    return check_digits("pan", pan, 12, 19)


def icc_mk_y(pan: str, psn: int, option: KeyDerivation) -> bytes:
    """The 8-byte Y an ICC master key is derived from (EMV Book 2 A1.4.1): Option A, the
    rightmost 16 digits of PAN‖PSN, zero-filled on the left; Option B (identical to A up to
    16 PAN digits) SHA-1 over PAN‖PSN in BCD, decimalised (digits first, then a-f as 0-5)."""
    if not isinstance(option, KeyDerivation):
        raise TypeError("option must be a KeyDerivation")
    pan = _check_pan(pan)
    s = pan + f"{check_psn(psn):02d}"
    if len(pan) <= 16 or option is KeyDerivation.OPTION_A:
        return bytes.fromhex(s[-16:].zfill(16))
    digest = hashlib.sha1(bytes.fromhex(s.zfill(len(s) + len(s) % 2))).hexdigest()
    digits = [c for c in digest if c.isdigit()][:16]
    if len(digits) < 16:
        letters = [str("abcdef".index(c)) for c in digest if c in "abcdef"]
        digits += letters[: 16 - len(digits)]
    return bytes.fromhex("".join(digits))


def derive_icc_mk_a(imk: bytes, pan: str, psn: int) -> bytes:
    """EMV Option A: Y = rightmost 16 digits of PAN‖PSN (zero-filled on the left)."""
    return _udk_from_y(imk, icc_mk_y(pan, psn, KeyDerivation.OPTION_A))


def derive_icc_mk_b(imk: bytes, pan: str, psn: int) -> bytes:
    """EMV Option B (for PANs longer than 16 digits; identical to A up to 16 digits): SHA-1
    over PAN‖PSN in BCD, decimalised (digits first, then a-f as 0-5) to 16 digits."""
    return _udk_from_y(imk, icc_mk_y(pan, psn, KeyDerivation.OPTION_B))


def derive_icc_mk(imk: bytes, pan: str, psn: int, option: KeyDerivation) -> bytes:
    return _udk_from_y(imk, icc_mk_y(pan, psn, option))


def _session_from(enc, r: bytes) -> bytes:
    left = r[:2] + b"\xf0" + r[3:]
    right = r[:2] + b"\x0f" + r[3:]
    return adjust_parity(enc(left + right))


def derive_session_key(udk: bytes, r: bytes) -> bytes:
    """EMV session key from diversifier R: 3DES(UDK)[R, byte 3 := F0] ‖ 3DES(UDK)[R, byte 3 :=
    0F], parity-adjusted. R comes from :func:`csk_diversifier` or :func:`mastercard_diversifier`."""
    r = check_bytes("r", r, 8)
    return _session_from(TdesKey(udk).encrypt, r)


def csk_diversifier(atc: bytes) -> bytes:
    """EMV Common Session Key: R = ATC ‖ 00…00."""
    return check_bytes("atc", atc, 2) + bytes(6)


def mastercard_diversifier(atc: bytes, un: bytes) -> bytes:
    """MasterCard proprietary SKD (M/Chip CVN 16/17): R = ATC ‖ 0000 ‖ UN."""
    return check_bytes("atc", atc, 2) + bytes(2) + check_bytes("un", un, 4)


# ---------------------------------------------------------------------------------------------
# Application cryptogram per CVN


class UnsupportedCvn(Error, ValueError):
    """The cryptogram version number is not one this module implements."""


@enum.unique
class Cvn(enum.IntEnum):
    VISA_10 = 0x0A
    VISA_18 = 0x12
    VISA_22 = 0x16
    MCHIP_16 = 0x10
    MCHIP_17 = 0x11
    MCHIP_20 = 0x14
    MCHIP_21 = 0x15

    @classmethod
    def of(cls, value: object) -> Cvn:
        """`value` as a Cvn, or UnsupportedCvn (never a silent default)."""
        if type(value) is cls:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnsupportedCvn("CVN must be an int")
        try:
            return cls(value)
        except ValueError:
            raise UnsupportedCvn(f"unsupported CVN {value:#x}") from None


class SessionKey(enum.Enum):
    NONE = "none"
    COMMON = "csk"
    MASTERCARD = "mastercard"


@dataclass(frozen=True)
class CvnRule:
    """How a CVN builds its cryptogram (docs/cap.md §4)."""

    derivation: KeyDerivation
    session_key: SessionKey
    append: str  # "cvr4" (VIS CVR with its length byte) | "iad" | "cvr6" | "cvr6+counters"
    padding: int
    iad_layout: str  # "vis" | "mchip"


CVN_RULES: dict[Cvn, CvnRule] = {
    Cvn.VISA_10: CvnRule(KeyDerivation.OPTION_A, SessionKey.NONE, "cvr4", 1, "vis"),
    Cvn.VISA_18: CvnRule(KeyDerivation.OPTION_B, SessionKey.COMMON, "iad", 2, "vis"),
    Cvn.VISA_22: CvnRule(KeyDerivation.OPTION_B, SessionKey.COMMON, "iad", 2, "vis"),
    Cvn.MCHIP_16: CvnRule(KeyDerivation.OPTION_A, SessionKey.MASTERCARD, "cvr6", 2, "mchip"),
    Cvn.MCHIP_17: CvnRule(KeyDerivation.OPTION_A, SessionKey.MASTERCARD, "cvr6+counters", 2, "mchip"),
    Cvn.MCHIP_20: CvnRule(KeyDerivation.OPTION_A, SessionKey.COMMON, "cvr6", 2, "mchip"),
    Cvn.MCHIP_21: CvnRule(KeyDerivation.OPTION_A, SessionKey.COMMON, "cvr6+counters", 2, "mchip"),
}


def cvn_rule(cvn: object) -> CvnRule:
    return CVN_RULES[Cvn.of(cvn)]


# Offsets in the 33-byte EMV minimum data set.
_UN = slice(25, 29)
_ATC = slice(31, 33)
MINIMUM_DATA_LEN = 33


def minimum_data(
    *,
    amount_authorised: bytes,
    amount_other: bytes,
    country: bytes,
    tvr: bytes,
    currency: bytes,
    date: bytes,
    txn_type: bytes,
    un: bytes,
    aip: bytes,
    atc: bytes,
) -> bytes:
    """9F02 ‖ 9F03 ‖ 9F1A ‖ 95 ‖ 5F2A ‖ 9A ‖ 9C ‖ 9F37 ‖ 82 ‖ 9F36 (33 bytes), checked."""
    return b"".join(
        (
            check_bytes("amount_authorised", amount_authorised, 6),
            check_bytes("amount_other", amount_other, 6),
            check_bytes("country", country, 2),
            check_bytes("tvr", tvr, 5),
            check_bytes("currency", currency, 2),
            check_bytes("date", date, 3),
            check_bytes("txn_type", txn_type, 1),
            check_bytes("un", un, 4),
            check_bytes("aip", aip, 2),
            check_bytes("atc", atc, 2),
        )
    )


def iad_mac_data(rule: CvnRule, iad: bytes) -> bytes:
    if rule.iad_layout == "vis":
        # 06 | DKI | CVN | CVR (03 b2 b3 b4) [| optional issuer discretionary data]
        if len(iad) < 7 or iad[0] < 6 or iad[3] != 0x03:
            raise ValueError("IAD is not a VIS layout")
        return iad[3:7] if rule.append == "cvr4" else iad
    # M/Chip 4: KDI | CVN | CVR(6) | DAC/IDN(2) | counters(8)
    if len(iad) != 18:
        raise ValueError("IAD is not an 18-byte M/Chip layout")
    if rule.append == "cvr6":
        return iad[2:8]
    return iad[2:8] + iad[10:18]


def ac_mac_input(cvn: object, minimum: bytes, iad: bytes) -> bytes:
    """The unpadded MAC input of `cvn`: the minimum data set plus the CVN's IAD part."""
    rule = cvn_rule(cvn)
    minimum = check_bytes("minimum", minimum, MINIMUM_DATA_LEN)
    return minimum + iad_mac_data(rule, check_bytes("iad", iad))


#: (CVN, IAD) -> what follows the minimum data set in the MAC input, padded: checked and built
#: once per IAD variant (a verifier uses a handful per profile), not once per cryptogram; bounded.
_MAC_TAILS: dict[tuple[Cvn, bytes], bytes] = {}
_MAC_TAILS_KEPT = 256
# Enum members are looked up through their metaclass (≈ 60 ns each on CPython 3.11): the
# per-cryptogram path compares with these instead.
_SK_NONE, _SK_COMMON = SessionKey.NONE, SessionKey.COMMON


class CardKey:
    """A card's ICC master key (UDK) with its cipher contexts: computes cryptograms for any CVN.

    The session key of the last (ATC, UN) is kept: a verifier tries several IAD variants and
    reader families at one ATC and UN, and the session key's two cipher contexts cost more
    than the MACs. Not thread-safe (see :class:`TdesKey`)."""

    __slots__ = ("_udk", "_last_r", "_last_sk")

    def __init__(self, udk: bytes):
        self._set(TdesKey(check_bytes("udk", udk, 16)))

    @classmethod
    def from_imk(cls, imk: TdesKey, pan: str, psn: int, option: KeyDerivation) -> CardKey:
        """The card key of PAN/PSN under `imk`, derived through the IMK's own long-lived context
        (an issuer backend keeps one per IMK) rather than a new context per card."""
        self = cls.__new__(cls)
        self._set(imk.derive(_y_blocks(icc_mk_y(pan, psn, option))))
        return self

    def _set(self, udk: TdesKey) -> None:
        self._udk = udk
        self._last_r = b""  # no diversifier is empty: the first session key is derived
        self._last_sk = udk

    def session_key(self, rule: CvnRule, atc: bytes, un: bytes) -> TdesKey:
        kind = rule.session_key
        if kind is _SK_NONE:
            return self._udk
        common = kind is _SK_COMMON
        r = atc if common else atc + un  # what the diversifier depends on
        if r != self._last_r:
            # R with byte 3 set to F0 (left half) and 0F (right half), both through 3DES at once.
            if common:
                blocks = atc + b"\xf0" + bytes(5) + atc + b"\x0f" + bytes(5)
            else:
                blocks = atc + b"\xf0\x00" + un + atc + b"\x0f\x00" + un
            self._last_sk = self._udk.derive(blocks)
            self._last_r = r
        return self._last_sk

    def generate_ac(self, cvn: object, minimum: bytes, iad: bytes) -> bytes:
        minimum = check_bytes("minimum", minimum, MINIMUM_DATA_LEN)
        iad = check_bytes("iad", iad)
        if type(cvn) is not Cvn:
            cvn = Cvn.of(cvn)
        rule = CVN_RULES[cvn]
        tail = _MAC_TAILS.get((cvn, iad))
        if tail is None:
            tail = _padded(minimum + iad_mac_data(rule, iad), rule.padding)[MINIMUM_DATA_LEN:]
            if len(_MAC_TAILS) < _MAC_TAILS_KEPT:
                _MAC_TAILS[(cvn, iad)] = tail
        return self.session_key(rule, minimum[_ATC], minimum[_UN]).retail_mac(minimum + tail)


def generate_ac(udk: bytes, cvn: object, minimum: bytes, iad: bytes) -> bytes:
    """Application cryptogram (ARQC/AAC/TC) of a card with master key `udk` for `cvn`."""
    return CardKey(udk).generate_ac(cvn, minimum, iad)


# ---------------------------------------------------------------------------------------------
# GENERATE AC response and CAP OTP


class GenerateAcResponse(bytes):
    """The body of a GENERATE AC response (format 1 ``80`` or format 2 ``77``), parsed on
    construction; the object stays the exact bytes received."""

    cid: int
    atc: bytes
    ac: bytes
    iad: bytes

    def __init__(self, _data: bytes):
        super().__init__()
        data = bytes(self)
        try:
            objs = tlv.parse(data)
        except tlv.TlvError as exc:
            raise ValueError(f"malformed GENERATE AC response: {exc}") from None
        if len(objs) != 1:
            raise ValueError("GENERATE AC response must be one TLV object")
        tag, value = objs[0]
        if tag == 0x80:
            if len(value) < 11:
                raise ValueError("format 1 response too short")
            self.cid, self.atc, self.ac, self.iad = value[0], value[1:3], value[3:11], value[11:]
        elif tag == 0x77:
            inner = tlv.parse_dict(value)
            try:
                cid, atc, ac = inner[0x9F27], inner[0x9F36], inner[0x9F26]
            except KeyError:
                raise ValueError("format 2 response lacks 9F27/9F36/9F26") from None
            if len(cid) != 1 or len(atc) != 2 or len(ac) != 8:
                raise ValueError("format 2 response: bad element length")
            self.cid, self.atc, self.ac, self.iad = cid[0], atc, ac, inner.get(0x9F10, b"")
        else:
            raise ValueError("GENERATE AC response is neither format 1 nor format 2")

    def otp_data(self, psn: int | None = None) -> bytes:
        return otp_data(self.cid, self.atc, self.ac, self.iad, psn=psn)


def otp_data(cid: int, atc: bytes, ac: bytes, iad: bytes, *, psn: int | None = None) -> bytes:
    """[PSN byte if the IAF asks for it] ‖ CID ‖ ATC ‖ AC ‖ IAD (docs/cap.md §4.1)."""
    if not isinstance(cid, int) or not 0 <= cid <= 255:
        raise ValueError("cid must be a byte value")
    prefix = b"" if psn is None else bytes.fromhex(f"{check_psn(psn):02d}")
    return (
        prefix
        + bytes([cid])
        + check_bytes("atc", atc, 2)
        + check_bytes("ac", ac, 8)
        + check_bytes("iad", iad)
    )


class Ipb:
    """An Issuer Proprietary Bitmap: which data bits form the OTP (MSB first).

    ``extract(data)`` gathers the selected bits into an int; ``deposit(value)`` spreads an OTP's
    bits back to their positions (as an int aligned with the IPB), which lets a verifier compare
    ``data_int & mask == deposit(otp)`` per candidate without re-extracting.
    """

    __slots__ = ("raw", "bits", "mask", "_positions", "_nbytes", "_runs")

    def __init__(self, ipb: bytes):
        ipb = check_bytes("ipb", ipb)
        if not ipb or len(ipb) > 64:
            raise ValueError("IPB must be 1-64 bytes")
        self.raw = ipb
        self._nbytes = len(ipb)
        self.mask = int.from_bytes(ipb, "big")
        total = 8 * len(ipb)
        # Bit values, most significant selected bit first.
        self._positions = tuple(1 << (total - 1 - i) for i in range(total) if self.mask >> (total - 1 - i) & 1)
        self.bits = len(self._positions)
        if self.bits == 0:
            raise ValueError("IPB selects no bit")
        # Contiguous runs of selected bits, most significant first: (shift of the run's lowest
        # bit in the data int, number of value bits below the run, run length mask).
        runs = []
        below = self.bits
        i = total - 1
        while i >= 0:
            if self.mask >> i & 1:
                j = i
                while j - 1 >= 0 and self.mask >> (j - 1) & 1:
                    j -= 1
                length = i - j + 1
                below -= length
                runs.append((j, below, (1 << length) - 1))
                i = j - 1
            else:
                i -= 1
        self._runs = tuple(runs)

    def __len__(self) -> int:
        return self._nbytes

    def data_int(self, data: bytes) -> int:
        """`data` truncated to the IPB length, as an int (refuses data shorter than the IPB)."""
        if len(data) < self._nbytes:
            raise ValueError("IPB is longer than the data")
        return int.from_bytes(data[: self._nbytes], "big")

    def extract(self, data: bytes) -> int:
        d = self.data_int(check_bytes("data", data))
        value = 0
        for p in self._positions:
            value = (value << 1) | (1 if d & p else 0)
        return value

    def deposit(self, value: int) -> int:
        if not 0 <= value < 1 << self.bits:
            raise ValueError("value has more bits than the IPB selects")
        return self._spread(value)

    def _spread(self, value: int) -> int:
        """deposit() of a value already checked (the verifier checks the code once)."""
        out = 0
        for shift, below, run_mask in self._runs:
            out |= (value >> below & run_mask) << shift
        return out


def extract_otp(ipb: bytes, data: bytes) -> int:
    """The CAP OTP as an integer (docs/cap.md §4.1)."""
    return Ipb(ipb).extract(data)


# ---------------------------------------------------------------------------------------------
# Mode 2 + TDS (docs/cap.md §4.3)


def tds_block(fields: Sequence[str]) -> bytes:
    """Fields as digits with an F nibble between fields, one more F if odd (unpadded)."""
    if isinstance(fields, str) or not 1 <= len(fields) <= 10:
        raise ValueError("TDS needs 1-10 fields")
    nibbles = "F".join(check_digits("TDS field", f, 1, 10) for f in fields)
    if len(nibbles) % 2:
        nibbles += "F"
    return bytes.fromhex(nibbles)


def tds_mac(ac: bytes, fields: Sequence[str]) -> bytes:
    """Single-DES CBC-MAC (ISO 9797-1 alg. 1, padding 2) of the TDS block keyed with the AC."""
    return mac_iso9797_1(check_bytes("ac", ac, 8), tds_block(fields), 2)


# ---------------------------------------------------------------------------------------------
# PIN block


def pin_block_format2(pin: str | bytes | bytearray) -> bytes:
    """ISO 9564 format 2 (plaintext offline PIN for VERIFY): 2, length, digits, F fill."""
    if isinstance(pin, (bytes, bytearray)):
        digits = bytes(pin)
    elif isinstance(pin, str):
        digits = pin.encode("ascii", "strict") if pin.isascii() else b"x"
    else:
        raise TypeError("pin must be str or bytes of ASCII digits")
    if not 4 <= len(digits) <= 12 or not all(0x30 <= c <= 0x39 for c in digits):
        raise ValueError("PIN must be 4-12 decimal digits")
    s = f"2{len(digits):X}" + digits.decode() + "F" * (14 - len(digits))
    return bytes.fromhex(s)


def cap_otp(
    response: GenerateAcResponse, ipb: bytes, *, psn: int | None = None, tds: Sequence[str] | None = None
) -> int:
    """What a CAP reader displays for the first GENERATE AC `response` (docs/cap.md §4.1):
    the AC is first replaced by the TDS MAC when `tds` fields are given (§4.3); `psn` is the PAN
    sequence number when the card's IAF asks for the PSN prefix, else None."""
    if not isinstance(response, GenerateAcResponse):
        raise TypeError("response must be a GenerateAcResponse")
    ac = response.ac if tds is None else tds_mac(response.ac, tds)
    return extract_otp(ipb, otp_data(response.cid, response.atc, ac, response.iad, psn=psn))
