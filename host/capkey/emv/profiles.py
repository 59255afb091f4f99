"""The CAP profile catalogue (docs/cap.md §2, §5.1): what the issuer and the verifier must know
about a family of cards and their reader. Declared once here; the issuer personalises cards of
these profiles, the verifier checks their codes, and ``firmware/catalog.py`` (generated from this
module by ``make catalog``) gives the soft card and the reader the same constants.

To add a profile: declare a :class:`CapProfile` below, add it to :data:`PROFILES`, run
``make catalog``, and add its published or independently computed vectors to ``docs/vectors/``.

Reader families (:class:`ReaderFamily`, :data:`READER_FAMILIES`) are the sets of CDOL1 constants
that real readers differ by (the transaction date 9A, the TVR); a profile names the families
whose codes it accepts, its own reader first (docs/cap.md §2.4). Every family a profile accepts
multiplies the odds of a guessed code: add one only with a trace or a reader implementation
that shows it, and say which in its provenance.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from . import hazmat as emv
from .hazmat import Cvn, Ipb, KeyDerivation

__all__ = [
    "ReaderFamily",
    "READER_FAMILIES",
    "CapProfile",
    "VISA_DPA_CVN10",
    "MC_CAP_CVN16",
    "PROFILES",
    "profile_by_id",
    "amount_bytes",
]

# EMV minimum data set tags with their lengths, in MAC order; 82 and 9F36 come from the card.
_MIN_SET = ((0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1), (0x9F37, 4))
_READER_FILLED = frozenset((0x9F02, 0x9F37))
#: Default look-ahead (ATC values above the floor a code may be at), rules.md.
_ATC_WINDOW = 32
#: Fewest cryptogram bits a profile's IPB may select (the real IPBs select 16-20).
_MIN_AC_BITS = 16
#: Largest amount (minor units) that fits 9F02.
AMOUNT_MAX = 999_999_999_999
#: CDOL1 constants a reader family may set, with their EMV lengths (9F02 and 9F37 are the mode's).
_FAMILY_TAGS = {0x9F03: 6, 0x9F1A: 2, 0x95: 5, 0x5F2A: 2, 0x9A: 3, 0x9C: 1, 0x9F35: 1, 0x9F45: 2, 0x9F4C: 8, 0x9F34: 3}
#: The reader constants inside the cryptogram (the minimum set between 9F02 and 9F37).
_MACED_CONSTANTS = (0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C)
#: CID of an ARQC: the only cryptogram a code is accepted from (an AAC means no PIN).
_CID_ARQC = b"\x80"


@dataclass(frozen=True)
class ReaderFamily:
    """CAP readers that fill CDOL1 with the same constants (docs/cap.md §2.4).

    `overrides` gives the constants this family sets, by tag; a card profile's `reader` gives
    the rest. A family may name tags a card's CDOL1 does not ask for: a reader fills only what
    the card asks. `provenance` says in one line where the values were seen.
    """

    name: str
    overrides: tuple[tuple[int, bytes], ...]
    provenance: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9-]+", self.name):
            raise ValueError("a reader family name is lower-case ASCII letters, digits and '-'")
        pairs = tuple(self.overrides)
        if not pairs:
            raise ValueError("a reader family overrides at least one constant")
        tags = [tag for tag, _ in pairs]
        if len(set(tags)) != len(tags):
            raise ValueError("a reader family sets a tag twice")
        for tag, value in pairs:
            if tag not in _FAMILY_TAGS:
                raise ValueError(f"{tag:X} is not a reader constant a family may set")
            if len(emv.check_bytes(f"override {tag:X}", value)) != _FAMILY_TAGS[tag]:
                raise ValueError(f"the value of {tag:X} must be {_FAMILY_TAGS[tag]} bytes")
        if not isinstance(self.provenance, str) or not self.provenance.strip() or "\n" in self.provenance:
            raise ValueError("provenance must be one non-empty line")
        object.__setattr__(self, "overrides", tuple((tag, bytes(value)) for tag, value in pairs))


#: The reader families capkey knows (brief cap.md §1.3), declared once.
READER_FAMILIES: dict[str, ReaderFamily] = {
    f.name: f
    for f in (
        ReaderFamily(
            "mastercard-cap",
            ((0x9A, bytes(3)),),
            "MasterCard CAP readers: 9A 000000 (NatWest FC09 trace, Rabobank, ABN AMRO, Belgian banks; python-emv, EMV-CAP)",
        ),
        ReaderFamily(
            "visa-dpa",
            ((0x9A, bytes.fromhex("010101")),),
            "Visa DPA readers: 9A 010101 (Barclays PINsentry, Belgian and French Visa; python-emv, EMV-CAP)",
        ),
        ReaderFamily(
            "be-payment-aid",
            (
                (0x95, bytes.fromhex("8000000800")),
                (0x9A, bytes(3)),
                (0x9F35, bytes.fromhex("37")),
                (0x9F34, bytes(3)),
            ),
            "EMV-CAP's Belgian mode on a payment application: TVR 8000000800 (merchant forced online), 9A 000000, 9F35 37, 9F34 000000",
        ),
    )
}


@dataclass(frozen=True)
class CapProfile:
    """What the verifier must know about a family of cards and their reader (docs/cap.md §5.1).

    `reader` gives the constant value the reader puts in every CDOL1 field except 9F02 (amount)
    and 9F37 (UN). `reader_families` names the families (:data:`READER_FAMILIES`) whose codes
    are accepted, the profile's own reader first (its overrides must leave `reader` as it is);
    each must give the cryptogram other inputs. `iad_candidates` are the IADs the card may
    return in its first GENERATE AC (they differ only by CVR flags such as "PIN try counter" or
    "last transaction not completed"); each is tried with each family.
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
    reader_families: tuple[str, ...]
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
        self._check_families(reader, dict(cdol))

    def _check_families(self, reader: dict[int, bytes], cdol: dict[int, int]) -> None:
        names = self.reader_families
        if isinstance(names, str) or not isinstance(names, (tuple, list)) or not names:
            raise ValueError("reader_families must name at least one family, the profile's own reader first")
        if len(set(names)) != len(names):
            raise ValueError("reader_families names a family twice")
        heads = set()
        for name in names:
            family = READER_FAMILIES.get(name) if isinstance(name, str) else None
            if family is None:
                raise ValueError(f"unknown reader family {name!r}")
            for tag, value in family.overrides:
                if tag in cdol and len(value) != cdol[tag]:
                    raise ValueError(f"reader family {name}: {tag:X} has another length in CDOL1")
            values = self._family_values(family)
            if name == names[0] and values != reader:
                raise ValueError(f"the first reader family ({name}) must be the profile's own reader")
            head = b"".join(values[t] for t in _MACED_CONSTANTS)
            if head in heads:
                # Same cryptogram input as a family before it: more odds for a guess, no more codes.
                raise ValueError(f"reader family {name} gives the cryptogram the same input as another")
            heads.add(head)
        object.__setattr__(self, "reader_families", tuple(names))

    def _family_values(self, family: ReaderFamily) -> dict[int, bytes]:
        """The reader constants of this profile's CDOL1 as `family` fills them."""
        values = dict(self.reader)
        values.update((tag, v) for tag, v in family.overrides if tag in values)
        return values

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
    def _ac_shift(self) -> int:
        return self._shift(self._prefix_len + 3, 8)

    @functools.cached_property
    def _ac_mask(self) -> int:
        """The AC bits the code carries, as a mask over the 8-byte AC."""
        return self._ipb.mask >> self._ac_shift & (1 << 64) - 1

    @functools.cached_property
    def _const_mask(self) -> int:
        """IPB bits that are constant for a card (PSN, CID, IAD): checkable before any
        cryptography. The ATC bits are not: the ATC candidates are built from them."""
        return self._ipb.mask & ~(self._ac_mask << self._ac_shift | self.atc_mask << self._atc_shift)

    @property
    def ipb_int(self) -> int:
        return int.from_bytes(self.ipb, "big")

    @functools.cached_property
    def otp_bits(self) -> int:
        return self._ipb.bits

    @property
    def ac_bits(self) -> int:
        """Cryptogram bits in a code: a guess matches one candidate with odds 2^-ac_bits."""
        return self._ac_mask.bit_count()

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

    def _iads_by_bits(self, psn: int, pin_try_limit: int) -> dict[int, tuple[bytes, ...]]:
        """The IAD variants of a card by the constant bits (PSN, CID 80, IAD) they put into its
        codes: a code's constant bits select the variants worth a cryptogram. Cached per
        (PSN, try limit), so that a card the verifier has not seen costs a lookup."""
        cache = self._iad_bits_cache
        got = cache.get(psn << 4 | pin_try_limit)
        if got is None:
            prefix = (bytes.fromhex(f"{psn:02d}") if self.psn_prefix else b"") + _CID_ARQC
            n = len(self.ipb)
            got = {}
            for iad in self.iads_for(pin_try_limit):
                bits = int.from_bytes((prefix + bytes(10) + iad)[:n], "big") & self._const_mask
                got[bits] = got.get(bits, ()) + (iad,)
            cache[psn << 4 | pin_try_limit] = got
        return got

    @functools.cached_property
    def _iad_bits_cache(self) -> dict[int, dict[int, tuple[bytes, ...]]]:
        return {}

    @functools.cached_property
    def _families_tried(self) -> dict[str | None, tuple[tuple[str, bytes], ...]]:
        """What the verifier tries for a card that remembered a family (None: none yet): each
        family's name and MACed constants 9F03 ‖ 9F1A ‖ 95 ‖ 5F2A ‖ 9A ‖ 9C (what goes between
        9F02 and 9F37), in the profile's order."""
        every = tuple(
            (name, b"".join(self._family_values(READER_FAMILIES[name])[t] for t in _MACED_CONSTANTS))
            for name in self.reader_families
        )
        return {None: every, **{f[0]: (f,) for f in every}}

    def cdol1_data(self, *, un: bytes, amount: int = 0, family: str | None = None) -> bytes:
        """The CDOL1 data a reader sends in the first GENERATE AC: the profile's own reader, or
        one of the families it accepts."""
        if family is None:
            family = self.reader_families[0]
        if family not in self.reader_families:
            raise ValueError(f"{self.name} does not accept reader family {family!r}")
        values = self._family_values(READER_FAMILIES[family])
        values[0x9F37] = emv.check_bytes("un", un, 4)
        values[0x9F02] = amount_bytes(amount)
        return b"".join(values[tag] for tag, _ in self.cdol1)


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
    # once the card has given any ARQC (sticky: a CAP card is never completed online). A card
    # also used for payments has completed online transactions (10 clear): b3 80 after a CAP
    # session (French Visa DPA and NatWest traces), 00 after a payment completed online (Belgian
    # Visa trace).
    iad_candidates=(
        bytes.fromhex("06010A03A49000"),
        bytes.fromhex("06010A03A41000"),
        bytes.fromhex("06010A03A48000"),
        bytes.fromhex("06010A03A40000"),
    ),
    reader_families=("visa-dpa", "mastercard-cap", "be-payment-aid"),
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
    # Cards in the field compare the reader's country 0000 with their own and report 04
    # "international" instead (Rabobank and Portuguese eID traces; ABN AMRO reports 02).
    iad_candidates=(
        bytes.fromhex("0010A50000020000" "0000" "00000000000000FF"),
        bytes.fromhex("0010A50000820000" "0000" "00000000000000FF"),
        bytes.fromhex("0010A50000040000" "0000" "00000000000000FF"),
        bytes.fromhex("0010A50000840000" "0000" "00000000000000FF"),
    ),
    reader_families=("mastercard-cap", "visa-dpa", "be-payment-aid"),
    iad_ptc_offset=4,
)

PROFILES: dict[str, CapProfile] = {p.name: p for p in (VISA_DPA_CVN10, MC_CAP_CVN16)}


def profile_by_id(profile_id: int) -> CapProfile:
    for p in PROFILES.values():
        if p.profile_id == profile_id:
            return p
    raise KeyError(f"unknown CAP profile id {profile_id}")
