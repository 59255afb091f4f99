"""Issuer-side verification of EMV CAP codes (docs/cap.md §5).

Pure functions: no I/O, no clock, no global state. The caller (the rules service) owns the card
state: it passes the card with its last accepted ATC, and on success persists the returned ATC as
the new floor atomically (compare-and-set), so that a code is accepted once (rules.md R9).

Every way a code can be wrong — not digits, too many bits, replayed, outside the window, wrong
cryptogram, wrong mode data — raises the same :class:`InvalidCode`; the reason goes to the
``capkey.verifier.cap`` debug logger, never with the code, the PAN or a key.

Mode separation (rules.md "CAP verification specifics", R7, R8):

- Respond: UN = the challenge (packed BCD, right-justified), amount 0. A challenge that packs to
  UN 0 is refused (it is an Identify code).
- Sign: UN = challenge, 9F02 = amount ≥ 1 (minor units). Amount 0 is refused (it is a Respond code).
- Identify: UN 0, amount 0. Only for :func:`resync` and low-risk uses; never for a login that
  issued a challenge.
- Sign with data (Mode 2 + TDS): the AC is replaced by the TDS MAC before extraction.

:func:`cap_challenge` turns the server's canonical record (``capkey.payload``, the same bytes a
certificate key signs) into what the person types; :func:`verify_cap_payload` verifies a code
against that record, choosing the mode from the record's type (docs/cap.md §5.4).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..hazmat import emv
from ..hazmat.emv import Cvn, Ipb, KeyDerivation, _check_digits, _check_psn
from ..issuer.cap import CardKeyRef, IssuerBackend

__all__ = [
    "InvalidCode",
    "Mode",
    "CapProfile",
    "CapCard",
    "CapChallenge",
    "VISA_DPA_CVN10",
    "MC_CAP_CVN16",
    "PROFILES",
    "profile_by_id",
    "verify_cap",
    "verify_cap_payload",
    "resync",
    "cap_challenge",
    "transaction_challenge",
    "operation_challenge",
    "un_for",
]

_log = logging.getLogger(__name__)

#: Default look-ahead (ATC values above the floor a code may be at), rules.md.
_ATC_WINDOW = 32
#: Default and maximum resynchronisation search ranges.
_RESYNC_SEARCH = 4096
_RESYNC_SEARCH_MAX = 0xFFFF
#: Fewest cryptogram bits a profile's IPB may select (the real IPBs select 16-20).
_MIN_AC_BITS = 16
_AMOUNT_MAX = 999_999_999_999
_CID_ARQC = 0x80
_CID = bytes((_CID_ARQC,))
_NO_AC = bytes(8)

# EMV minimum data set tags with their lengths, in MAC order; 82 and 9F36 come from the card.
_MIN_SET = ((0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1), (0x9F37, 4))
_READER_FILLED = frozenset((0x9F02, 0x9F37))


class InvalidCode(Exception):
    """The code is not accepted. Deliberately carries no reason."""


@enum.unique
class Mode(enum.Enum):
    IDENTIFY = "identify"
    RESPOND = "respond"
    SIGN = "sign"
    SIGN_TDS = "tds"


# ---------------------------------------------------------------------------------------------
# Profile


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
    _ipb: Ipb = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty str")
        if not isinstance(self.profile_id, int) or not 1 <= self.profile_id <= 255:
            raise ValueError("profile_id must be 1-255")
        aid = emv._check_bytes("aid", self.aid)
        if not 5 <= len(aid) <= 16:
            raise ValueError("aid must be 5-16 bytes")
        object.__setattr__(self, "cvn", Cvn.of(self.cvn))
        if not isinstance(self.derivation, KeyDerivation):
            raise TypeError("derivation must be a KeyDerivation")
        if self.gpo_format not in (1, 2):
            raise ValueError("gpo_format must be 1 or 2")
        emv._check_bytes("aip", self.aip, 2)
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
            if tag in reader and len(emv._check_bytes(f"reader {tag:X}", reader[tag])) != length:
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
            emv._appended(rule, emv._check_bytes("iad candidate", iad))
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
        values[0x9F37] = emv._check_bytes("un", un, 4)
        values[0x9F02] = _amount_bytes(amount)
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


def _amount_bytes(amount: int) -> bytes:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= _AMOUNT_MAX:
        raise ValueError("amount must be an int 0..999999999999 (minor units)")
    return emv.pack_bcd(str(amount), 6)


_CDOL1_29 = ((0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1), (0x9F37, 4))
_CDOL1_43 = _CDOL1_29 + ((0x9F35, 1), (0x9F45, 2), (0x9F4C, 8), (0x9F34, 3))

#: Visa DPA style card (docs/cap.md §2.1), Barclays-like reader and IPB.
VISA_DPA_CVN10 = CapProfile(
    name="visa-dpa-cvn10",
    profile_id=1,
    aid=bytes.fromhex("A0000000038002"),
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


# ---------------------------------------------------------------------------------------------
# Card state


@dataclass(frozen=True)
class CapCard:
    """One card as the bank knows it: profile, identity, key reference and ATC floor.

    `last_atc` is the last accepted ATC (or the personalised initial ATC): only codes strictly
    above it are accepted. The verifier returns the new value; the caller stores it.
    """

    profile: CapProfile
    pan: str
    psn: int
    imk_label: str
    last_atc: int = 0
    pin_try_limit: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.profile, CapProfile):
            raise TypeError("profile must be a CapProfile")
        _check_digits("pan", self.pan, 12, 19)
        _check_psn(self.psn)
        if isinstance(self.last_atc, bool) or not isinstance(self.last_atc, int) or not 0 <= self.last_atc <= 0xFFFF:
            raise ValueError("last_atc must be 0..65535")
        if isinstance(self.pin_try_limit, bool) or not isinstance(self.pin_try_limit, int) or not 1 <= self.pin_try_limit <= 15:
            raise ValueError("pin_try_limit must be 1..15")
        # Fails early on a bad label; kept as the key_ref cached property.
        self.__dict__["key_ref"] = CardKeyRef(self.imk_label, self.pan, self.psn, self.profile.derivation)

    @functools.cached_property
    def key_ref(self) -> CardKeyRef:
        return CardKeyRef(self.imk_label, self.pan, self.psn, self.profile.derivation)

    @functools.cached_property
    def _otp_prefix(self) -> bytes:
        return bytes.fromhex(f"{self.psn:02d}") if self.profile.psn_prefix else b""

    def with_atc(self, atc: int) -> CapCard:
        if atc < self.last_atc:
            raise ValueError("the ATC floor never moves backwards")
        return replace(self, last_atc=atc)

    def __repr__(self) -> str:  # no full PAN in logs (R18)
        return f"CapCard({self.profile.name}, pan=…{self.pan[-4:]}, psn={self.psn:02d}, last_atc={self.last_atc})"


# ---------------------------------------------------------------------------------------------
# Mode data


class _Bad(Exception):
    """Internal: malformed input, folded into InvalidCode at the boundary."""


def un_for(mode: Mode, challenge: str | None) -> bytes:
    """The 9F37 value a reader puts in for `mode` and `challenge` (docs/cap.md §1)."""
    if mode in (Mode.IDENTIFY, Mode.SIGN_TDS):
        return bytes(4)
    return emv.pack_bcd(challenge or "", 4)


_ZERO_UN = bytes(4)
_ZERO_AMOUNT = bytes(6)


def _mode_data(mode, challenge, amount, tds) -> tuple[bytes, bytes, tuple[str, ...] | None]:
    if not isinstance(mode, Mode):
        raise TypeError("mode must be a Mode")
    if mode is Mode.IDENTIFY or mode is Mode.SIGN_TDS:
        if challenge is not None or amount is not None:
            raise _Bad("identify/tds take no challenge or amount")
        fields = None
        if mode is Mode.SIGN_TDS:
            if tds is None or isinstance(tds, (str, bytes)):
                raise _Bad("tds needs a sequence of digit strings")
            fields = tuple(tds)
            try:
                emv.tds_block(fields)
            except (TypeError, ValueError) as exc:
                raise _Bad(f"tds: {exc}") from None
        elif tds is not None:
            raise _Bad("identify takes no tds")
        return _ZERO_UN, _ZERO_AMOUNT, fields
    if tds is not None:
        raise _Bad("tds only in SIGN_TDS")
    if not isinstance(challenge, str) or not 1 <= len(challenge) <= 8 or not challenge.isascii() or not challenge.isdigit():
        raise _Bad("challenge must be 1-8 digits")
    un = bytes.fromhex(challenge.zfill(8))
    if un == _ZERO_UN:
        raise _Bad("an all-zero challenge is an Identify code")
    if mode is Mode.RESPOND:
        if amount is not None:
            raise _Bad("respond takes no amount")
        return un, _ZERO_AMOUNT, None
    # SIGN
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= _AMOUNT_MAX:
        raise _Bad("sign needs an amount 1..999999999999 (minor units)")
    return un, bytes.fromhex(str(amount).zfill(12)), None


def _parse_code(profile: CapProfile, code: object) -> int:
    if not isinstance(code, str) or not code.isascii() or not code.isdigit():
        raise _Bad("code must be ASCII digits")
    if not 1 <= len(code) <= profile.digits:
        raise _Bad("code length")
    value = int(code)
    if value >> profile.otp_bits:
        raise _Bad("code has more bits than the IPB selects")
    return value


# ---------------------------------------------------------------------------------------------
# Core


def _atc_candidates(profile: CapProfile, deposited: int, floor: int, window: int) -> list[int]:
    mask = profile.atc_mask
    want = deposited >> profile._atc_shift & mask
    top = min(floor + window, 0xFFFF)
    if mask & (mask + 1) == 0:  # the k low bits (every real IPB): step straight to each match
        first = floor + 1 + ((want - floor - 1) & mask)
        return list(range(first, top + 1, mask + 1))
    return [atc for atc in range(floor + 1, top + 1) if atc & mask == want]


def _match_at(card: CapCard, backend: IssuerBackend, deposited: int, atc: int, md: tuple) -> bool:
    """Does the code (as `deposited` bits) match the card's cryptogram at `atc`?"""
    profile = card.profile
    ipb = profile._ipb
    n = len(ipb)
    mask = ipb.mask
    known_mask = profile._known_mask
    prefix = card._otp_prefix + _CID
    atc_b = atc.to_bytes(2, "big")
    un, amount, tds = md
    head = profile._minimum_head(un, amount) + atc_b
    ref = card.key_ref
    want = deposited.to_bytes(n, "big")
    ok = False
    for iad in profile.iads_for(card.pin_try_limit):
        known = prefix + atc_b + _NO_AC + iad
        # Cheap pre-check of the constant bits (PSN, CID, ATC, IAD) before any cryptography.
        if int.from_bytes(known[:n], "big") & known_mask != deposited & known_mask:
            continue
        ac = backend.generate_ac(ref, profile.cvn, head, iad)
        if tds is not None:
            ac = emv.tds_mac(ac, tds)
        data = prefix + atc_b + ac + iad
        got = (int.from_bytes(data[:n], "big") & mask).to_bytes(n, "big")
        if hmac.compare_digest(got, want):
            ok = True
            break
    return ok


def verify_cap(
    card: CapCard,
    code: str,
    *,
    mode: Mode,
    challenge: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    tds: Sequence[str] | None = None,
    key_backend: IssuerBackend,
) -> int:
    """Checks a CAP code; returns the ATC it was made at (store it as the card's new floor).

    Raises :class:`InvalidCode` for every wrong or malformed code. `currency` is bound through
    :func:`transaction_challenge` (the profiles' readers leave 5F2A at 0000); passing one here is
    a programming error (ValueError).
    """
    if not isinstance(card, CapCard):
        raise TypeError("card must be a CapCard")
    if not isinstance(key_backend, IssuerBackend):
        raise TypeError("key_backend must be an IssuerBackend")
    if currency is not None:
        raise ValueError("the CAP profiles do not MAC a currency: bind it with transaction_challenge")
    profile = card.profile
    try:
        md = _mode_data(mode, challenge, amount, tds)
        otp = _parse_code(profile, code)
    except _Bad as exc:
        _log.debug("CAP code refused (%s): %s", card.profile.name, exc)
        raise InvalidCode() from None
    deposited = profile._ipb.deposit(otp)
    for atc in _atc_candidates(profile, deposited, card.last_atc, profile.window):
        if _match_at(card, key_backend, deposited, atc, md):
            return atc
    _log.debug("CAP code refused (%s): no matching ATC above the floor", card.profile.name)
    raise InvalidCode()


def resync(
    card: CapCard,
    code1: str,
    code2: str,
    *,
    search: int = _RESYNC_SEARCH,
    key_backend: IssuerBackend,
) -> int:
    """Resynchronisation with two consecutive Identify codes (docs/cap.md §5.3).

    Searches ATC values c in (floor, floor + search] such that `code1` matches at c and `code2`
    at c + 1; exactly one such c must exist. Returns c + 1, the new floor (the two codes are thereby
    consumed). Raises :class:`InvalidCode` otherwise. A resync proves possession of the card but is
    not an authentication (it accepts Identify codes): do not open a session with it.
    """
    if not isinstance(card, CapCard):
        raise TypeError("card must be a CapCard")
    if not isinstance(key_backend, IssuerBackend):
        raise TypeError("key_backend must be an IssuerBackend")
    if isinstance(search, bool) or not isinstance(search, int) or not 2 <= search <= _RESYNC_SEARCH_MAX:
        raise ValueError(f"search must be 2..{_RESYNC_SEARCH_MAX}")
    profile = card.profile
    try:
        md = _mode_data(Mode.IDENTIFY, None, None, None)
        otp1 = _parse_code(profile, code1)
        otp2 = _parse_code(profile, code2)
    except _Bad as exc:
        _log.debug("CAP resync refused (%s): %s", profile.name, exc)
        raise InvalidCode() from None
    dep1, dep2 = profile._ipb.deposit(otp1), profile._ipb.deposit(otp2)
    found = []
    floor = card.last_atc
    for c in _atc_candidates(profile, dep1, floor, search - 1):
        # code2's ATC bits must fit c + 1 before any cryptography.
        if c + 1 not in _atc_candidates(profile, dep2, c, 1):
            continue
        if _match_at(card, key_backend, dep1, c, md) and _match_at(card, key_backend, dep2, c + 1, md):
            found.append(c + 1)
    if len(found) != 1:
        _log.debug("CAP resync refused (%s): %d matching positions", profile.name, len(found))
        raise InvalidCode()
    return found[0]


# ---------------------------------------------------------------------------------------------
# What the person types: challenges from the server's canonical record (R7, R8)

_CHALLENGE_TAG = b"capkey/cap-challenge/v1\x00"
_SERVER_DIGITS = 4  # Sign: digits from the hash; the other 4 are payee digits (or the count)


@dataclass(frozen=True)
class CapChallenge:
    """What the person enters in the reader for a record, and how the verifier checks it.

    For Sign, `challenge` = `server_digits` ‖ `payee_digits` and the person types the amount
    themselves (`amount`, in minor units, goes into 9F02).
    """

    mode: Mode
    challenge: str
    amount: int | None = None
    server_digits: str = ""
    payee_digits: str = ""


def _record_bytes(record) -> tuple[object, bytes]:
    from .. import payload as _payload  # the canonical bytes a certificate key would sign

    if isinstance(record, (bytes, bytearray, memoryview)):
        record = _payload.SignedPayload(bytes(record))
    if isinstance(record, _payload.SignedPayload):
        return record.fields, bytes(record)
    if isinstance(record, (_payload.LoginPayload, _payload.PaymentPayload, _payload.BatchPayload, _payload.OperationPayload)):
        return record, bytes(record.to_bytes())
    raise TypeError("record must be a capkey.payload payload (or its bytes)")


def _hash_digits(data: bytes, n: int) -> str:
    h = hashlib.sha256(_CHALLENGE_TAG + data).digest()
    return str(int.from_bytes(h, "big") % 10**n).zfill(n)


def _last_digits(text: str, n: int) -> str:
    digits = "".join(c for c in text if c.isdigit())
    return digits[-n:].zfill(n)


def cap_challenge(record) -> CapChallenge:
    """Maps a canonical record (``capkey.payload``: Payment, Batch, Operation, Login, or its bytes,
    which include the server's 32-byte random challenge) to the CAP entry (docs/cap.md §5.4):

    - PAYMENT → Sign: challenge = H4 ‖ last 4 digits of the payee IBAN; amount = the amount.
    - BATCH → Sign: challenge = H4 ‖ the order count (4 digits); amount = the total.
    - OPERATION, LOGIN → Respond: challenge = H8.

    Hk = SHA-256("capkey/cap-challenge/v1" 00 ‖ payload bytes) as a big-endian integer mod 10^k,
    zero-padded to k digits. A Respond challenge that would be 00000000 (an Identify code) is
    never produced: the hash is re-tagged until it is not.
    """
    from .. import payload as _payload

    fields, data = _record_bytes(record)
    if isinstance(fields, _payload.PaymentPayload):
        h = _hash_digits(data, _SERVER_DIGITS)
        p = _last_digits(fields.payee_iban, 8 - _SERVER_DIGITS)
        return CapChallenge(Mode.SIGN, h + p, fields.amount, h, p)
    if isinstance(fields, _payload.BatchPayload):
        h = _hash_digits(data, _SERVER_DIGITS)
        p = str(fields.count).zfill(8 - _SERVER_DIGITS)
        return CapChallenge(Mode.SIGN, h + p, fields.total, h, p)
    h = _hash_digits(data, 8)
    i = 0
    while h == "00000000":
        i += 1
        h = _hash_digits(data + i.to_bytes(4, "big"), 8)
    return CapChallenge(Mode.RESPOND, h, None, h, "")


def transaction_challenge(record) -> str:
    """The 8-digit Sign challenge of a PAYMENT or BATCH record (see :func:`cap_challenge`)."""
    c = cap_challenge(record)
    if c.mode is not Mode.SIGN:
        raise TypeError("transaction_challenge takes a PAYMENT or BATCH record")
    return c.challenge


def operation_challenge(record) -> str:
    """The 8-digit Respond challenge of an OPERATION (R8) or LOGIN record."""
    c = cap_challenge(record)
    if c.mode is not Mode.RESPOND:
        raise TypeError("operation_challenge takes an OPERATION or LOGIN record")
    return c.challenge


def verify_cap_payload(card: CapCard, code: str, record, *, key_backend: IssuerBackend) -> int:
    """Verifies a code made for the server's own record: the mode, challenge and amount all come
    from the record (so a Respond code never passes for a payment, nor a Sign code for a login).
    Returns the ATC to store. Raises :class:`InvalidCode`."""
    c = cap_challenge(record)
    return verify_cap(card, code, mode=c.mode, challenge=c.challenge, amount=c.amount, key_backend=key_backend)

