"""The CAP profile catalogue (docs/cap.md §2, §5.1): what the issuer and the verifier must know
about a family of cards and their reader. Declared once here; the issuer personalises cards of
these profiles, the verifier checks their codes, and ``firmware/catalog.py`` (generated from this
module by ``make catalog``) gives the soft card and the reader the same constants.

To add a profile: declare a :class:`CapProfile` below, add it to :data:`PROFILES`, run
``make catalog``, and add its published or independently computed vectors to ``docs/vectors/``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import hazmat as emv
from .hazmat import Cvn, Ipb, KeyDerivation

__all__ = ["CapProfile", "VISA_DPA_CVN10", "MC_CAP_CVN16", "PROFILES", "profile_by_id", "amount_bytes"]

# EMV minimum data set tags with their lengths, in MAC order; 82 and 9F36 come from the card.
_MIN_SET = ((0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1), (0x9F37, 4))
_READER_FILLED = frozenset((0x9F02, 0x9F37))
#: Default look-ahead (ATC values above the floor a code may be at), rules.md.
_ATC_WINDOW = 32
#: Fewest cryptogram bits a profile's IPB may select (the real IPBs select 16-20).
_MIN_AC_BITS = 16
#: Largest amount (minor units) that fits 9F02.
AMOUNT_MAX = 999_999_999_999


@dataclass(frozen=True)
class CapProfile:
    """What the verifier must know about a family of cards and their reader (docs/cap.md §5.1).

    `reader` gives the constant value the reader puts in every CDOL1 field except 9F02 (amount)
    and 9F37 (UN). `iad_candidates` are the IADs the card may return in its first GENERATE AC
    (they differ only by CVR flags such as "PIN try counter" or "last transaction not
    completed"); each is tried.
    """

    name: str
    profile_id: int
    aid: bytes
    cvn: Cvn
    derivation: KeyDerivation
    gpo_format: int
    aip: bytes
    cdol1: tuple[tuple[int, int], ...]
    reader: tuple[tuple[int, bytes], ...]
    iaf: int
    ipb: bytes
    iad_candidates: tuple[bytes, ...]
    window: int = _ATC_WINDOW
    digits: int = 8
    iad_ptc_offset: int | None = None
    #: Application label (tag 50) the card answers SELECT with; what a reader displays.
    label: bytes = b""
    _ipb: Ipb = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty str")
        if not isinstance(self.profile_id, int) or not 1 <= self.profile_id <= 255:
            raise ValueError("profile_id must be 1-255")
        aid = emv.check_bytes("aid", self.aid)
        if not 5 <= len(aid) <= 16:
            raise ValueError("aid must be 5-16 bytes")
        object.__setattr__(self, "cvn", Cvn.of(self.cvn))
        if not isinstance(self.derivation, KeyDerivation):
            raise TypeError("derivation must be a KeyDerivation")
        if self.gpo_format not in (1, 2):
            raise ValueError("gpo_format must be 1 or 2")
        emv.check_bytes("aip", self.aip, 2)
        cdol = tuple(self.cdol1)
        tags = [t for t, _ in cdol]
        if len(set(tags)) != len(tags):
            raise ValueError("CDOL1 repeats a tag")
        for tag, length in _MIN_SET:
            if (tag, length) not in cdol:
                raise ValueError(f"CDOL1 lacks {tag:X} with length {length}")
        reader = dict(self.reader)
        if len(reader) != len(self.reader) or set(reader) != set(tags) - _READER_FILLED:
            raise ValueError("reader must give exactly the CDOL1 fields other than 9F02 and 9F37")
        for tag, length in cdol:
            if tag in reader and len(emv.check_bytes(f"reader {tag:X}", reader[tag])) != length:
                raise ValueError(f"reader value of {tag:X} must be {length} bytes")
        if not isinstance(self.iaf, int) or not 0 <= self.iaf <= 255:
            raise ValueError("iaf must be a byte value")
        if not isinstance(self.digits, int) or not 6 <= self.digits <= 12:
            raise ValueError("digits must be 6-12")
        ipb = Ipb(self.ipb)
        if 1 << ipb.bits > 10**self.digits:
            raise ValueError("the IPB selects more bits than the displayed digits can carry")
        cands = tuple(self.iad_candidates)
        if not cands:
            raise ValueError("at least one IAD candidate is needed")
        rule = emv.cvn_rule(self.cvn)
        cvn_at = 2 if rule.iad_layout == "vis" else 1
        for iad in cands:
            emv.iad_mac_data(rule, emv.check_bytes("iad candidate", iad))
            if iad[cvn_at] != self.cvn:
                raise ValueError("an IAD candidate carries another CVN")
        if self.iad_ptc_offset is not None:
            off = self.iad_ptc_offset
            if not isinstance(off, int) or isinstance(off, bool) or not all(0 <= off < len(i) and not i[off] & 0x0F for i in cands):
                raise ValueError("iad_ptc_offset must name a byte whose low nibble is 0 in every candidate")
        if len(ipb) > self._prefix_len + 11 + min(len(i) for i in cands):
            raise ValueError("the IPB is longer than the OTP data")
        if len(ipb) < self._prefix_len + 11:
            raise ValueError("the IPB must cover CID, ATC and AC")
        ac_bits = bin(ipb.mask >> self._shift(3 + self._prefix_len, 8) & (1 << 64) - 1).count("1")
        if ac_bits < _MIN_AC_BITS:
            raise ValueError(f"the IPB selects fewer than {_MIN_AC_BITS} cryptogram bits")
        k = bin(self.atc_mask).count("1")
        if not isinstance(self.window, int) or not 1 <= self.window <= min(1 << k, 1024):
            raise ValueError(f"window must be 1..2^k = {1 << k} (k = ATC bits in the code)")
        object.__setattr__(self, "aid", aid)
        object.__setattr__(self, "cdol1", cdol)
        object.__setattr__(self, "reader", tuple(self.reader))
        object.__setattr__(self, "iad_candidates", tuple(bytes(i) for i in cands))
        object.__setattr__(self, "_ipb", ipb)

    # -- derived layout

    @property
    def psn_prefix(self) -> bool:
        """IAF bit 7: the PSN byte is prefixed to the data the IPB masks."""
        return bool(self.iaf & 0x40)

    @property
    def _prefix_len(self) -> int:
        return 1 if self.psn_prefix else 0

    def _shift(self, offset: int, length: int) -> int:
        """Left shift of a field at byte `offset` (`length` bytes) in the IPB-aligned data int."""
        return 8 * (len(self.ipb) - offset - length)

    @functools.cached_property
    def atc_mask(self) -> int:
        """Which ATC bits the code carries."""
        return self.ipb_int >> self._shift(self._prefix_len + 1, 2) & 0xFFFF

    @functools.cached_property
    def _atc_shift(self) -> int:
        return self._shift(self._prefix_len + 1, 2)

    @functools.cached_property
    def _known_mask(self) -> int:
        """IPB bits outside the AC (PSN, CID, ATC, IAD): checkable before any cryptography."""
        return self._ipb.mask & ~(((1 << 64) - 1) << self._shift(self._prefix_len + 3, 8))

    @property
    def ipb_int(self) -> int:
        return int.from_bytes(self.ipb, "big")

    @property
    def otp_bits(self) -> int:
        return self._ipb.bits

    def iads_for(self, pin_try_limit: int) -> tuple[bytes, ...]:
        """The IAD candidates of a card with this PIN try limit."""
        cache = self._iad_cache
        got = cache.get(pin_try_limit)
        if got is None:
            off = self.iad_ptc_offset
            if off is None:
                got = self.iad_candidates
            else:
                got = tuple(i[:off] + bytes((i[off] | pin_try_limit,)) + i[off + 1 :] for i in self.iad_candidates)
            cache[pin_try_limit] = got
        return got

    @functools.cached_property
    def _iad_cache(self) -> dict[int, tuple[bytes, ...]]:
        return {}

    @functools.cached_property
    def _reader_values(self) -> dict[int, bytes]:
        return dict(self.reader)

    def cdol1_data(self, *, un: bytes, amount: int = 0) -> bytes:
        """The CDOL1 data a reader of this profile sends in the first GENERATE AC."""
        values = dict(self._reader_values)
        values[0x9F37] = emv.check_bytes("un", un, 4)
        values[0x9F02] = amount_bytes(amount)
        return b"".join(values[tag] for tag, _ in self.cdol1)

    def _minimum_head(self, un: bytes, amount: bytes) -> bytes:
        r = self._reader_values
        return (
            amount
            + r[0x9F03]
            + r[0x9F1A]
            + r[0x95]
            + r[0x5F2A]
            + r[0x9A]
            + r[0x9C]
            + un
            + self.aip
        )


def amount_bytes(amount: int) -> bytes:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= AMOUNT_MAX:
        raise ValueError("amount must be an int 0..999999999999 (minor units)")
    return emv.pack_bcd(str(amount), 6)


_CDOL1_29 = ((0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1), (0x9F37, 4))
_CDOL1_43 = _CDOL1_29 + ((0x9F35, 1), (0x9F45, 2), (0x9F4C, 8), (0x9F34, 3))

#: Visa DPA style card (docs/cap.md §2.1), Barclays-like reader and IPB.
VISA_DPA_CVN10 = CapProfile(
    name="visa-dpa-cvn10",
    profile_id=1,
    aid=bytes.fromhex("A0000000038002"),
    label=b"VisaRemAuthen",
    cvn=Cvn.VISA_10,
    derivation=KeyDerivation.OPTION_A,
    gpo_format=1,
    aip=bytes.fromhex("1000"),
    cdol1=_CDOL1_29,
    reader=(
        (0x9F03, bytes(6)),
        (0x9F1A, bytes(2)),
        (0x95, bytes.fromhex("8000000000")),
        (0x5F2A, bytes(2)),
        (0x9A, bytes.fromhex("010101")),
        (0x9C, bytes(1)),
    ),
    iaf=0xA0,
    ipb=bytes.fromhex("8000FF000000000001FFFF00000000000000"),
    # IAD = 06 | DKI 01 | CVN 0A | CVR 03 b2 b3 b4 (docs/cap.md §2.3, firmware/applets/emv_card.py):
    # b2 A4 = 2nd GAC not requested, 1st GAC ARQC, offline PIN performed (and not failed);
    # b3 10 = no online transaction ever completed, | 80 "last online transaction not completed"
    # once the card has given any ARQC (sticky: a CAP card is never completed online).
    iad_candidates=(
        bytes.fromhex("06010A03A49000"),
        bytes.fromhex("06010A03A41000"),
    ),
)

#: MasterCard CAP style card (M/Chip 4 CVN 16, PSN prefix), Rabobank-like IPB.
MC_CAP_CVN16 = CapProfile(
    name="mc-cap-cvn16",
    profile_id=2,
    aid=bytes.fromhex("A0000000048002"),
    label=b"SecureCode Aut",
    cvn=Cvn.MCHIP_16,
    derivation=KeyDerivation.OPTION_A,
    gpo_format=2,
    aip=bytes.fromhex("1000"),
    cdol1=_CDOL1_43,
    reader=(
        (0x9F03, bytes(6)),
        (0x9F1A, bytes(2)),
        (0x95, bytes.fromhex("8000000000")),
        (0x5F2A, bytes(2)),
        (0x9A, bytes(3)),
        (0x9C, bytes(1)),
        (0x9F35, bytes.fromhex("34")),
        (0x9F45, bytes(2)),
        (0x9F4C, bytes(8)),
        (0x9F34, bytes.fromhex("010002")),
    ),
    iaf=0xC0,
    ipb=bytes.fromhex("0700007FFFFF000000000000") + bytes(18),
    # IAD = KDI 00 | CVN 10 | CVR(6) | DAC 0000 | counters 00000000000000FF (firmware applet).
    # CVR: A5 = 2nd GAC not requested, 1st GAC ARQC, offline PIN performed and successful;
    # byte 3 low nibble = PIN try counter (= the card's try limit after a successful VERIFY,
    # patched in from CapCard.pin_try_limit); byte 4 02 domestic, | 80 "last online transaction
    # not completed" when the previous session's ARQC was never closed by the second GENERATE AC.
    iad_candidates=(
        bytes.fromhex("0010A50000020000" "0000" "00000000000000FF"),
        bytes.fromhex("0010A50000820000" "0000" "00000000000000FF"),
    ),
    iad_ptc_offset=4,
)

PROFILES: dict[str, CapProfile] = {p.name: p for p in (VISA_DPA_CVN10, MC_CAP_CVN16)}


def profile_by_id(profile_id: int) -> CapProfile:
    for p in PROFILES.values():
        if p.profile_id == profile_id:
            return p
    raise KeyError(f"unknown CAP profile id {profile_id}")
