"""CardClient: the CAP card and reader of a capkey device over the link (commands 0x20-0x3F,
firmware/apps/cap.py; docs/protocol.md and docs/cap.md).

    with Device.open(url) as dev:
        card = CardClient(dev)
        card.personalise(personalisation_data(backend, profile=…, …))
        code = card.get_code(CapMode.RESPOND, challenge="78901234")

The PIN is never sent over the link except inside the issuer's PERSONALISE data; codes are typed
on the device's keypad by the person (connected mode asks the device, which shows the request,
asks for confirmation and the PIN, then returns the code).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, unique

from .device import Device

__all__ = [
    "CMD_CARD_STATUS",
    "CMD_PERSONALISE",
    "CMD_WIPE",
    "CMD_GET_CODE",
    "CMD_APDU",
    "CMD_CARD_RESET",
    "CapMode",
    "CardState",
    "CardStatus",
    "CardClient",
]

CMD_CARD_STATUS = 0x20
CMD_PERSONALISE = 0x21
CMD_WIPE = 0x22
CMD_GET_CODE = 0x23
CMD_APDU = 0x24
CMD_CARD_RESET = 0x25

#: KEEPALIVE statuses (docs/protocol.md): the device computes / waits for the person.
KEEPALIVE_PROCESSING = 1
KEEPALIVE_WAITING_FOR_USER = 2

#: How long the person has on the device (each keepalive restarts it).
USER_TIMEOUT = 120.0


@unique
class CapMode(IntEnum):
    """GET_CODE modes (the firmware reader's numbers)."""

    IDENTIFY = 1
    RESPOND = 2
    SIGN = 3
    TDS = 4


@unique
class CardState(IntEnum):
    FACTORY = 0
    PERSONALISED = 1
    ERROR = 2  # the card records cannot be read: only a wipe helps


@dataclass(frozen=True)
class CardStatus:
    """CARD_STATUS answer: state, profile id, PIN tries left / limit, ATC, PSN, PC/SC mode, and the
    masked PAN (first 6 and last 4 digits)."""

    state: CardState
    profile_id: int = 0
    tries: int = 0
    try_limit: int = 0
    atc: int = 0
    psn: int = 0
    pcsc: bool = False
    masked_pan: str = ""

    @classmethod
    def from_bytes(cls, data: bytes) -> CardStatus:
        if len(data) < 8:
            raise ValueError("CARD_STATUS answer too short")
        try:
            state = CardState(data[0])
        except ValueError:
            raise ValueError(f"unknown card state {data[0]}") from None
        pan = bytes(data[8:]).decode("ascii")
        if state is not CardState.PERSONALISED:
            return cls(state, pcsc=bool(data[7]))
        psn = int(f"{data[6]:02x}") if data[6] >> 4 < 10 and data[6] & 15 < 10 else data[6]
        return cls(state, data[1], data[2], data[3], data[4] << 8 | data[5], psn, bool(data[7]), pan)


def _digits(name: str, value: object, lo: int, hi: int) -> bytes:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or not lo <= len(value) <= hi:
        raise ValueError(f"{name} must be {lo}-{hi} decimal digits")
    return value.encode()


def _lv(item: bytes) -> bytes:
    return bytes((len(item),)) + item


def get_code_payload(
    mode: CapMode,
    *,
    challenge: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    fields: Sequence[str] | None = None,
) -> bytes:
    """GET_CODE request payload: mode byte, then length-prefixed ASCII items (docs/protocol.md)."""
    mode = CapMode(mode)
    items: list[bytes] = []
    if mode is CapMode.IDENTIFY:
        if challenge is not None or amount is not None or fields is not None:
            raise ValueError("Identify takes no challenge, amount or fields")
    elif mode is CapMode.RESPOND:
        if amount is not None or fields is not None:
            raise ValueError("Respond takes only a challenge")
        items.append(_digits("challenge", challenge, 1, 8))
    elif mode is CapMode.SIGN:
        if fields is not None:
            raise ValueError("Sign takes a challenge and an amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 999_999_999_999:
            raise ValueError("amount must be 1..999999999999 minor units")
        items += [_digits("challenge", challenge, 1, 8), str(amount).encode()]
        if currency is not None:
            if not isinstance(currency, str) or len(currency) != 3 or not currency.isascii() or not currency.isupper() or not currency.isalpha():
                raise ValueError("currency must be 3 upper-case letters (ISO 4217)")
            items.append(currency.encode())
    else:
        if challenge is not None or amount is not None:
            raise ValueError("TDS takes only fields")
        if fields is None or isinstance(fields, str) or not 1 <= len(fields) <= 10:
            raise ValueError("TDS needs 1-10 fields")
        items += [_digits("field", f, 1, 10) for f in fields]
    return bytes((mode,)) + b"".join(_lv(i) for i in items)


class CardClient:
    """Typed CAP commands over a :class:`~capkey.link.device.Device`."""

    def __init__(self, device: Device):
        self.device = device

    def status(self) -> CardStatus:
        return CardStatus.from_bytes(self.device.call(CMD_CARD_STATUS, b""))

    def personalise(self, data: bytes | bytearray, *, timeout: float = 30.0) -> None:
        """Loads PERSONALISE data (capkey.emv.issuer.personalisation_data) into a factory card.
        Raises ProtocolError ALREADY_PERSONALISED if the card holds a personalisation."""
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise ValueError("data must be the non-empty PERSONALISE TLVs")
        self.device.call(CMD_PERSONALISE, bytes(data), timeout=timeout)

    def wipe(
        self,
        *,
        timeout: float = USER_TIMEOUT,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> None:
        """Erases the card after the person confirmed on the device's keypad."""
        self.device.call(CMD_WIPE, b"", timeout=timeout, cancel=cancel, on_keepalive=on_keepalive)

    def get_code(
        self,
        mode: CapMode,
        *,
        challenge: str | None = None,
        amount: int | None = None,
        currency: str | None = None,
        fields: Sequence[str] | None = None,
        timeout: float = USER_TIMEOUT,
        cancel: threading.Event | None = None,
        on_keepalive: Callable[[int], None] | None = None,
    ) -> str:
        """Connected mode: the device shows the request, the person confirms and types the PIN,
        the device shows the code and returns it. Raises PinInvalid(attempts_remaining),
        PinBlocked, ProtocolError(DENIED/TIMEOUT) or Cancelled."""
        payload = get_code_payload(mode, challenge=challenge, amount=amount, currency=currency, fields=fields)
        answer = self.device.call(CMD_GET_CODE, payload, timeout=timeout, cancel=cancel, on_keepalive=on_keepalive)
        code = bytes(answer).decode("ascii", "replace")
        if not code.isdigit() or not 1 <= len(code) <= 12:
            raise ValueError("the device returned something that is not a code")
        return code

    # -- raw card access (the device's "Lecteur PC/SC" mode, switched on at its keypad) --------

    def apdu(self, apdu: bytes, *, timeout: float = 10.0) -> bytes:
        if not isinstance(apdu, (bytes, bytearray)) or not 4 <= len(apdu) <= 261:
            raise ValueError("an APDU is 4-261 bytes")
        return bytes(self.device.call(CMD_APDU, bytes(apdu), timeout=timeout))

    def card_reset(self) -> bytes:
        """Warm reset of the soft card; returns its ATR."""
        return bytes(self.device.call(CMD_CARD_RESET, b""))
