"""Issuer-side verification of EMV CAP codes (docs/cap.md §5).

Pure functions: no I/O, no clock, no global state. The caller (the rules service) owns the card
state: it passes the card with its last accepted ATC, and on success persists the returned ATC as
the new floor atomically (compare-and-set), so that a code is accepted once (rules.md R9).

Every way a code can be wrong — not digits, too many bits, replayed, outside the window, wrong
cryptogram, wrong mode data — raises the same :class:`InvalidCode`; the reason goes to the
``capkey.emv.verifier`` debug logger, never with the code, the PAN or a key.

Reader families (docs/cap.md §2.4, §5.5): a code is tried with the constants of every reader
family the card's profile accepts, or only the family the bank remembered for the card
(:attr:`CapCard.reader_family`); :func:`match_cap` says which family matched, so that the caller
can remember it.

Mode separation (rules.md "CAP verification specifics", R7, R8):

- Respond: UN = the challenge (packed BCD, right-justified), amount 0. A challenge that packs to
  UN 0 is refused (it is an Identify code).
- Sign: UN = challenge, 9F02 = amount ≥ 1 (minor units). Amount 0 is refused (it is a Respond code).
- Identify: UN 0, amount 0. Only for :func:`resync` and low-risk uses; never for a login that
  issued a challenge.
- Sign with data (Mode 2 + TDS): the AC is replaced by the TDS MAC before extraction.

:func:`cap_challenge` turns the server's canonical record (``capkey.cert.payload``, the same bytes a
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
from dataclasses import dataclass, replace

from ..errors import Error
from . import hazmat as emv
from .issuer import CardKeyRef, IssuerBackend
from .profiles import AMOUNT_MAX, CapProfile

__all__ = [
    "InvalidCode",
    "Mode",
    "CapCard",
    "CapChallenge",
    "CapMatch",
    "match_cap",
    "match_resync",
    "verify_cap",
    "verify_cap_payload",
    "resync",
    "cap_challenge",
    "transaction_challenge",
    "operation_challenge",
    "un_for",
]

_log = logging.getLogger(__name__)

#: Default and maximum resynchronisation search ranges.
_RESYNC_SEARCH = 4096
_RESYNC_SEARCH_MAX = 0xFFFF


class InvalidCode(Error):
    """The code is not accepted. Deliberately carries no reason."""


@enum.unique
class Mode(enum.Enum):
    IDENTIFY = "identify"
    RESPOND = "respond"
    SIGN = "sign"
    SIGN_TDS = "tds"


# ---------------------------------------------------------------------------------------------
# Card state


@dataclass(frozen=True)
class CapCard:
    """One card as the bank knows it: profile, identity, key reference and ATC floor.

    `last_atc` is the last accepted ATC (or the personalised initial ATC): only codes strictly
    above it are accepted. The verifier returns the new value; the caller stores it.
    `reader_family` is the family of the card's last accepted code when the bank remembered it
    (:attr:`CapMatch.reader_family`): only that family's codes are then accepted, which takes the
    odds of a guess back to one family (docs/cap.md §5.5); None tries every family the profile
    accepts.
    """

    profile: CapProfile
    pan: str
    psn: int
    imk_label: str
    last_atc: int = 0
    pin_try_limit: int = 3
    reader_family: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.profile, CapProfile):
            raise TypeError("profile must be a CapProfile")
        # Checks the PAN, PSN and IMK label; kept as the key_ref cached property.
        self.__dict__["key_ref"] = CardKeyRef(self.imk_label, self.pan, self.psn, self.profile.derivation)
        if isinstance(self.last_atc, bool) or not isinstance(self.last_atc, int) or not 0 <= self.last_atc <= 0xFFFF:
            raise ValueError("last_atc must be 0..65535")
        if isinstance(self.pin_try_limit, bool) or not isinstance(self.pin_try_limit, int) or not 1 <= self.pin_try_limit <= 15:
            raise ValueError("pin_try_limit must be 1..15")
        if self.reader_family is not None and self.reader_family not in self.profile.reader_families:
            raise ValueError(f"reader_family must be one of {', '.join(self.profile.reader_families)} or None")

    @functools.cached_property
    def key_ref(self) -> CardKeyRef:
        return CardKeyRef(self.imk_label, self.pan, self.psn, self.profile.derivation)

    def with_atc(self, atc: int) -> CapCard:
        if atc < self.last_atc:
            raise ValueError("the ATC floor never moves backwards")
        return replace(self, last_atc=atc)

    def __repr__(self) -> str:  # no full PAN in logs (R18)
        family = "" if self.reader_family is None else f", reader_family={self.reader_family}"
        return f"CapCard({self.profile.name}, pan=…{self.pan[-4:]}, psn={self.psn:02d}, last_atc={self.last_atc}{family})"


@dataclass(frozen=True)
class CapMatch:
    """An accepted code: the ATC it was made at (store it as the card's new floor) and the reader
    family whose constants made it (store it as the card's `reader_family` to accept only that
    family's codes from then on)."""

    atc: int
    reader_family: str


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


# Enum members are looked up through their metaclass (≈ 60 ns each on CPython 3.11): the per-code
# path compares with these instead.
_IDENTIFY, _RESPOND, _SIGN, _SIGN_TDS = Mode.IDENTIFY, Mode.RESPOND, Mode.SIGN, Mode.SIGN_TDS

#: A code prepared once for all its candidates (`_prepare`): UN, amount, TDS fields, the code's
#: bits at their IPB positions, the IAD variants its constant bits allow, its cryptogram bits.
_Prepared = tuple[bytes, bytes, tuple[str, ...] | None, int, tuple[bytes, ...], bytes]


def _mode_data(mode: object, challenge: object, amount: object, tds: object
               ) -> tuple[bytes, bytes, tuple[str, ...] | None]:
    respond = mode is _RESPOND
    if respond or mode is _SIGN:
        if tds is not None:
            raise _Bad("tds only in SIGN_TDS")
        if not isinstance(challenge, str) or not 1 <= len(challenge) <= 8 or not challenge.isdigit() or not challenge.isascii():
            raise _Bad("challenge must be 1-8 digits")
        un = bytes.fromhex(challenge.zfill(8))
        if un == _ZERO_UN:
            raise _Bad("an all-zero challenge is an Identify code")
        if respond:
            if amount is not None:
                raise _Bad("respond takes no amount")
            return un, _ZERO_AMOUNT, None
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= AMOUNT_MAX:
            raise _Bad("sign needs an amount 1..999999999999 (minor units)")
        return un, bytes.fromhex(str(amount).zfill(12)), None
    if mode is not _IDENTIFY and mode is not _SIGN_TDS:
        raise TypeError("mode must be a Mode")
    if challenge is not None or amount is not None:
        raise _Bad("identify/tds take no challenge or amount")
    if mode is _IDENTIFY:
        if tds is not None:
            raise _Bad("identify takes no tds")
        return _ZERO_UN, _ZERO_AMOUNT, None
    if not isinstance(tds, Sequence) or isinstance(tds, (str, bytes)):
        raise _Bad("tds needs a sequence of digit strings")
    fields: tuple[str, ...] = tuple(tds)
    try:
        emv.tds_block(fields)
    except (TypeError, ValueError) as exc:
        raise _Bad(f"tds: {exc}") from None
    return _ZERO_UN, _ZERO_AMOUNT, fields


def _prepare(card: CapCard, code: object, md: tuple[bytes, bytes, tuple[str, ...] | None]) -> _Prepared:
    """One code prepared once for all its candidates: (UN, amount, TDS fields, the code's bits
    at their IPB positions, the IAD variants its constant bits allow, its cryptogram bits)."""
    profile = card.profile
    if not isinstance(code, str) or not 1 <= len(code) <= profile.digits or not code.isdigit() or not code.isascii():
        raise _Bad("code must be 1 to `digits` ASCII digits")
    value = int(code)
    if value >> profile.otp_bits:
        raise _Bad("code has more bits than the IPB selects")
    deposited = profile._ipb._spread(value)
    # Cheap pre-check of the constant bits (PSN, CID, IAD) before any cryptography.
    iads = profile._iads_by_bits(card.psn, card.pin_try_limit).get(deposited & profile._const_mask, ())
    return md[0], md[1], md[2], deposited, iads, (deposited >> profile._ac_shift & profile._ac_mask).to_bytes(8, "big")


# ---------------------------------------------------------------------------------------------
# Core


def _atc_candidates(profile: CapProfile, deposited: int, floor: int, window: int) -> Sequence[int]:
    mask = profile.atc_mask
    want = deposited >> profile._atc_shift & mask
    top = floor + window if floor + window < 0xFFFF else 0xFFFF
    if not mask & (mask + 1):  # the k low bits (every real IPB): step straight to each match
        return range(floor + 1 + ((want - floor - 1) & mask), top + 1, mask + 1)
    return [atc for atc in range(floor + 1, top + 1) if atc & mask == want]


def _match_at(
    card: CapCard, backend: IssuerBackend, code: _Prepared, atc: int, families: tuple[tuple[str, bytes], ...]
) -> str | None:
    """The first of `families` whose reader made the prepared `code` at `atc`, trying each IAD
    variant the code's constant bits allow: at most len(families) × len(IADs) cryptograms."""
    un, amount, tds, _, iads, want = code
    profile = card.profile
    generate_ac, ref, cvn, ac_mask = backend.generate_ac, card.key_ref, profile.cvn, profile._ac_mask
    tail = un + profile.aip + atc.to_bytes(2, "big")
    for name, constants in families:
        minimum = amount + constants + tail
        for iad in iads:
            ac = generate_ac(ref, cvn, minimum, iad)
            if tds is not None:
                ac = emv.tds_mac(ac, tds)
            # The constant bits were checked; the cryptogram bits are compared in constant time.
            if hmac.compare_digest((int.from_bytes(ac, "big") & ac_mask).to_bytes(8, "big"), want):
                return name
    return None


def _check_call(card: object, key_backend: object) -> None:
    if not isinstance(card, CapCard):
        raise TypeError("card must be a CapCard")
    # IssuerBackend is an ABC (an HSM registers against it): its isinstance is a Python call.
    if type(key_backend) not in _BACKEND_TYPES:
        if not isinstance(key_backend, IssuerBackend):
            raise TypeError("key_backend must be an IssuerBackend")
        _BACKEND_TYPES.add(type(key_backend))


_BACKEND_TYPES: set[type] = set()


def _verify(card: CapCard, code: object, mode: Mode, challenge: object, amount: object, currency: object,
            tds: object, key_backend: IssuerBackend) -> tuple[int, str]:
    _check_call(card, key_backend)
    if currency is not None:
        raise ValueError("the CAP profiles do not MAC a currency: bind it with transaction_challenge")
    profile = card.profile
    try:
        prepared = _prepare(card, code, _mode_data(mode, challenge, amount, tds))
    except _Bad as exc:
        _log.debug("CAP code refused (%s): %s", profile.name, exc)
        raise InvalidCode() from None
    if prepared[4]:
        families = profile._families_tried[card.reader_family]
        for atc in _atc_candidates(profile, prepared[3], card.last_atc, profile.window):
            family = _match_at(card, key_backend, prepared, atc, families)
            if family is not None:
                return atc, family
    _log.debug("CAP code refused (%s): no matching ATC above the floor", profile.name)
    raise InvalidCode()


def match_cap(
    card: CapCard,
    code: str,
    *,
    mode: Mode,
    challenge: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    tds: Sequence[str] | None = None,
    key_backend: IssuerBackend,
) -> CapMatch:
    """Checks a CAP code; returns the ATC it was made at (store it as the card's new floor) and
    the reader family that made it (remember it: :attr:`CapCard.reader_family`).

    Raises :class:`InvalidCode` for every wrong or malformed code. `currency` is bound through
    :func:`transaction_challenge` (the profiles' readers leave 5F2A at 0000); passing one here is
    a programming error (ValueError). Work: at most one ATC candidate for the profiles' IPBs
    and, per candidate, at most (reader families tried) × (IAD variants) cryptograms.
    """
    return CapMatch(*_verify(card, code, mode, challenge, amount, currency, tds, key_backend))


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
    """:func:`match_cap`, returning only the ATC (store it as the card's new floor)."""
    return _verify(card, code, mode, challenge, amount, currency, tds, key_backend)[0]


def match_resync(
    card: CapCard,
    code1: str,
    code2: str,
    *,
    search: int = _RESYNC_SEARCH,
    key_backend: IssuerBackend,
) -> CapMatch:
    """Resynchronisation with two consecutive Identify codes (docs/cap.md §5.3).

    Searches ATC values c in (floor, floor + search] such that `code1` matches at c and `code2`
    at c + 1, both with one reader family (the card's remembered one, else each the profile
    accepts); exactly one such (c, family) must exist. Returns c + 1, the new floor (the two
    codes are thereby consumed), and the family. Raises :class:`InvalidCode` otherwise. A resync
    proves possession of the card but is not an authentication (it accepts Identify codes): do
    not open a session with it.
    """
    _check_call(card, key_backend)
    if isinstance(search, bool) or not isinstance(search, int) or not 2 <= search <= _RESYNC_SEARCH_MAX:
        raise ValueError(f"search must be 2..{_RESYNC_SEARCH_MAX}")
    profile = card.profile
    try:
        md = _mode_data(Mode.IDENTIFY, None, None, None)
        first, second = _prepare(card, code1, md), _prepare(card, code2, md)
    except _Bad as exc:
        _log.debug("CAP resync refused (%s): %s", profile.name, exc)
        raise InvalidCode() from None
    found = []
    if first[4] and second[4]:
        for c in _atc_candidates(profile, first[3], card.last_atc, search - 1):
            # code2's ATC bits must fit c + 1 before any cryptography.
            if c + 1 not in _atc_candidates(profile, second[3], c, 1):
                continue
            for family in profile._families_tried[card.reader_family]:
                # Both codes come from one reader: code2 is tried with code1's family only.
                if _match_at(card, key_backend, first, c, (family,)) and _match_at(card, key_backend, second, c + 1, (family,)):
                    found.append(CapMatch(c + 1, family[0]))
    if len(found) != 1:
        _log.debug("CAP resync refused (%s): %d matching positions", profile.name, len(found))
        raise InvalidCode()
    return found[0]


def resync(
    card: CapCard,
    code1: str,
    code2: str,
    *,
    search: int = _RESYNC_SEARCH,
    key_backend: IssuerBackend,
) -> int:
    """:func:`match_resync`, returning only the new floor."""
    return match_resync(card, code1, code2, search=search, key_backend=key_backend).atc


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


def _record_bytes(record: object) -> tuple[object, bytes]:
    from ..cert import payload as _payload  # the canonical bytes a certificate key would sign

    if isinstance(record, (bytes, bytearray, memoryview)):
        record = _payload.SignedPayload(bytes(record))
    if isinstance(record, _payload.SignedPayload):
        return record.fields, bytes(record)
    if isinstance(record, (_payload.LoginPayload, _payload.PaymentPayload, _payload.BatchPayload, _payload.OperationPayload)):
        return record, bytes(record.to_bytes())
    raise TypeError("record must be a capkey.cert.payload payload (or its bytes)")


def _hash_digits(data: bytes, n: int) -> str:
    h = hashlib.sha256(_CHALLENGE_TAG + data).digest()
    return str(int.from_bytes(h, "big") % 10**n).zfill(n)


def _last_digits(text: str, n: int) -> str:
    digits = "".join(c for c in text if c.isdigit())
    return digits[-n:].zfill(n)


def cap_challenge(record: object) -> CapChallenge:
    """Maps a canonical record (``capkey.cert.payload``: Payment, Batch, Operation, Login, or its bytes,
    which include the server's 32-byte random challenge) to the CAP entry (docs/cap.md §5.4):

    - PAYMENT → Sign: challenge = H4 ‖ last 4 digits of the payee IBAN; amount = the amount.
    - BATCH → Sign: challenge = H4 ‖ the order count (4 digits); amount = the total.
    - OPERATION, LOGIN → Respond: challenge = H8.

    Hk = SHA-256("capkey/cap-challenge/v1" 00 ‖ payload bytes) as a big-endian integer mod 10^k,
    zero-padded to k digits. A Respond challenge that would be 00000000 (an Identify code) is
    never produced: the hash is re-tagged until it is not.
    """
    from ..cert import payload as _payload

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


def transaction_challenge(record: object) -> str:
    """The 8-digit Sign challenge of a PAYMENT or BATCH record (see :func:`cap_challenge`)."""
    c = cap_challenge(record)
    if c.mode is not Mode.SIGN:
        raise TypeError("transaction_challenge takes a PAYMENT or BATCH record")
    return c.challenge


def operation_challenge(record: object) -> str:
    """The 8-digit Respond challenge of an OPERATION (R8) or LOGIN record."""
    c = cap_challenge(record)
    if c.mode is not Mode.RESPOND:
        raise TypeError("operation_challenge takes an OPERATION or LOGIN record")
    return c.challenge


def verify_cap_payload(card: CapCard, code: str, record: object, *, key_backend: IssuerBackend) -> int:
    """Verifies a code made for the server's own record: the mode, challenge and amount all come
    from the record (so a Respond code never passes for a payment, nor a Sign code for a login).
    Returns the ATC to store. Raises :class:`InvalidCode`."""
    c = cap_challenge(record)
    return verify_cap(card, code, mode=c.mode, challenge=c.challenge, amount=c.amount, key_backend=key_backend)

