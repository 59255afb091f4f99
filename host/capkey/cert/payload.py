"""Canonical signing payloads of the certificate key (spec: docs/payloads.md).

A payload is the exact byte string the device displays and signs: one byte string per meaning,
so the bank can rebuild it from its own record and compare bytes. This module builds payloads from
fields (normalising what has an obvious normal form: IBAN spacing and case, the order of a batch's
payees), parses them back (refusing every byte string that is not canonical) and renders the French
lines the device shows, derived only from the payload bytes.

The firmware implements the same parse and rendering (firmware/applets/signer.py); both are held
to docs/vectors/payloads.json.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, unique
from typing import cast

from ..catalog.operations import SENSITIVE
from ..errors import Error

__all__ = [
    "VERSION",
    "MAX_PAYLOAD",
    "DISPLAY_COLUMNS",
    "CURRENCIES",
    "PayloadType",
    "Purpose",
    "PayloadError",
    "LoginPayload",
    "PaymentPayload",
    "BatchPayload",
    "OperationPayload",
    "Payload",
    "SignedPayload",
    "parse",
    "check_origin",
    "format_amount",
    "format_iban",
]

VERSION = 1
CHALLENGE_SIZE = 32
DISPLAY_COLUMNS = 16  # 128 px / 8 px glyphs
AMOUNT_MAX = 999_999_999_999  # "9 999 999 999,99" is 16 columns
COUNT_MAX = 9999
BATCH_PAYEES_MAX = 24  # keeps MAX_PAYLOAD (888) inside one link frame (1024)
ORIGIN_MAX = 100
IDENT_MAX = 32
OPERATION_ID_MAX = 64
NAME_MAX = 70  # SEPA creditor name
IBAN_MIN, IBAN_MAX = 15, 34

# Minor-unit exponents (ISO 4217) of the currencies a payload may carry.
CURRENCIES = {"EUR": 2, "CHF": 2, "GBP": 2, "USD": 2, "JPY": 0}

# The largest valid payload: a batch with the most payees of the longest IBANs.
MAX_PAYLOAD = 2 + CHALLENGE_SIZE + 8 + 3 + 2 + 1 + BATCH_PAYEES_MAX * (1 + IBAN_MAX)

_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_OPERATION_ID_CHARS = _IDENT_CHARS | frozenset(":/")
# The SEPA "basic Latin" character set (EPC guidance on the use of character sets), which every
# SEPA bank accepts and every 8x8 display font can draw.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_IBAN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@unique
class PayloadType(IntEnum):
    LOGIN = 1
    PAYMENT = 2
    BATCH = 3
    OPERATION = 4


#: Purpose numbers of OPERATION payloads: the catalogue's R8 operations.
#: (Built from the catalogue, so type checkers see `type[IntEnum]`: index it, Purpose["…"].)
Purpose = unique(cast("type[IntEnum]", IntEnum(
    "Purpose", [(k.name, k.purpose) for k in SENSITIVE if k.purpose is not None])))

_PURPOSE_TITLES = {k.purpose: k.title for k in SENSITIVE if k.purpose is not None}


class PayloadError(Error, ValueError):
    """The fields or bytes do not form a canonical payload."""


# ---------------------------------------------------------------------------------------------
# Field checks (shared by build and parse: parse accepts exactly what build produces)


def _check_challenge(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != CHALLENGE_SIZE:
        raise PayloadError(f"challenge must be {CHALLENGE_SIZE} bytes")
    return bytes(value)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PayloadError(f"{name} must be an integer in [{low}, {high}]")
    return value


def _check_str(name: str, value: object, charset: frozenset[str], max_len: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise PayloadError(f"{name} must be a string of 1 to {max_len} characters")
    if not set(value) <= charset:
        raise PayloadError(f"{name} has characters outside its set")
    return value


def check_payee_name(value: object) -> str:
    """`value` if it is a payee name a payload can carry (SEPA basic Latin, single spaces),
    else PayloadError."""
    name = _check_str("payee_name", value, _NAME_CHARS, NAME_MAX)
    if name != name.strip(" ") or "  " in name:
        raise PayloadError("payee_name must not have leading, trailing or repeated spaces")
    return name


def check_origin(value: object) -> str:
    """`value` if it is a canonical web origin as a LOGIN payload carries it, else PayloadError:
    a serialised web origin (RFC 6454): http(s)://host[:port], lower case, ASCII (IDN as
    A-labels), no default port, no path."""
    if not isinstance(value, str) or not 1 <= len(value) <= ORIGIN_MAX:
        raise PayloadError(f"origin must be a string of 1 to {ORIGIN_MAX} characters")
    if value.startswith("https://"):
        rest, default_port = value[8:], "443"
    elif value.startswith("http://"):
        rest, default_port = value[7:], "80"
    else:
        raise PayloadError("origin scheme must be https or http")
    host, sep, port = rest.partition(":")
    if sep:
        if not port.isdigit() or not 1 <= len(port) <= 5 or port[0] == "0" or int(port) > 65535:
            raise PayloadError("origin port must be a decimal number in [1, 65535]")
        if port == default_port:
            raise PayloadError("origin must not spell out the default port")
    if not host or not set(host) <= _HOST_CHARS:
        raise PayloadError("origin host must be lower-case letters, digits, '-' and '.'")
    for label in host.split("."):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            raise PayloadError("origin host has an empty or malformed label")
    return value


def _iban_checksum_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


def check_iban(value: object) -> str:
    """`value` if it is an IBAN in the canonical form a payload carries (upper case, no spaces,
    ISO 13616 check digits good), else PayloadError."""
    if not isinstance(value, str) or not IBAN_MIN <= len(value) <= IBAN_MAX:
        raise PayloadError(f"IBAN must have {IBAN_MIN} to {IBAN_MAX} characters")
    if (
        not set(value) <= _IBAN_CHARS
        or not value[:2].isalpha()
        or not value[2:4].isdigit()
        or not _iban_checksum_ok(value)
    ):
        raise PayloadError("IBAN is malformed or its check digits are wrong")
    return value


def _normalise_iban(value: object) -> object:
    if isinstance(value, str):
        return value.replace(" ", "").upper()
    return value


def _check_currency(value: object) -> str:
    if value not in CURRENCIES:
        raise PayloadError(f"currency must be one of {', '.join(CURRENCIES)}")
    return str(value)


# ---------------------------------------------------------------------------------------------
# Rendering (docs/payloads.md, "Display"): lines of at most DISPLAY_COLUMNS characters


def _pack(pieces: list[str], joiner: str, width: int = DISPLAY_COLUMNS) -> list[str]:
    """Greedy line filling: each piece joins the current line (with `joiner` between) if the
    result fits in `width`, else starts a new line; a piece longer than `width` is cut every
    `width` characters."""
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if line and len(line) + len(joiner) + len(piece) <= width:
            line += joiner + piece
            continue
        if line:
            lines.append(line)
        while len(piece) > width:
            lines.append(piece[:width])
            piece = piece[width:]
        line = piece
    if line:
        lines.append(line)
    return lines


def _wrap(text: str) -> list[str]:
    """Word wrap on the single spaces of `text`."""
    return _pack(text.split(" "), " ")


def _origin_lines(origin: str) -> list[str]:
    """'https://' is left out (it is the norm); 'http://' is shown. Lines break after a '.'."""
    if origin.startswith("https://"):
        origin = origin[len("https://") :]
    pieces = [label + "." for label in origin.split(".")]
    pieces[-1] = pieces[-1][:-1]
    return _pack(pieces, "")


def format_amount(amount: int, currency: str) -> str:
    """French grouping: '1 250,00' for 125000 minor units of EUR (space thousands separator,
    comma before the minor units); the currency code is not included."""
    exponent = CURRENCIES[currency]
    units, minor = divmod(amount, 10**exponent)
    digits = str(units)
    groups: list[str] = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    groups.insert(0, digits)
    text = " ".join(groups)
    if exponent:
        text += "," + str(minor).zfill(exponent)
    return text


def _amount_lines(amount: int, currency: str) -> list[str]:
    text = format_amount(amount, currency)
    if len(text) + 1 + len(currency) <= DISPLAY_COLUMNS:
        return [text + " " + currency]
    return [text, currency]


def _iban_groups(iban: str) -> list[str]:
    return [iban[i : i + 4] for i in range(0, len(iban), 4)]


def format_iban(iban: str) -> str:
    """The IBAN in groups of four characters separated by single spaces."""
    return " ".join(_iban_groups(iban))


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


# ---------------------------------------------------------------------------------------------
# Payload field sets


class _Fields(ABC):
    """One payload type's fields: encoded after the version and type bytes."""

    TYPE: PayloadType

    @abstractmethod
    def _encode_body(self) -> bytes: ...

    @abstractmethod
    def display_lines(self) -> list[str]: ...

    def to_bytes(self) -> SignedPayload:
        data = bytes((VERSION, self.TYPE)) + self._encode_body()
        return SignedPayload(data)


def _lv(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes((len(raw),)) + raw


@dataclass(frozen=True)
class LoginPayload(_Fields):
    """Login (R1/R16): binds the server's challenge to the site's origin and the login identity."""

    challenge: bytes
    origin: str
    subscription: str
    user: str

    TYPE = PayloadType.LOGIN

    def __post_init__(self) -> None:
        object.__setattr__(self, "challenge", _check_challenge(self.challenge))
        check_origin(self.origin)
        _check_str("subscription", self.subscription, _IDENT_CHARS, IDENT_MAX)
        _check_str("user", self.user, _IDENT_CHARS, IDENT_MAX)

    def _encode_body(self) -> bytes:
        return self.challenge + _lv(self.origin) + _lv(self.subscription) + _lv(self.user)

    def display_lines(self) -> list[str]:
        return [
            "Connexion à",
            *_origin_lines(self.origin),
            *_wrap("Client " + self.subscription),
            *_wrap("Utilisateur " + self.user),
        ]


@dataclass(frozen=True)
class PaymentPayload(_Fields):
    """One transfer (R7, SCT_INST_ENTRY): amount, currency, payee IBAN and name."""

    challenge: bytes
    amount: int
    currency: str
    payee_iban: str
    payee_name: str

    TYPE = PayloadType.PAYMENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "challenge", _check_challenge(self.challenge))
        _check_int("amount", self.amount, 1, AMOUNT_MAX)
        _check_currency(self.currency)
        object.__setattr__(self, "payee_iban", check_iban(_normalise_iban(self.payee_iban)))
        check_payee_name(self.payee_name)

    def _encode_body(self) -> bytes:
        return (
            self.challenge
            + self.amount.to_bytes(8, "big")
            + self.currency.encode("ascii")
            + _lv(self.payee_iban)
            + _lv(self.payee_name)
        )

    def display_lines(self) -> list[str]:
        groups = _iban_groups(self.payee_iban)
        iban_lines = ["vers " + " ".join(groups[:2])]
        iban_lines += [" ".join(groups[i : i + 3]) for i in range(2, len(groups), 3)]
        return [
            "Virement",
            *_amount_lines(self.amount, self.currency),
            *iban_lines,
            *_wrap(self.payee_name),
        ]


@dataclass(frozen=True)
class BatchPayload(_Fields):
    """A batch of orders (R7, SIGN_ORDER_BATCH): total, currency, number of orders and the
    canonical list of payees (distinct IBANs in ascending order). `payees` may be given in any
    order and with repeats (one per order); it is stored canonical."""

    challenge: bytes
    total: int
    currency: str
    count: int
    payees: tuple[str, ...]

    TYPE = PayloadType.BATCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "challenge", _check_challenge(self.challenge))
        _check_int("total", self.total, 1, AMOUNT_MAX)
        _check_currency(self.currency)
        _check_int("count", self.count, 1, COUNT_MAX)
        if isinstance(self.payees, str | bytes) or not isinstance(self.payees, Iterable):
            raise PayloadError("payees must be a collection of IBANs")
        payees = tuple(sorted({check_iban(_normalise_iban(p)) for p in self.payees}))
        if not 1 <= len(payees) <= min(self.count, BATCH_PAYEES_MAX):
            raise PayloadError(f"a batch has 1 to min(count, {BATCH_PAYEES_MAX}) distinct payees")
        object.__setattr__(self, "payees", payees)

    def _encode_body(self) -> bytes:
        return (
            self.challenge
            + self.total.to_bytes(8, "big")
            + self.currency.encode("ascii")
            + self.count.to_bytes(2, "big")
            + bytes((len(self.payees),))
            + b"".join(_lv(p) for p in self.payees)
        )

    def display_lines(self) -> list[str]:
        lines = [
            *_wrap("Remise " + _plural(self.count, "ordre", "ordres")),
            *_amount_lines(self.total, self.currency),
            _plural(len(self.payees), "bénéficiaire", "bénéficiaires"),
        ]
        for iban in self.payees:
            groups = _iban_groups(iban)
            for i in range(0, len(groups), 3):
                lines.append(("- " if i == 0 else "  ") + " ".join(groups[i : i + 3]))
        return lines


@dataclass(frozen=True)
class OperationPayload(_Fields):
    """Another sensitive operation (R8): the purpose and the server's operation id."""

    challenge: bytes
    purpose: IntEnum  # a Purpose member
    operation_id: str

    TYPE = PayloadType.OPERATION

    def __post_init__(self) -> None:
        object.__setattr__(self, "challenge", _check_challenge(self.challenge))
        try:
            object.__setattr__(self, "purpose", Purpose(self.purpose))
        except ValueError:
            raise PayloadError("unknown purpose") from None
        _check_str("operation_id", self.operation_id, _OPERATION_ID_CHARS, OPERATION_ID_MAX)

    def _encode_body(self) -> bytes:
        return self.challenge + bytes((self.purpose,)) + _lv(self.operation_id)

    def display_lines(self) -> list[str]:
        return [
            *_wrap(_PURPOSE_TITLES[self.purpose]),
            *_wrap("Opération " + self.operation_id),
        ]


Payload = LoginPayload | PaymentPayload | BatchPayload | OperationPayload


# ---------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise PayloadError("payload is truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def text(self) -> str:
        raw = self.take(self.uint(1))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise PayloadError("string is not ASCII") from None

    def end(self) -> None:
        if self._pos != len(self._data):
            raise PayloadError("trailing bytes after the payload")


def _parse_fields(data: bytes) -> Payload:
    if len(data) > MAX_PAYLOAD:
        raise PayloadError(f"payload longer than {MAX_PAYLOAD} bytes")
    r = _Reader(data)
    if r.uint(1) != VERSION:
        raise PayloadError("unsupported payload version")
    kind = r.uint(1)
    if kind not in PayloadType.__members__.values():
        raise PayloadError("unknown payload type")
    challenge = r.take(CHALLENGE_SIZE)
    fields: Payload
    if kind == PayloadType.LOGIN:
        fields = LoginPayload(challenge, r.text(), r.text(), r.text())
    elif kind == PayloadType.PAYMENT:
        amount = r.uint(8)
        currency = r.take(3).decode("latin-1")
        fields = PaymentPayload(challenge, amount, currency, r.text(), r.text())
    elif kind == PayloadType.BATCH:
        total = r.uint(8)
        currency = r.take(3).decode("latin-1")
        count = r.uint(2)
        n = r.uint(1)
        payees = [r.text() for _ in range(n)]
        if any(a >= b for a, b in zip(payees, payees[1:], strict=False)):
            raise PayloadError("batch payees are not in strictly ascending order")
        fields = BatchPayload(challenge, total, currency, count, tuple(payees))
        if len(fields.payees) != n:
            raise PayloadError("batch payee list is not canonical")
    elif kind == PayloadType.OPERATION:
        purpose = r.uint(1)
        fields = OperationPayload(challenge, purpose, r.text())  # type: ignore[arg-type]
    else:
        raise PayloadError("unknown payload type")
    r.end()
    # Build normalises (IBAN case and spaces); the bytes must already be in normal form.
    if fields._encode_body() != data[2:]:
        raise PayloadError("payload is not in canonical form")
    return fields


def parse(data: bytes) -> Payload:
    """Parse canonical payload bytes into their fields; raise PayloadError otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PayloadError("payload must be bytes")
    return _parse_fields(bytes(data))


class SignedPayload(bytes):
    """Payload bytes as signed: parsed and checked on construction, compared and verified over
    the exact bytes (`bytes(self)`)."""

    fields: Payload

    def __new__(cls, data: bytes) -> SignedPayload:
        self = super().__new__(cls, data)
        self.fields = _parse_fields(bytes(self))
        return self

    @property
    def type(self) -> PayloadType:
        return self.fields.TYPE

    @property
    def challenge(self) -> bytes:
        return self.fields.challenge

    def digest(self) -> bytes:
        """SHA-256 of the payload: what the ECDSA signature signs."""
        return hashlib.sha256(self).digest()

    def display_lines(self) -> list[str]:
        return self.fields.display_lines()
